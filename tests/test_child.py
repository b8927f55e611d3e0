"""A flow in a child process answers each call with its own answer, even after a call timed out."""
import gc
import time

import pytest

from streams.child import ChildError, ChildProcess


class Echo:
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def echo(self, value: str, wait_s: float = 0.0) -> str:
        time.sleep(wait_s)
        return value

    def collector(self) -> tuple[int, int]:
        return gc.get_freeze_count(), gc.get_threshold()[0]


class Broken(Echo):
    def start(self) -> None:
        raise RuntimeError("no broker")


def test_a_late_answer_is_not_taken_for_the_next_call():
    child = ChildProcess("echo", Echo, ())
    child.start()
    try:
        with pytest.raises(ChildError, match="did not answer"):
            child.call("echo", "slow", 1.5, timeout_s=0.3)
        assert child.call("echo", "next", timeout_s=5) == "next"
        assert child.call("echo", "again", timeout_s=5) == "again"
    finally:
        child.stop()


def test_a_flow_that_cannot_start_says_why():
    with pytest.raises(ChildError, match="RuntimeError: no broker"):
        ChildProcess("broken", Broken, ()).start()


def test_what_a_flow_built_at_start_is_kept_out_of_full_collections():
    # A full collection over the whole heap stalled every webhook in flight for 80-120 ms.
    child = ChildProcess("echo", Echo, ())
    child.start()
    try:
        frozen, threshold = child.call("collector", timeout_s=5)
    finally:
        child.stop()
    assert frozen > 10_000  # the modules and objects the flow built, at least
    assert threshold == 10_000
