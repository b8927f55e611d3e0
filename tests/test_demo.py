"""`gapstream demo`, the README's first command: it ends by itself or on Ctrl-C, leaving nothing."""
import json
import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().split(")")[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def demo(tmp_path, *args):
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS",
                                                                                   "DATABASE_URL")})


def test_demo_streams_and_ends_with_a_summary(tmp_path):
    proc = demo(tmp_path, "--duration", "6", "--members", "300", "--rate", "20")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    alerts = [line for line in out.splitlines() if line.strip().startswith("alert adt.ed_visit")]
    summary = json.loads(out.strip().splitlines()[-1].removeprefix("summary "))
    assert summary["adt_messages_sent"] == 120 and summary["acks"] == {"AA": 120}
    assert summary["ed_alerts_received"] == len(alerts) > 0
    assert summary["latency_ms_p50"] > 0


def test_ctrl_c_stops_the_demo_and_everything_it_started(tmp_path):
    proc = demo(tmp_path, "--duration", "120", "--members", "300", "--rate", "20")
    for line in proc.stdout:  # wait until alerts flow: broker, worker, ingress and receiver all run
        if "alert adt.ed_visit" in line:
            break
    started = children_of(proc.pid)
    assert len(started) >= 4  # broker, receiver, worker, mllp
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "interrupted" in out
    assert [pid for pid in started if alive(pid)] == []
