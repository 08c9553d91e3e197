"""The service as a real process (``cds-service serve``: gunicorn) called by the simulator as a process."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path

import pytest
from fixture_cases import bundle_of, request_of
from helpers.builders import topics
from sekmet_server import FhirServer
from serve_process import BIN, served

from cds_service.integration.fixtures import Case

pytestmark = pytest.mark.integration


def test_served_process_answers_the_simulator(
    seizure_case: Case, fhir_server: FhirServer, tmp_path: Path
) -> None:
    with served(tmp_path) as (url, env):
        body = request_of(seizure_case)
        order = tmp_path / "order.json"
        order.write_text(json.dumps(body["context"]["draftOrders"]))
        with fhir_server.loaded(bundle_of(seizure_case)):
            result = subprocess.run(
                [
                    str(BIN / "cds-service"),
                    "simulate",
                    "--fhir-server",
                    fhir_server.base_url,
                    "--patient",
                    body["context"]["patientId"],
                    "--order",
                    str(order),
                    "--service-url",
                    url,
                    "--no-prefetch",
                    "--json",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        assert result.returncode == 0, result.stderr
        assert topics(json.loads(result.stdout)["cards"]) == sorted(seizure_case.expected)


def test_a_connection_is_closed_after_its_request_allowance(tmp_path: Path) -> None:
    # So that a few kept-alive client connections cannot pin all the load on one worker.
    with served(tmp_path, CDS_KEEPALIVE_REQUESTS="3") as (url, _):
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        try:
            answers = []
            for _ in range(3):
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                answers.append((response.status, response.getheader("Connection")))
        finally:
            connection.close()
    assert answers == [(200, "keep-alive"), (200, "keep-alive"), (200, "close")]
