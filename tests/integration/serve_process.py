"""``cds-service serve`` (gunicorn) on a free loopback port, for the integration tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from sekmet_server import free_port, stop_process

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
