"""Writers of one process on one SQLite file take turns without SQLite's sleeping busy handler."""
import statistics
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

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


def test_a_failed_write_lets_the_next_writer_in(engine, url):
    with engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (2)"))
        c.execute(text("INSERT INTO t VALUES (1)"))
    done: list[float] = []
    other = sqlite_engine(url)  # a store of its own on the same file, as the CLI's beside a worker's
    _write_in_thread(other, 3, done).join(5)
    other.dispose()
    assert done, "the writer after a rolled-back transaction is still waiting"
    with engine.connect() as c:
        assert c.execute(text("SELECT id FROM t ORDER BY id")).scalars().all() == [1, 3]
