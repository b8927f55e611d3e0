"""Kafka client wrappers: the embedded broker, topic administration and an asyncio producer."""
