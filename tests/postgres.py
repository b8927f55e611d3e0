"""A throwaway PostgreSQL server for tests: initdb in a temp dir, started on a free port.

CI installs Debian's postgresql package (.ci/run); the server binaries live under
/usr/lib/postgresql/<version>/bin. As root, the server runs as the postgres user.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from streams.kafka.broker import free_port


@dataclass
class Postgres:
    url: str
    data_dir: str
    bin_dir: str

    def stop(self) -> None:
        _run(self.bin_dir, ["pg_ctl", "-D", self.data_dir, "-m", "immediate", "stop"], check=False)
        shutil.rmtree(os.path.dirname(self.data_dir), ignore_errors=True)


def bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _run(bins: str, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    command = [os.path.join(bins, args[0]), *args[1:]]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)


def start() -> Postgres:
    bins = bin_dir()
    if bins is None:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    root = tempfile.mkdtemp(prefix="gapstream-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    _run(bins, ["initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    port = free_port()
    _run(bins, ["pg_ctl", "-D", data, "-w", "-l", os.path.join(root, "log"),
                "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _run(bins, ["pg_isready", "-h", "127.0.0.1", "-p", str(port)], check=False).returncode == 0:
            return Postgres(url, data, bins)
        time.sleep(0.2)
    raise RuntimeError("PostgreSQL did not become ready")
