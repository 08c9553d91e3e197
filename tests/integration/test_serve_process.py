"""The service as a real process (``cds-service serve``: gunicorn) called by the simulator as a process."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fixture_cases import bundle_of, request_of, topics
from sekmet_server import FhirServer, free_port, stop_process

from cds_service.integration.fixtures import Case

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"cds-service serve exited with {process.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"cds-service serve did not become ready within {timeout:g} s")


@contextlib.contextmanager
def served(tmp_path: Path, **settings: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``cds-service serve`` on a free loopback port: (its URL, the environment it runs with)."""
    port = free_port()
    env = {
        **os.environ,
        "CDS_AUTH": "off",
        "CDS_ALLOW_HTTP_FHIR": "true",
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_WORKERS": "1",
        "NO_COLOR": "1",
        **settings,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [str(BIN / "cds-service"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, server)
            yield url, env
        finally:
            stop_process(server, timeout=20)
    assert server.returncode is not None


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
