"""A stand-in FHIR server for workload (b): answers the service's fallback queries after a fixed delay.

It knows one patient (the benchmark's heavy patient) and the searches the service's prefetch templates
make: a read of ``Patient/<id>`` and ``<Type>?patient=<id>[&status=..][&code=system|code,...]``. Every
answer waits ``--delay`` seconds first, like a busy EHR FHIR server; a threaded server, so concurrent
queries wait concurrently. Loopback only.

    python -m bench.fhir_server --port 8091 --delay 0.05 --resources resources.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

Resources = Mapping[str, list[dict[str, Any]]]


def search(resources: Resources, kind: str, params: Mapping[str, list[str]]) -> dict[str, Any]:
    """A searchset Bundle: the ``patient``, ``status`` and ``code`` parameters are honoured."""
    found = list(resources.get(kind, []))
    if "status" in params:
        wanted = set(",".join(params["status"]).split(","))
        found = [r for r in found if r.get("status") in wanted]
    if "code" in params:
        tokens = set(",".join(params["code"]).split(","))
        found = [
            r
            for r in found
            if any(
                f"{c.get('system')}|{c.get('code')}" in tokens for c in r.get("code", {}).get("coding", [])
            )
        ]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "entry": [{"fullUrl": f"{kind}/{r['id']}", "resource": r} for r in found],
    }


def answer(resources: Resources, path: str, query: str) -> tuple[int, bytes]:
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "fhir":
        parts = parts[1:]
    if len(parts) == 2:
        for resource in resources.get(parts[0], []):
            if resource.get("id") == parts[1]:
                return 200, orjson.dumps(resource)
        return 404, orjson.dumps({"resourceType": "OperationOutcome", "issue": [{"code": "not-found"}]})
    if len(parts) == 1:
        return 200, orjson.dumps(search(resources, parts[0], parse_qs(query)))
    return 400, orjson.dumps({"resourceType": "OperationOutcome", "issue": [{"code": "not-supported"}]})


def make_server(host: str, port: int, resources: Resources, delay: float) -> ThreadingHTTPServer:
    cache: dict[str, tuple[int, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the service's pooled session reuses connections
        # Headers and body go out in two writes; with Nagle on, a kept-alive connection would wait for
        # the client's delayed ACK (40 ms) and the stand-in would measure TCP, not the service.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            started = time.monotonic()
            url = urlsplit(self.path)
            if self.path not in cache:
                cache[self.path] = answer(resources, url.path, url.query)
            status, body = cache[self.path]
            time.sleep(max(0.0, delay - (time.monotonic() - started)))
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the benchmark prints its own figures

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each answer (0.05)")
    parser.add_argument("--resources", required=True, help="JSON file: resourceType -> list of resources")
    args = parser.parse_args()
    with open(args.resources, "rb") as handle:
        resources = orjson.loads(handle.read())
    server = make_server(args.host, args.port, resources, args.delay)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
