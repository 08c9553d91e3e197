"""Measure JWT replays accepted by `cds-service serve` (gunicorn, several workers, SQLite by default).

    .venv/bin/python bench/replay_attack.py [--workers 2] [--replays 50] [--database-url URL]

Starts the server on a free loopback port with a throwaway key and data directory, sends one signed token
and then the same token `--replays` times, each on a new connection, and prints how many replays got 200.
The server is stopped by its process id.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.security import ISS, client_entry, jwks_of, make_keypair, mint_token, write_trusted_clients


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit("server not ready")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--replays", type=int, default=50)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--parallel", type=int, default=1, help="replays sent at once (threads)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cds-replay-"))
    key = make_keypair("ES384")
    clients = write_trusted_clients(work, [client_entry(ISS, jwks=jwks_of(key))])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CDS_BIND": f"127.0.0.1:{port}",
        "CDS_WORKERS": str(args.workers),
        "CDS_TRUSTED_CLIENTS": str(clients),
        "CDS_PUBLIC_BASE_URL": base,
        "CDS_DATA_DIR": str(work / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prom"),
    }
    if args.database_url:
        env["CDS_DATABASE_URL"] = args.database_url
    (work / "prom").mkdir()
    cli = Path(sys.executable).with_name("cds-service")
    proc = subprocess.Popen(
        [str(cli), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(base, proc)
        token = mint_token(key, aud=f"{base}/cds-services", lifetime=600)
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        first = requests.get(f"{base}/cds-services", headers=headers, timeout=10).status_code
        with ThreadPoolExecutor(args.parallel) as pool:
            statuses = list(
                pool.map(
                    lambda _: requests.get(f"{base}/cds-services", headers=headers, timeout=10).status_code,
                    range(args.replays),
                )
            )
        accepted = statuses.count(200)
        print(
            f"first use: {first}; replays accepted: {accepted} of {args.replays} "
            f"(workers={args.workers}, parallel={args.parallel}, "
            f"database={args.database_url or 'default SQLite'})"
        )
        print("readyz replayCache:", requests.get(f"{base}/readyz", timeout=5).json().get("replayCache"))
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
