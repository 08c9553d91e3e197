"""The service as a real process (``cds-service serve``: gunicorn) called by the simulator as a process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
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


def test_served_process_answers_the_simulator(
    seizure_case: Case, fhir_server: FhirServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CDS_AUTH": "off",
        "CDS_ALLOW_HTTP_FHIR": "true",
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_WORKERS": "1",
        "NO_COLOR": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "cds-service"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
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
    finally:
        stop_process(server, timeout=20)
        log.close()
    assert server.returncode is not None
