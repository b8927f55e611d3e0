"""Settings read from environment variables.

Every variable is optional: unset means the embedded default (a Tansu broker started by gapstream,
Avro single-object encoding instead of a schema registry, a SQLite file under ``GAPSTREAM_DATA_DIR``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sinks.webhooks.retries import DEFAULT_SCHEDULE_S


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def _float(name: str, default: float) -> float:
    raw = _env(name)
    return float(raw) if raw is not None else default


def _int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw is not None else default


@dataclass(frozen=True)
class Settings:
    # Comma-separated host:port list; None starts (or reuses) the embedded broker.
    kafka_bootstrap_servers: str | None = None
    # Confluent-compatible registry URL; None means Avro single-object encoding.
    schema_registry_url: str | None = None
    # SQLAlchemy URL; None means sqlite under data_dir.
    database_url: str | None = None
    data_dir: Path = Path("var")
    app_id: str = "gapstream"
    topic_partitions: int = 4
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    mllp_metrics_port: int = 9102
    # How long the MLLP ingress waits for the broker to acknowledge a write before answering AE.
    mllp_store_timeout_s: float = 10.0
    # An ED visit with no discharge is closed automatically after this long (arrival time).
    ed_visit_autoclose_s: float = 24 * 3600.0
    visit_sweep_interval_s: float = 60.0
    webhook_timeout_s: float = 15.0
    # Seconds before each attempt (the first is the first attempt); ±20% jitter. Then exhausted.
    webhook_schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    # Requests in flight per endpoint (scheme://host:port).
    webhook_endpoint_concurrency: int = 4
    # Webhook dispatcher processes, each sending to its share of the endpoints. A dispatcher is
    # CPU-bound on one core. Two by default: on this 2-core machine, with the receivers on the same
    # cores, two drained 10-16% more than one and kept the latency a little lower (README, "Webhook
    # delivery"). More where the cores are there.
    webhook_dispatchers: int = 2
    # An endpoint failing without a success for this long is disabled.
    webhook_disable_after_s: float = 5 * 24 * 3600.0
    # Hosts that may receive webhooks over http and on private or loopback addresses.
    webhook_allowed_hosts: tuple[str, ...] = ()
    # Fernet keys sealing the signing secrets in the database (sinks/sql/sealing.py); none means a
    # key file under data_dir.
    secret_keys: tuple[str, ...] = ()
    # SMTP server for notices by e-mail (sinks/email.py); none keeps them queued until one is set.
    smtp_url: str | None = None
    email_from: str = "gapstream@localhost"
    log_level: str = "info"
    # wall (today), event (latest date in the data) or a pinned ISO date: see streams/attribution/clock.py
    attribution_clock: str = "wall"
    # How often members whose attribution may change by time alone are looked at.
    attribution_sweep_interval_s: float = 60.0
    # Child processes running the attribution flow, members of one consumer group. It is CPU-bound:
    # from the environment, one per core the worker may run on, at most one per partition. (Two once
    # left a restarted worker on the embedded broker consuming nothing: StatefulProcessor._may_leave.)
    attribution_processes: int = 1

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gapstream.db').resolve()}"


def _list(name: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in (_env(name) or "").split(",") if x.strip())


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load() -> Settings:
    partitions = _int("GAPSTREAM_TOPIC_PARTITIONS", 4)
    return Settings(
        kafka_bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS"),
        schema_registry_url=_env("SCHEMA_REGISTRY_URL"),
        database_url=_env("DATABASE_URL"),
        data_dir=Path(_env("GAPSTREAM_DATA_DIR", "var")),
        app_id=_env("GAPSTREAM_APP_ID", "gapstream"),
        topic_partitions=partitions,
        web_host=_env("GAPSTREAM_WEB_HOST", "127.0.0.1"),
        web_port=_int("GAPSTREAM_WEB_PORT", 6066),
        mllp_host=_env("GAPSTREAM_MLLP_HOST", "127.0.0.1"),
        mllp_port=_int("GAPSTREAM_MLLP_PORT", 2575),
        mllp_metrics_port=_int("GAPSTREAM_MLLP_METRICS_PORT", 9102),
        mllp_store_timeout_s=_float("GAPSTREAM_MLLP_STORE_TIMEOUT_S", 10.0),
        ed_visit_autoclose_s=_float("GAPSTREAM_ED_VISIT_AUTOCLOSE_S", 24 * 3600.0),
        visit_sweep_interval_s=_float("GAPSTREAM_VISIT_SWEEP_INTERVAL_S", 60.0),
        webhook_timeout_s=_float("GAPSTREAM_WEBHOOK_TIMEOUT_S", 15.0),
        webhook_schedule_s=tuple(float(x) for x in _list("GAPSTREAM_WEBHOOK_SCHEDULE_S")) or DEFAULT_SCHEDULE_S,
        webhook_endpoint_concurrency=max(1, _int("GAPSTREAM_WEBHOOK_ENDPOINT_CONCURRENCY", 4)),
        webhook_dispatchers=max(1, _int("GAPSTREAM_WEBHOOK_DISPATCHERS", 2)),
        webhook_disable_after_s=_float("GAPSTREAM_WEBHOOK_DISABLE_AFTER_S", 5 * 24 * 3600.0),
        webhook_allowed_hosts=_list("GAPSTREAM_WEBHOOK_ALLOWED_HOSTS"),
        secret_keys=_list("GAPSTREAM_SECRET_KEYS"),
        smtp_url=_env("GAPSTREAM_SMTP_URL"),
        email_from=_env("GAPSTREAM_EMAIL_FROM", "gapstream@localhost"),
        log_level=_env("GAPSTREAM_LOG_LEVEL", "info"),
        attribution_clock=_env("GAPSTREAM_ATTRIBUTION_CLOCK", "wall"),
        attribution_sweep_interval_s=_float("GAPSTREAM_ATTRIBUTION_SWEEP_INTERVAL_S", 60.0),
        attribution_processes=max(1, _int("GAPSTREAM_ATTRIBUTION_PROCESSES", min(_cores(), partitions))),
    )
