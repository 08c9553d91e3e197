"""Fallback queries run in parallel: a hook call without prefetch takes about one FHIR round trip.

A local FHIR stand-in on 127.0.0.1 holds every answer for DELAY seconds and counts how many queries it
holds at once. The bounds are loose on purpose (timing on a shared CI machine is noisy); the figures
themselves are the benchmark's job (``make bench``, workload b). The concurrency counts do not depend on
timing: queries that ran one after another could never be held together.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.fhir_client import ClientSettings

DELAY = 0.25  # seconds the stand-in holds each answer
PATIENT_ID = "perf-patient"
SERVICE = "/cds-services/amifampridine-order-sign"


class DelayedFhir:
    """A threaded HTTP server answering the service's searches after DELAY, counting overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                with owner.lock:
                    owner.in_flight += 1
                    owner.peak = max(owner.peak, owner.in_flight)
                    owner.paths.append(self.path)
                try:
                    time.sleep(DELAY)
                    body = json.dumps(answer(urlsplit(self.path).path)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with owner.lock:
                        owner.in_flight -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self) -> None:
        with self.lock:
            self.peak, self.paths = 0, []


def answer(path: str) -> dict[str, Any]:
    kind = path.rstrip("/").split("/")[2]  # /fhir/<Type>[/<id>]
    if kind == "Patient":
        return {"resourceType": "Patient", "id": PATIENT_ID, "birthDate": "1970-04-12", "gender": "female"}
    entries: list[dict[str, Any]] = []
    if kind == "Condition":
        epilepsy = {
            "resourceType": "Condition",
            "id": "perf-epilepsy",
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": "84757009", "display": "Epilepsy"}]
            },
        }
        entries.append({"resource": epilepsy})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


@pytest.fixture
def fhir() -> Iterator[DelayedFhir]:
    stand_in = DelayedFhir()
    stand_in.thread.start()
    try:
        yield stand_in
    finally:
        stand_in.server.shutdown()
        stand_in.server.server_close()


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    env = {"CDS_AUTH": "off", "CDS_ALLOW_HTTP_FHIR": "true", "CDS_DATA_DIR": str(tmp_path / "data")}
    return create_app(Settings.from_env(env)).test_client()


def hook_call(fhir_server: str) -> dict[str, Any]:
    draft = {
        "resourceType": "MedicationRequest",
        "id": "perf-draft",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"},
    }
    return {
        "hook": "order-sign",
        "hookInstance": "5b0c2a59-2f5e-4d4b-9d3e-2a6f0d7f3a11",
        "fhirServer": fhir_server,
        "context": {
            "userId": "Practitioner/perf",
            "patientId": PATIENT_ID,
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]},
        },
    }


def timed_call(client: FlaskClient, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.post(SERVICE, json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.get_data(as_text=True)
    return elapsed, response.get_json()


def test_fallback_queries_overlap_and_take_about_one_delay(client: FlaskClient, fhir: DelayedFhir) -> None:
    body = hook_call(fhir.base)
    timed_call(client, body)  # warm: connection pool and worker threads
    fhir.reset()

    elapsed, answer_json = timed_call(client, body)

    queries = len(fhir.paths)
    assert queries >= 5, f"expected a fallback query per prefetch key, the server saw {fhir.paths}"
    # Every query was held at the server at the same moment: they were sent together, not in turn.
    assert fhir.peak == queries
    assert elapsed < 2 * DELAY, f"{queries} queries of {DELAY} s took {elapsed:.2f} s"
    assert elapsed < queries * DELAY / 2
    # The fetched data reached the rules: the epilepsy Condition gives the seizure-history card.
    topics = [card["source"]["topic"]["code"] for card in answer_json["cards"]]
    assert "seizure-history" in topics


def test_concurrent_calls_do_not_queue_behind_each_other(client: FlaskClient, fhir: DelayedFhir) -> None:
    body = hook_call(fhir.base)
    timed_call(client, body)
    fhir.reset()
    results: list[float] = []

    def one_call() -> None:
        results.append(timed_call(client.application.test_client(), body)[0])

    callers = [threading.Thread(target=one_call) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=30)

    assert len(results) == 2
    # Two calls' queries together outnumber the per-call thread count; the shared pool must still
    # hold them all at once (a pool of max_workers threads made the second half wait a full round).
    assert fhir.peak > ClientSettings().max_workers, f"at most {fhir.peak} queries in flight at once"
    assert max(results) < 2 * DELAY + 0.25, f"two concurrent calls took {results}"
