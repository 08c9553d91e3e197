"""A real FHIR R4 server (sekmet-fhir) on loopback for the integration tests, and helpers to fill it.

Started once per test session in a temporary directory, on a free 127.0.0.1 port, and stopped by its
process id. See ../shared/test-data/README.md for the configuration.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

FHIR_JSON = "application/fhir+json"
# The team's shared reference folder sits beside the repository (../shared).
SYNTHEA_DIR = Path(__file__).resolve().parents[3] / "shared" / "test-data" / "synthea"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sekmet_executable() -> str | None:
    beside = Path(sys.executable).parent / "sekmet"
    return str(beside) if beside.exists() else shutil.which("sekmet")


@dataclass
class FhirServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        response = requests.post(
            self.base_url,
            data=json.dumps(bundle),
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
            timeout=60,
        )
        assert response.status_code == 200, response.text[:500]
        result = response.json()
        statuses = [entry["response"]["status"] for entry in result.get("entry", [])]
        assert all(s.split()[0] in {"200", "201"} for s in statuses), statuses
        return result

    def get(self, query: str) -> dict[str, Any]:
        response = requests.get(f"{self.base_url}/{query}", headers={"Accept": FHIR_JSON}, timeout=30)
        assert response.status_code == 200, response.text[:500]
        return response.json()

    @contextlib.contextmanager
    def loaded(self, bundle: Mapping[str, Any]) -> Iterator[None]:
        """Load a PUT transaction for the duration of a test, then delete what it created.

        Fixture cases may reuse patient ids, so each case has the server to itself while it runs.
        """
        self.transaction(bundle)
        try:
            yield
        finally:
            urls = [entry["request"]["url"] for entry in bundle["entry"]]
            deletes = [{"request": {"method": "DELETE", "url": url}} for url in reversed(urls)]
            self.transaction({"resourceType": "Bundle", "type": "transaction", "entry": deletes})


def start_sekmet(workdir: Path, timeout: float = 60.0) -> FhirServer:
    executable = sekmet_executable()
    if executable is None:
        raise RuntimeError("sekmet-fhir is not installed (pip install sekmet-fhir==0.1.1)")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/fhir"
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = workdir / "settings.yaml"
    config.write_text(
        "\n".join(
            [
                f"base_url: {base_url}",
                "host: 127.0.0.1",
                f"port: {port}",
                f"data_dir: {data_dir}",
                "simulator:",
                "  enabled: false",
                "validation:",
                "  inbound: warn",
                "log_inbound: false",
                "",
            ]
        )
    )
    log_path = workdir / "sekmet.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, "serve", "-c", str(config)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        )
    server = FhirServer(base_url=base_url, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sekmet exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base_url}/metadata", timeout=2).status_code == 200:
                return server
        time.sleep(0.2)
    stop_process(process)
    raise RuntimeError(f"sekmet did not answer /metadata within {timeout:g} s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop one process we started, by its id: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def load_synthea(server: FhirServer, path: Path) -> str:
    """POST a Synthea transaction Bundle (urn:uuid refs, POST entries); return the new Patient's id."""
    with gzip.open(path, "rb") as handle:
        bundle = json.load(handle)
    result = server.transaction(bundle)
    for entry in result["entry"]:
        location = entry["response"].get("location", "")
        if location.startswith(f"{server.base_url}/Patient/") or location.startswith("Patient/"):
            return location.split("Patient/", 1)[1].split("/", 1)[0]
    raise AssertionError(f"{path.name}: no Patient created")
