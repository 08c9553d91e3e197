"""Healthy-call latency with a stuck FHIR server and a stuck JWKS endpoint beside it (issue 15 item 4).

    .venv/bin/python -m bench.outbound_isolation [--calls 200] [--stuck-callers 4]

Servers on 127.0.0.1 (ephemeral ports, stopped at the end): a healthy FHIR stand-in answering at once,
a stuck one that trickles its status line and headers a byte a second, a healthy HTTPS JWKS endpoint
and a stuck one (accepts, never answers). Phase 1 measures the healthy calls alone; phase 2 measures
them again while ``--stuck-callers`` threads keep calling the stuck servers (a hook call's 7 fallback
queries each, and key-set fetches). Figures: p50 / p95 / max in ms and how many healthy calls failed.

Run with ``PYTHONPATH=<other checkout>`` to measure another version of the client (the script only
uses ``FhirClient(ClientSettings())``, ``fetch_all`` and ``JwksCache(...).fetch``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

# The stand-ins the tests use (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.stuck_servers import HealthyFhir, StuckServer, self_signed_certificate

from cds_service.fhir_client import ClientSettings, FhirClient
from cds_service.security.jwks import JwksCache, JwksFetchError

QUERIES = {
    "patient": "Patient/p1",
    "medications": "MedicationRequest?patient=p1&status=active",
    "conditions": "Condition?patient=p1",
    "allergies": "AllergyIntolerance?patient=p1",
    "weight": "Observation?patient=p1&code=w",
    "renal": "Observation?patient=p1&code=r",
    "nat2": "Observation?patient=p1&code=n",
}
JWKS = {
    "keys": [
        {
            "kty": "EC",
            "crv": "P-256",
            "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            "alg": "ES256",
            "use": "sig",
        }
    ]
}


def _jwks_server(cert: Path, key: Path) -> ThreadingHTTPServer:
    body = json.dumps(JWKS).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _measure(call: Callable[[], bool], calls: int) -> dict[str, float]:
    latencies, failures = [], 0
    for _ in range(calls):
        started = time.perf_counter()
        ok = call()
        latencies.append((time.perf_counter() - started) * 1000)
        failures += not ok
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "max_ms": round(latencies[-1], 1),
        "failed": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--stuck-callers", type=int, default=4)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the stuck calls' warnings are expected

    tmp = Path(tempfile.mkdtemp(prefix="outbound-bench-"))
    cert, key = self_signed_certificate(tmp)
    session = requests.Session()
    session.trust_env = False
    session.verify = str(cert)
    jwks_server = _jwks_server(cert, key)
    jwks_url = f"https://127.0.0.1:{jwks_server.server_address[1]}/jwks.json"
    client = FhirClient(ClientSettings())

    with (
        HealthyFhir() as healthy,
        StuckServer(trickle=True) as stuck_fhir,
        StuckServer(trickle=False) as stuck_keys,
    ):
        stuck_jwks_url = f"https://127.0.0.1:{stuck_keys.port}/jwks.json"
        cache = JwksCache(session=session)

        def healthy_fhir_call() -> bool:
            return all(r.error is None for r in client.fetch_all(healthy.base_url, QUERIES, "tok").values())

        def healthy_jwks_fetch() -> bool:
            try:
                return "k1" in cache.fetch(jwks_url)
            except JwksFetchError:
                return False

        results = {
            "alone": {
                "fhir": _measure(healthy_fhir_call, args.calls),
                "jwks": _measure(healthy_jwks_fetch, args.calls),
            }
        }
        stop = threading.Event()

        def stuck_caller(index: int) -> None:
            stuck_cache = JwksCache(session=session)
            while not stop.is_set():
                if index % 2 == 0:
                    client.fetch_all(stuck_fhir.base_url, QUERIES, "tok")
                else:
                    with contextlib.suppress(JwksFetchError):
                        stuck_cache.fetch(stuck_jwks_url)

        callers = [
            threading.Thread(target=stuck_caller, args=(i,), daemon=True) for i in range(args.stuck_callers)
        ]
        for caller in callers:
            caller.start()
        time.sleep(1.0)  # let the stuck calls take their threads and slots
        results["beside_stuck"] = {
            "fhir": _measure(healthy_fhir_call, args.calls),
            "jwks": _measure(healthy_jwks_fetch, args.calls),
        }
        stop.set()
        print(json.dumps({"stuck_callers": args.stuck_callers, "calls": args.calls, **results}, indent=2))
    jwks_server.shutdown()


if __name__ == "__main__":
    main()
