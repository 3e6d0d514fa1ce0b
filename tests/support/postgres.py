"""A real PostgreSQL server for tests: `initdb` and `pg_ctl` in a temporary directory, on a
free loopback port, with a password (so tests can check it never leaks).

The binaries come from `LABELCUT_PG_BIN` or Debian's `/usr/lib/postgresql/<v>/bin`
(`apt-get install postgresql`); without them the tests that need one skip, saying so.
`initdb` refuses to run as root: as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from .server import free_port

USER = "labelcut"
PASSWORD = "pg-secret-6f1d2c"  # tests assert this string never shows in logs or answers
INSTALL_HINT = (
    "PostgreSQL server binaries not found: install them (Debian: apt-get install postgresql) "
    "or point LABELCUT_PG_BIN at the directory holding initdb and pg_ctl."
)


def pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    candidates = [os.environ.get("LABELCUT_PG_BIN", "")]
    candidates += sorted(
        (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def _unavailable(reason: str) -> None:
    """Skip on a developer machine without PostgreSQL; under CI (`CI` set, as `.ci/run`
    runs it, having installed the server) fail instead, so CI never skips these tests."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(reason)


class Postgres:
    """One PostgreSQL cluster: `start()`, `kill()` (SIGKILL of the postmaster), `stop()`."""

    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            _unavailable(INSTALL_HINT)
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            _unavailable("Running as root needs runuser to start PostgreSQL as 'postgres'.")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="labelcut-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self.dir.chmod(0o700)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _run(self, *cmd: str) -> None:
        done = subprocess.run(
            [*_as_server_user(), *cmd], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise AssertionError(f"{cmd[0]} failed: {done.stdout}\n{done.stderr}")

    @property
    def base_url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def url(self, database: str = "postgres") -> str:
        return f"{self.base_url}/{database}"

    def start(self) -> Postgres:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c fsync=on -c max_connections=200"
        )
        pg_ctl = str(self.bin / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def _pid(self) -> int | None:
        """The running postmaster's pid, or None (never started, stopped, or killed)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def stop(self) -> None:
        if self._pid() is not None:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and its children: no shutdown, as after a power cut."""
        pid = self._pid()
        if pid is None:
            return
        children = _children(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def cleanup(self) -> None:
        try:
            self.stop()
        except Exception:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session (import this fixture into a test module)."""
    server = Postgres().start()
    yield server
    server.cleanup()


def fresh_database(server: Postgres, prefix: str = "t") -> str:
    """A new, empty database on `server`: its URL (password included)."""
    return server.create_database(f"{prefix}_{os.getpid()}_{next(_databases)}")
