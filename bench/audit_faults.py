"""Audit trail under attack and faults (issue 15): the figures behind docs/storage.md.

Runs the real server (``cds-service serve``, 2 workers, auth off) on a throwaway PostgreSQL and prints:

- ``feedback``: audit rows written for 30 hook calls made after one feedback POST of 65,600 card ids;
- ``outage``: cards lost when the server is stopped (SIGTERM) while PostgreSQL is down, then both are
  started again.

    python -m bench.audit_faults feedback|outage [--repo PATH] [--calls N]

``--repo`` runs another checkout's code (e.g. the main branch) for a before/after comparison. Needs the
Debian ``postgresql`` package; run as root (the database runs as the ``postgres`` user).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.storage_requests import SERVICE, order_sign_with_seizure_history

HERE = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Postgres:
    """A PostgreSQL cluster that can be stopped and started again with its data."""

    def __init__(self, root: Path) -> None:
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1]).parent
        self.root = root
        self.data = root / "pg"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        shutil.chown(root, "postgres")
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
            user="postgres",
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.root), "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user="postgres",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        engine = create_engine(self.url("postgres"))
        while True:
            try:
                with engine.connect():
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        engine.dispose()

    def stop(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
            self.process = None

    def url(self, database: str = "cds") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> None:
        engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE DATABASE cds"))
        engine.dispose()


def request(base: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, None


class Server:
    def __init__(self, repo: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1"]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                cwd=repo,
                env={**env, "PYTHONPATH": str(repo)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(self.base, "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"server did not start; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def hook_calls(base: str, n: int) -> int:
    cards = 0
    for _ in range(n):
        status, body = request(base, f"/cds-services/{SERVICE}", order_sign_with_seizure_history())
        assert status == 200, status
        cards += len(body["cards"])
    return cards


def rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(text("issued_card"))).scalar_one()
    finally:
        engine.dispose()


def wait_rows(url: str, expected: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        found = rows(url)
        if found >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("feedback", "outage"))
    parser.add_argument("--repo", type=Path, default=HERE)
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument(
        "--feedback-max-entries", default="100", help="CDS_FEEDBACK_MAX_ENTRIES: raise it to test the writer"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cds-audit-faults-"))
    pg = Postgres(root)
    pg.start()
    pg.create_database()
    env = {
        **os.environ,
        "CDS_DATA_DIR": str(root / "data"),
        "CDS_DATABASE_URL": pg.url(),
        "CDS_AUTH": "off",
        "CDS_WORKERS": "2",
        "CDS_ACCESS_LOG": "off",
        "CDS_MAX_BODY_BYTES": str(64 * 1024 * 1024),
        "CDS_FEEDBACK_MAX_ENTRIES": args.feedback_max_entries,
        "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
    }
    log = root / "server.log"
    try:
        server = Server(args.repo, env, log)
        if args.scenario == "feedback":
            entries = [
                {
                    "card": str(uuid.uuid4()),
                    "outcome": "overridden",
                    "outcomeTimestamp": "2025-03-01T10:00:00Z",
                }
                for _ in range(65_600)
            ]
            status, _ = request(server.base, f"/cds-services/{SERVICE}/feedback", {"feedback": entries})
            calls = args.calls or 30
            cards = hook_calls(server.base, calls)
            written = wait_rows(pg.url(), cards, 20)
            print(f"feedback POST of 65,600 ids: HTTP {status}; then {calls} hook calls, {cards} cards: "
                  f"{written} audit rows written within 20 s")  # fmt: skip
            server.stop()
        else:
            calls = args.calls or 300
            before = hook_calls(server.base, 5)
            wait_rows(pg.url(), before, 20)
            pg.stop()
            cards = before + hook_calls(server.base, calls)
            server.stop()  # SIGTERM while the database is down
            pg.start()
            server = Server(args.repo, env, log)
            written = wait_rows(pg.url(), cards, 30)
            server.stop()
            print(f"stop during a database outage: {cards} cards issued, {written} rows in the database, "
                  f"{cards - written} lost")  # fmt: skip
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
