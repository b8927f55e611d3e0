"""SQLite, the embedded default's database: WAL, and one writer at a time that waits its turn
without sleeping.

SQLite lets one connection write at a time. A connection that finds the file locked waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25 ... up to 100 ms between tries: behind
a writer that needed 3 ms, the next may sleep 8 or 18. The worker's sink and dispatcher processes
write one file (ADT alert routing, the table sinks, the webhook dispatchers), and those sleeps were
the tail of webhook latency (`gapstream bench delivery`'s paced phase, README "Webhook delivery").
So writers queue on a lock of their own per database file, taken at a transaction's first write and
released when it commits or rolls back: within a process a thread lock, across processes an
exclusive ``flock`` on a file beside the database, tried every 0.2 to 1 ms. The next
writer starts within about a millisecond of the lock's release. Readers take nothing (WAL lets them
read beside a writer).
"""
from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine

TIMEOUT_S = 30.0
# The statements that may take SQLite's write lock: the sqlite3 module begins a transaction before
# INSERT, UPDATE, DELETE and REPLACE; DDL outside one commits at once; a WITH may end in a write.
# Whatever leaves no transaction open releases the lock again at once.
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "WITH")
_LEADING = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.S)  # blanks and comments before the keyword
_writers: dict[str, _WriterLock] = {}  # by database file
_writers_lock = threading.Lock()


class _WriterLock:
    """The writer's turn on one database file, for threads of this process and for other processes."""

    def __init__(self, database: str | None):
        self._threads = threading.Lock()
        self._path = database + "-writer" if database else None  # None: a database of one connection
        self._fd, self._pid = -1, 0

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            return False
        if self._path is None:
            return True
        fd, pause = self._file(), 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._threads.release()
                    return False
                # A blocking flock would wake at once, but could not give up after the timeout.
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def release(self) -> None:
        if self._path is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def _file(self) -> int:
        if self._pid != os.getpid():  # a forked child shares its parent's open file, and so its lock
            assert self._path is not None
            self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        return self._fd


def _writer_lock(database: str | None) -> _WriterLock:
    if not database or database == ":memory:":  # a database of each connection's own
        return _WriterLock(None)
    path = os.path.realpath(database)
    with _writers_lock:
        return _writers.setdefault(path, _WriterLock(path))


def _writes(sql: str) -> bool:
    return sql[_LEADING.match(sql).end():][:7].upper().startswith(_WRITES)


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters=(), /):  # type: ignore[override]
        return self.connection._write(sql, super().execute, parameters)  # type: ignore[attr-defined]

    def executemany(self, sql: str, parameters, /):  # type: ignore[override]
        return self.connection._write(sql, super().executemany, parameters)  # type: ignore[attr-defined]


class _Connection(sqlite3.Connection):
    _lock: _WriterLock
    _holding = False

    def cursor(self, factory=_Cursor):  # type: ignore[override]
        return super().cursor(factory)

    # The module's shortcuts make their cursor without calling cursor().
    def execute(self, sql: str, parameters=(), /):  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters, /):  # type: ignore[override]
        return self.cursor().executemany(sql, parameters)

    def _write(self, sql: str, run, parameters):
        if not self._holding and _writes(sql):
            if not self._lock.acquire(timeout=TIMEOUT_S):
                raise sqlite3.OperationalError(f"database is locked (another writer held it for {TIMEOUT_S:g} s)")
            self._holding = True
        try:
            return run(sql, parameters)
        finally:
            if self._holding and not self.in_transaction:  # a failed write, or DDL committed at once
                self._release()

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self._lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()


def sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": TIMEOUT_S,
                                              "factory": _Connection})
    lock = _writer_lock(database)

    @event.listens_for(engine, "connect")
    def _setup(connection: _Connection, _record) -> None:
        connection._lock = lock
        connection.execute("PRAGMA journal_mode=WAL")  # the CLI and a worker use one file at once
        # In WAL mode, NORMAL keeps every committed transaction when the process crashes (what the
        # delivery contract needs: a killed worker loses nothing) and stays consistent; only an OS
        # crash or power loss may roll back the last commits. FULL would fsync every commit,
        # several milliseconds each here. Production runs on PostgreSQL.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
    return engine
