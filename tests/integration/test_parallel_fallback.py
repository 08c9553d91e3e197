"""Fallback queries run in parallel: a FHIR server that holds each answer DELAY seconds sees all seven
queries of a call that needs every key in flight at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from cds_service.integration.simulator import build_request

pytestmark = pytest.mark.integration

DELAY = 1.0
PATIENT = "slow-patient"


class SlowFhir(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SlowHandler)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.paths: list[str] = []


class SlowHandler(BaseHTTPRequestHandler):
    server: SlowFhir

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
            self.server.paths.append(self.path.split("?")[0])
        try:
            time.sleep(DELAY)
            if self.path.startswith(f"/fhir/Patient/{PATIENT}"):
                body: dict[str, Any] = {"resourceType": "Patient", "id": PATIENT, "birthDate": "1970-01-01"}
            else:
                body = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def slow_fhir() -> Iterator[SlowFhir]:
    server = SlowFhir()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_fallback_queries_run_in_parallel(slow_fhir: SlowFhir, make_service: Callable[..., Flask]) -> None:
    app = make_service()
    client = app.test_client()
    order = {
        "resourceType": "MedicationRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"},
    }
    base = f"http://127.0.0.1:{slow_fhir.server_port}/fhir"
    body = build_request("order-sign", PATIENT, "Practitioner/p1", [order], prefetch=None, fhir_server=base)
    started = time.monotonic()
    response = client.post("/cds-services/amifampridine-order-sign", json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.get_json()
    assert len(slow_fhir.paths) == 7, slow_fhir.paths  # one query per prefetch key
    # Structural, not timed: queries sent in turn are never held together (the time is only printed;
    # the benchmark's workload b measures it).
    print(f"7 queries of {DELAY:g} s took {elapsed:.2f} s, {slow_fhir.max_in_flight} at once at most")
    assert slow_fhir.max_in_flight == 7, f"at most {slow_fhir.max_in_flight} of 7 queries in flight at once"
