"""Writers on one SQLite file, in one process or several, take turns without SQLite's sleeping busy
handler."""
import multiprocessing
import statistics
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from sinks.sql.sqlite import sqlite_engine


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'w.db'}"


@pytest.fixture
def engine(url):
    engine = sqlite_engine(url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    yield engine
    engine.dispose()


def _write_in_thread(engine, row: int, done: list[float]) -> threading.Thread:
    def write() -> None:
        with engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (:id)"), {"id": row})
        done.append(time.monotonic())
    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_writer_waiting_behind_another_starts_as_soon_as_it_commits(engine):
    """SQLite's own busy handler would retry at 228, 328, 428 ms ... of waiting: behind a transaction
    that holds the file 340 ms, the waiter would start about 90 ms after its commit."""
    gaps = []
    for k in range(5):
        done: list[float] = []
        with engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (:id)"), {"id": 100 + k})
            waiter = _write_in_thread(engine, k, done)
            time.sleep(0.34)
        committed = time.monotonic()
        waiter.join(10)
        gaps.append(done[0] - committed)
    assert statistics.median(gaps) < 0.04, gaps


def _next_writer_gets_in(url: str, row: int) -> None:
    done: list[float] = []
    other = sqlite_engine(url)  # a store of its own on the same file, as the CLI's beside a worker's
    _write_in_thread(other, row, done).join(5)
    other.dispose()
    assert done, "the next writer is still waiting"


def test_a_failed_write_lets_the_next_writer_in(engine, url):
    with engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (2)"))
        c.execute(text("INSERT INTO t VALUES (1)"))
    _next_writer_gets_in(url, 3)
    with engine.connect() as c:
        with pytest.raises(OperationalError):  # fails before it opens a transaction
            c.execute(text("INSERT INTO missing VALUES (1)"))
        _next_writer_gets_in(url, 4)
    with engine.connect() as c:
        assert c.execute(text("SELECT id FROM t ORDER BY id")).scalars().all() == [1, 3, 4]


def test_a_write_behind_a_comment_or_through_the_connection_holds_the_writers_off(engine, url):
    raw = engine.raw_connection()
    try:
        raw.execute("/* why */ INSERT INTO t VALUES (1)")
        waiting: list[float] = []
        waiter = _write_in_thread(sqlite_engine(url), 2, waiting)
        waiter.join(0.5)
        # Had the first write not taken the process's lock, the waiter would hold it now, waiting in
        # SQLite for the file, and this write would wait for the waiter: neither moves for 30 s.
        raw.cursor().execute("INSERT INTO t VALUES (3)")
        assert not waiting, "a second writer got in while the first held the file"
        raw.commit()
        waiter.join(5)
        assert waiting
    finally:
        raw.close()


def _hold_the_file(url: str, hold_s: float, conn) -> None:
    """In another process: whenever asked, a transaction that holds the file ``hold_s``; sends when
    it begins writing and when it committed."""
    engine = sqlite_engine(url)
    while (row := conn.recv()) is not None:
        with engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (:id)"), {"id": row})
            conn.send(("writing", time.time()))
            time.sleep(hold_s)
        conn.send(("committed", time.time()))
    engine.dispose()


def test_a_writer_waiting_behind_another_process_starts_as_soon_as_it_commits(engine, url):
    """Between processes SQLite's busy handler would start the waiter about 90 ms after the commit
    (see above)."""
    parent, child = multiprocessing.Pipe()
    other = multiprocessing.get_context("spawn").Process(target=_hold_the_file, args=(url, 0.34, child))
    other.start()
    gaps = []
    try:
        for k in range(5):
            parent.send(100 + k)
            assert parent.poll(30) and parent.recv()[0] == "writing"
            with engine.begin() as c:  # waits for the other process's commit
                c.execute(text("INSERT INTO t VALUES (:id)"), {"id": k})
                started = time.time()
            kind, committed = parent.recv()
            assert kind == "committed"
            gaps.append(started - committed)
    finally:
        parent.send(None)
        other.join(10)
    assert all(g >= 0 for g in gaps), f"a writer got in while the other process held the file: {gaps}"
    assert statistics.median(gaps) < 0.04, gaps
