import os

import pytest

from sinks.sql.models import Base
from sinks.sql.sealing import Sealer
from sinks.sql.store import Store
from sinks.webhooks.egress import Egress
from streams.kafka.broker import start_embedded
from tests import postgres


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """The embedded Tansu broker, started by the same code `gapstream` uses; one per test module so
    that modules do not see each other's messages."""
    started = start_embedded(tmp_path_factory.mktemp("broker") / "broker.log")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def pg_server():
    if postgres.bin_dir() is None and not os.environ.get("CI"):
        pytest.skip("no PostgreSQL server installed here (CI installs it)")
    server = postgres.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A migrated store on SQLite and on PostgreSQL, with loopback allow-listed for webhooks."""
    egress = Egress(["127.0.0.1"])
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'g.db'}", Sealer.generate(), egress=egress)
        return
    server = request.getfixturevalue("pg_server")
    s = Store(server.url, Sealer.generate(), egress=egress)
    yield s
    Base.metadata.drop_all(s.engine)
    with s.engine.begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    s.engine.dispose()
