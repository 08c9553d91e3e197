"""Database backends for the storage tests: SQLite always, a real PostgreSQL when CDS_TEST_POSTGRES=1.

With the variable set, the first test that needs PostgreSQL installs Debian's ``postgresql`` if it is
missing, runs ``initdb`` as the ``postgres`` user in a temporary directory and starts the server on
127.0.0.1 on a free port. Each test gets a fresh database. The server is stopped by its process id when the
test session ends (and at interpreter exit, should the session be interrupted).

Test modules load these fixtures with ``pytest_plugins = ["conftest_postgres"]``.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_WANTED = os.environ.get("CDS_TEST_POSTGRES", "").strip().lower() in {"1", "true", "yes", "on"}
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql", marks=pytest.mark.skipif(not POSTGRES_WANTED, reason="set CDS_TEST_POSTGRES=1")
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One throwaway PostgreSQL cluster on loopback, owned by this test process."""

    def __init__(self) -> None:
        self.bin_dir = _postgres_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cds-test-pg-"))
        self.data_dir = self.root / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self.user = "postgres"

    def start(self) -> None:
        run_as = _run_as_postgres()
        if run_as:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        initdb = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user, "--auth=trust"]
        subprocess.run(initdb, check=True, capture_output=True, user=run_as, timeout=120)
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - closed with the process in stop()
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                "-D", str(self.data_dir),
                "-h", "127.0.0.1",
                "-p", str(self.port),
                "-k", str(self.root),  # Unix socket in our directory, not /var/run
                "-c", "fsync=off",  # throwaway cluster: speed over crash safety
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=run_as,
        )  # fmt: skip
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=1):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                    log = (self.root / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
                time.sleep(0.2)

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def create_database(self) -> str:
        import psycopg

        name = f"cds_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)  # "fast shutdown": disconnect clients, then exit
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)


def _postgres_bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.geteuid() != 0:
            pytest.fail("PostgreSQL is not installed and the tests are not root: apt-get install postgresql")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
            check=True,
            capture_output=True,
            env=env,
            timeout=900,
        )
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent


def _run_as_postgres() -> str | None:
    # initdb and postgres refuse to run as root.
    return "postgres" if os.geteuid() == 0 else None


# One server per test session, however many test modules import the fixtures below.
_server: PostgresServer | None = None
_users = 0


def _acquire_server() -> PostgresServer:
    global _server, _users
    if _server is None:
        server = PostgresServer()
        atexit.register(server.stop)
        server.start()
        _server = server
    _users += 1
    return _server


def _release_server() -> None:
    global _server, _users
    _users -= 1
    if _users == 0 and _server is not None:
        _server.stop()
        _server = None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = _acquire_server()
    yield server
    _release_server()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (for "database unavailable" tests)."""
    return free_port()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cds.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)
