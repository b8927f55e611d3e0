"""Topic administration with confluent-kafka's AdminClient."""
from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.broker import BrokerError, SilentLogger


def ensure_topics(bootstrap: str, names: list[str], partitions: int, timeout_s: float = 15.0,
                  config: dict[str, str] | None = None) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": SilentLogger()})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc.args[0].str() if exc.args else exc}") from exc
    missing = [NewTopic(n, num_partitions=partitions, replication_factor=1, config=config or {})
               for n in names if n not in existing]
    if not missing:
        return
    for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args and getattr(exc.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                continue
            raise BrokerError(f"could not create topic {name}: {exc}") from exc
