"""Tools around the pipeline: feed generator, local webhook receiver, demo."""
