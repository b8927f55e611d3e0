"""The doorbell that wakes a dispatcher process when another process queued deliveries."""
import asyncio
import time

from sinks.webhooks.doorbell import Ringer, doorbell, listen


def test_a_ring_wakes_the_listener_and_a_full_or_unheard_bell_never_blocks_the_ringer():
    listening, ringing = doorbell()
    ringer = Ringer([ringing])
    for _ in range(100_000):  # far more than the pipe holds: the ringer must not block on it
        ringer.ring()

    async def woken() -> int:
        wakes = 0

        def wake() -> None:
            nonlocal wakes
            wakes += 1
        listen(asyncio.get_running_loop(), listening, wake)
        await asyncio.sleep(0.2)  # the rings already there are read
        before = wakes
        ringer.ring()
        await asyncio.sleep(0.2)
        return wakes - before, before

    after_ring, queued = asyncio.run(woken())
    assert queued >= 1 and after_ring == 1
    listening.close()  # the dispatcher gone: ringing carries on without an error
    started = time.monotonic()
    ringer.ring()
    assert time.monotonic() - started < 0.1


def test_ringing_for_endpoints_wakes_only_the_dispatchers_they_belong_to():
    bells = [doorbell() for _ in range(3)]
    ringer = Ringer([ringing for _, ringing in bells])
    ringer.ring({4, 7})  # shards 1 and 1 of 3
    ringer.ring({5})  # shard 2
    assert [listening.poll(0.2) for listening, _ in bells] == [False, True, True]
    ringer.ring()
    assert bells[0][0].poll(0.2)
