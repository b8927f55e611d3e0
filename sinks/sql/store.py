"""The SQL store: one engine and one place that builds the stores of each concern (the outbox,
subscriptions, attribution, gaps, the directory, cohorts).

Writes are idempotent: storing a message a second time (a redelivered Kafka message, a restarted
worker) changes nothing, which is what makes at-least-once processing safe.
Calls are synchronous; async callers run them in a thread.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import create_engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from sinks.sql.attribution import AttributionStore
from sinks.sql.cohorts import CohortStore
from sinks.sql.directory import DirectoryStore
from sinks.sql.email_notices import EmailNotices
from sinks.sql.gaps import GapStore
from sinks.sql.models import Delivery
from sinks.sql.outbox import Outbox
from sinks.sql.sealing import Sealer
from sinks.sql.sqlite import sqlite_engine
from sinks.sql.subscriptions import SubscriptionStore
from sinks.webhooks.disclosure import part2_rule
from sinks.webhooks.egress import Egress

if TYPE_CHECKING:
    from streams.config import Settings


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        return sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True)


class Store:
    def __init__(self, url: str, sealer: Sealer, migrate: bool = True, egress: Egress | None = None,
                 disable_after_s: float = 5 * 24 * 3600.0):
        self.engine = make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self.subscriptions = SubscriptionStore(self._session, egress or Egress(), sealer)
        if migrate:
            from sinks.sql.migrate import upgrade
            upgrade(self.engine)
            self.subscriptions.seal_secrets()
        self.attribution = AttributionStore(self._session)
        self.gaps = GapStore(self._session, self._insert())
        self.directory = DirectoryStore(self._session, self._insert())
        self.cohorts = CohortStore(self._session, self._insert())
        self.outbox = Outbox(self._session, self._insert(), part2_rule(), sealer, disable_after_s)
        self.emails = EmailNotices(self._session)

    def _insert(self):
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    # -- reading back ----------------------------------------------------------------------------
    def deliveries(self) -> list[Delivery]:
        with self._session() as s:
            return list(s.scalars(select(Delivery)))


def open_store(settings: Settings) -> Store:
    """The store as the settings configure it (database, keys, webhook allow-list, disabling period)."""
    sealer = (Sealer(settings.secret_keys) if settings.secret_keys
              else Sealer.from_key_file(settings.data_dir / "secret.key"))
    return Store(settings.sqlalchemy_url, sealer, egress=Egress(settings.webhook_allowed_hosts),
                 disable_after_s=settings.webhook_disable_after_s)
