"""Encoding of messages on topics."""
