"""Fallback queries run in parallel: a hook call without prefetch sends all its FHIR queries at once.

A local FHIR stand-in on 127.0.0.1 holds every answer until the queries it expects are all in flight
(or HOLD_LIMIT has passed) and records the most it held at once. The assertions are on that count, not on
time: queries sent one after another are never held together, however fast or busy the machine. How
long a fallback call takes is the benchmark's figure (``make bench``, workload b).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.data_keys import PREFETCH_KEYS
from cds_service.fhir_client import ClientSettings

# Longest the stand-in holds an answer waiting for the others: below the client's read timeout (4 s),
# so queries sent in turn are answered (late) and the test fails on the count, not on a timeout.
HOLD_LIMIT = 3.0
QUERIES_PER_CALL = len(PREFETCH_KEYS)  # one fallback query per prefetch key
PATIENT_ID = "perf-patient"
SERVICE = "/cds-services/amifampridine-order-sign"


class GatedFhir:
    """A threaded HTTP server that answers the service's searches once ``expected`` have arrived (at most
    HOLD_LIMIT later), recording the most queries in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.in_flight = 0
        self.peak = 0
        self.expected = QUERIES_PER_CALL
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
                    owner.lock.notify_all()
                    owner.lock.wait_for(lambda: len(owner.paths) >= owner.expected, timeout=HOLD_LIMIT)
                try:
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

    def reset(self, expected: int) -> None:
        with self.lock:
            self.peak, self.paths, self.expected = 0, [], expected


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
def fhir() -> Iterator[GatedFhir]:
    stand_in = GatedFhir()
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


def call(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_fallback_queries_are_all_in_flight_at_once(client: FlaskClient, fhir: GatedFhir) -> None:
    body = hook_call(fhir.base)
    call(client, body)  # warm: connection pool and worker threads
    fhir.reset(expected=QUERIES_PER_CALL)

    answer_json = call(client, body)

    assert len(fhir.paths) == QUERIES_PER_CALL, f"expected a query per prefetch key, saw {fhir.paths}"
    # Every query was held at the server at the same moment: they were sent together, not in turn.
    assert fhir.peak == QUERIES_PER_CALL
    # The fetched data reached the rules: the epilepsy Condition gives the seizure-history card.
    topics = [card["source"]["topic"]["code"] for card in answer_json["cards"]]
    assert "seizure-history" in topics


def test_concurrent_calls_do_not_queue_behind_each_other(client: FlaskClient, fhir: GatedFhir) -> None:
    body = hook_call(fhir.base)
    call(client, body)
    fhir.reset(expected=2 * QUERIES_PER_CALL)
    answers: list[dict[str, Any]] = []

    def one_call() -> None:
        answers.append(call(client.application.test_client(), body))

    callers = [threading.Thread(target=one_call) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=30)

    assert len(answers) == 2
    # Two calls' queries together outnumber the per-call thread count; the shared pool must still
    # hold them all at once (a pool of max_workers threads made the second half wait a full round).
    assert ClientSettings().max_workers < 2 * QUERIES_PER_CALL
    assert fhir.peak == 2 * QUERIES_PER_CALL, f"at most {fhir.peak} queries in flight at once"
    for answer_json in answers:
        assert "seizure-history" in [card["source"]["topic"]["code"] for card in answer_json["cards"]]
