import pytest

from streams.kafka.broker import start_embedded


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """The embedded Tansu broker, started by the same code `gapstream` uses; one per test module so
    that modules do not see each other's messages."""
    started = start_embedded(tmp_path_factory.mktemp("broker") / "broker.log")
    yield started
    started.stop()
