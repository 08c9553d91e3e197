"""Hook calls answered while PostgreSQL is stopped, with auth on (issue 15, item 3).

    CDS_TEST_POSTGRES=1 .venv/bin/python bench/replay_pg_outage.py [--stop 30] [--threads 4]

Starts a throwaway PostgreSQL (tests/conftest_postgres.py) and `cds-service serve` (2 workers) on it, sends
signed order-sign calls (a fresh token each) from a few threads, stops PostgreSQL for `--stop` seconds
(fast shutdown), starts it again, and prints the status codes before, during and after the stop. Every
process it starts is stopped by its id.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
from conftest_postgres import PostgresServer, _run_as_postgres  # noqa: E402
from helpers.security import ISS, client_entry, jwks_of, make_keypair, mint_token, write_trusted_clients  # noqa: E402

from bench.replay_attack import free_port, wait_ready  # noqa: E402

SIGN = "/cds-services/amifampridine-order-sign"


def restart(server: PostgresServer) -> None:
    log = open(server.root / "server.log", "ab")  # noqa: SIM115 - handed to the process
    server.process = subprocess.Popen(
        [str(server.bin_dir / "postgres"), "-D", str(server.data_dir), "-h", "127.0.0.1",
         "-p", str(server.port), "-k", str(server.root), "-c", "fsync=off"],
        stdout=log, stderr=subprocess.STDOUT, user=_run_as_postgres(),
    )  # fmt: skip
    log.close()
    server._wait_ready()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop", type=float, default=30)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--before", type=float, default=10)
    parser.add_argument("--after", type=float, default=10)
    args = parser.parse_args()

    pg = PostgresServer()
    pg.start()
    work = Path(tempfile.mkdtemp(prefix="cds-pg-outage-"))
    key = make_keypair("ES384")
    clients = write_trusted_clients(work, [client_entry(ISS, jwks=jwks_of(key))])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (work / "prom").mkdir()
    env = {
        **os.environ,
        "CDS_BIND": f"127.0.0.1:{port}",
        "CDS_WORKERS": "2",
        "CDS_TRUSTED_CLIENTS": str(clients),
        "CDS_PUBLIC_BASE_URL": base,
        "CDS_DATA_DIR": str(work / "data"),
        "CDS_DATABASE_URL": pg.url(pg.create_database()),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prom"),
    }
    body = json.loads((ROOT / "fixtures/requests/clean-adult-new-start.json").read_text())
    cli = Path(sys.executable).with_name("cds-service")
    proc = subprocess.Popen(
        [str(cli), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    phase = ["before"]
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    stop = threading.Event()
    lock = threading.Lock()

    def drive() -> None:
        session = requests.Session()
        while not stop.is_set():
            token = mint_token(key, aud=base + SIGN)
            current = phase[0]
            try:
                status = str(
                    session.post(
                        base + SIGN, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
                    ).status_code
                )
            except requests.RequestException as exc:
                status = type(exc).__name__
            with lock:
                counts[current][status] += 1

    try:
        wait_ready(base, proc)
        threads = [threading.Thread(target=drive, daemon=True) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        time.sleep(args.before)
        phase[0] = "during stop"
        assert pg.process is not None
        os.kill(pg.process.pid, signal.SIGINT)
        pg.process.wait(timeout=30)
        time.sleep(args.stop)
        readyz = requests.get(f"{base}/readyz", timeout=5).json().get("replayCache")
        phase[0] = "after restart"
        restart(pg)
        time.sleep(args.after)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        metrics = requests.get(f"{base}/metrics", timeout=5).text
        fallback = [ln for ln in metrics.splitlines() if ln.startswith("cds_jwt_replay_fallback_total")]
        for name in ("before", "during stop", "after restart"):
            total = sum(counts[name].values())
            print(f"{name:14s} calls={total:6d} statuses={dict(counts[name])}")
        print("readyz replayCache during the stop:", readyz)
        print("after:", requests.get(f"{base}/readyz", timeout=5).json().get("replayCache"))
        print("metrics:", fallback)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
