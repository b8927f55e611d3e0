"""State owned by a stateful processor: values per input partition, saved to a changelog topic."""
