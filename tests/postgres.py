"""A throwaway PostgreSQL server on loopback for the MORALE storage tests (Debian's postgresql).

Debian's server binaries (``/usr/lib/postgresql/<version>/bin``) are installed with
apt-get when missing and we are root (as on CI); where they cannot be installed, the
tests that need them skip with the reason. The ``postgres_cluster`` fixture (one per
test session) runs ``initdb`` into a fresh temp directory and starts the server with
``pg_ctl``, listening on 127.0.0.1 only (plus a unix socket inside that directory),
with trust authentication; ``postgres_url`` gives each test its own new database.
PostgreSQL refuses to run as root, so as root the server runs as Debian's ``postgres``
system user (``runuser``) and the temp directory belongs to that user. The server is
stopped and the directory removed at teardown, whatever happened. Every command has a
timeout; nothing but loopback is ever contacted.

The cluster runs with ``fsync=off``: it is thrown away after the tests, which exercise
transactions and concurrency, not the durability of PostgreSQL itself.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"  # the account Debian's postgresql package creates
DRIVER = "postgresql+psycopg"
COMMAND_TIMEOUT_S = 60
_db_counter = itertools.count()


def _bin_dir() -> Path | None:
    """The newest installed server version's bin directory (one with initdb and pg_ctl)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
             if (Path(p).parent / "pg_ctl").exists() and (Path(p).parent / "psql").exists()]

    def version(path: Path) -> tuple:
        return tuple(int(x) if x.isdigit() else 0 for x in path.parent.name.split("."))

    return max(found, key=version) if found else None


def ensure_postgres() -> Path:
    """The server's bin directory, installing Debian's ``postgresql`` when missing (root + apt-get)."""
    found = _bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the PostgreSQL server is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "postgresql"]
    try:
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
            proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    except subprocess.TimeoutExpired as err:
        pytest.skip(f"installing Debian's postgresql timed out after {err.timeout:.0f} s")
    found = _bin_dir()
    if proc.returncode != 0 or found is None:
        pytest.skip(f"could not install Debian's postgresql: {proc.stderr.strip()[-300:]}")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl on a temp directory; ``create_database()`` returns a SQLAlchemy URL."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="mmscale-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port: int | None = None
        self._prefix: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                user = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                self.remove()
                raise RuntimeError(f"running as root but there is no {SYSTEM_USER!r} system user to run "
                                   "PostgreSQL as (Debian's postgresql package creates it)") from None
            self._prefix = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", SYSTEM_USER, "--"]
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: float = COMMAND_TIMEOUT_S, server_side: bool = True,
             check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*(self._prefix if server_side else []), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT="10")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.root, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-1500:]}\n{self.log_tail()}")
        return proc

    def log_tail(self) -> str:
        try:
            return "server log:\n" + self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def start(self, attempts: int = 3) -> "PostgresCluster":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        self._run("mkdir", "-p", str(self.sockets))
        for attempt in range(attempts):  # another process may grab the free port before the server binds it
            self.port = free_port()
            options = (f"-c listen_addresses={LOOPBACK} -p {self.port} -c unix_socket_directories={self.sockets} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                       "-c shared_buffers=32MB -c log_min_messages=warning -c deadlock_timeout=200ms")
            proc = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                             "-w", "-t", "30", "start", check=attempt == attempts - 1)
            if proc.returncode == 0:
                return self
            self.stop()
        return self

    def psql(self, sql: str, database: str = "postgres") -> str:
        proc = self._run(str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", LOOPBACK,
                         "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-tA", "-c", sql,
                         server_side=False, timeout=30)
        return proc.stdout.strip()

    def url(self, database: str) -> str:
        return f"{DRIVER}://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def create_database(self) -> tuple[str, str]:
        """(name, SQLAlchemy URL) of a new, empty database."""
        name = f"morale_test_{os.getpid()}_{next(_db_counter)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE: ends leftover connections

    def stop(self) -> None:
        """Fast shutdown; SIGKILL the postmaster if it does not go away in time."""
        if not (self.data / "postmaster.pid").exists():
            return
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "20", "stop",
                      timeout=30, check=False)
        except subprocess.TimeoutExpired:
            pass
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
            except (ValueError, IndexError, OSError):
                pass

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.remove()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A PostgreSQL server on 127.0.0.1 for this test session (skips where it cannot be installed)."""
    bin_dir = ensure_postgres()
    cluster = PostgresCluster(bin_dir)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def postgres_url(postgres_cluster):
    """The SQLAlchemy URL of a fresh database on the session's server, dropped after the test."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed "
                                          "(pip install 'psycopg[binary]')")
    name, url = postgres_cluster.create_database()
    try:
        yield url
    finally:
        postgres_cluster.drop_database(name)
