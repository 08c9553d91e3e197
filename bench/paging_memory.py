"""Peak memory of a service process under the paging attack (issue 15 item 6, outbound part).

    .venv/bin/python -m bench.paging_memory [--page-mb 15] [--pages 20] [--calls 1] [--env JSON]

A stand-in FHIR server (this process, 127.0.0.1, ephemeral port) answers the conditions query with
``--pages`` pages of ``--page-mb`` MB each, linked by ``next``; every other key is small. A child
process builds the service the production way (``create_app(Settings.from_env(...))``, auth off, http
FHIR allowed, default limits unless given) and makes ``--calls`` concurrent no-prefetch amifampridine
hook calls (one by default); it prints
its peak RSS (``ru_maxrss``) before and after the call, the status and the card topics. Run with
``PYTHONPATH=<other checkout>`` from another directory to measure another version of the service.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHILD = r"""
import json, resource, sys
from concurrent.futures import ThreadPoolExecutor
from cds_service.app import create_app
from cds_service.config import Settings

base, data_dir = sys.argv[1], sys.argv[2]
env = {"CDS_AUTH": "off", "CDS_ALLOW_HTTP_FHIR": "true", "CDS_DATA_DIR": data_dir, **json.loads(sys.argv[3])}
app = create_app(Settings.from_env(env))
draft = {"resourceType": "MedicationRequest", "id": "amif", "status": "draft", "intent": "order",
         "subject": {"reference": "Patient/p1"},
         "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"}}
body = {"hook": "order-sign", "hookInstance": "bench", "fhirServer": base,
        "context": {"userId": "Practitioner/p1", "patientId": "p1",
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": draft}]}}}
calls = int(sys.argv[4])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with ThreadPoolExecutor(max_workers=calls) as pool:  # concurrent hook calls, as gunicorn's threads make
    responses = list(pool.map(lambda _: app.test_client().post("/cds-services/amifampridine-order-sign",
                                                               json=body), range(calls)))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cards = (responses[0].get_json() or {}).get("cards", [])
print(json.dumps({"status": sorted({r.status_code for r in responses}), "rss_before_mb": round(before / 1024),
                  "peak_rss_mb": round(after / 1024),
                  "topics": sorted(c["source"]["topic"]["code"] for c in cards)}))
"""


NEXT = "@@NEXT@@"


def _page_template(size_mb: float) -> bytes:
    """One page of Conditions, built once (the server must be fast for the attack to bite); the next
    link is filled in per page."""
    entry = {"resourceType": "Condition", "code": {"text": "x" * 200}, "subject": {"reference": "Patient/p1"}}
    one = len(json.dumps({"resource": {**entry, "id": "c-000000"}}))
    count = int(size_mb * 1024 * 1024 / (one + 2))
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": NEXT}],
        "entry": [{"resource": {**entry, "id": f"c-{i:06d}"}} for i in range(count)],
    }
    return json.dumps(bundle).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--page-mb", type=float, default=15.0)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--calls", type=int, default=1, help="concurrent hook calls in the one process")
    parser.add_argument(
        "--env",
        default="{}",
        help='extra CDS_ settings as JSON, e.g. {"CDS_FHIR_MAX_CALL_BYTES": "16777216"}',
    )
    args = parser.parse_args()
    served = {"pages": 0}
    template = _page_template(args.page_mb)
    last = template.replace(b'"link": [{"relation": "next", "url": "@@NEXT@@"}], ', b"")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/fhir/Condition":
                index = int(parse_qs(parts.query).get("page", ["0"])[0])
                base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
                next_url = f"{base}/Condition?page={index + 1}".encode()
                payload = template.replace(NEXT.encode(), next_url, 1) if index + 1 < args.pages else last
                served["pages"] += 1
            elif parts.path.startswith("/fhir/Patient/"):
                payload = json.dumps(
                    {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}
                ).encode()
            else:
                payload = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(payload)

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/fhir"
    with tempfile.TemporaryDirectory() as data_dir:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, base, data_dir, args.env, str(args.calls)],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=600,
            check=False,
        )
    server.shutdown()
    result = (
        json.loads(child.stdout.strip().splitlines()[-1])
        if child.stdout.strip()
        else {"error": child.stderr[-2000:]}
    )
    result.update(
        page_mb=args.page_mb,
        pages_offered=args.pages,
        pages_served=served["pages"],
        env=args.env,
        calls=args.calls,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
