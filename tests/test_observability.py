"""Request logs, /metrics, and the gunicorn configuration (one JSON line per request, no PHI or tokens)."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from helpers.builders import (
    ORDER_SIGN,
    PATIENT_ID,
    amifampridine_order,
    empty_prefetch,
    epilepsy,
    order_sign,
    searchset,
)
from helpers.security import bearer, client_entry, jwks_of, make_keypair, mint_token, write_trusted_clients
from prometheus_client import REGISTRY

from cds_service.observability import ACCESS_LOGGER, ENVIRON_KEY, JsonFormatter, access_line

ROOT = Path(__file__).resolve().parents[1]
CDS_SERVICE = Path(sys.executable).with_name("cds-service")
BIRTH_DATE = "1970-04-12"  # builders.patient()


def seizure_request() -> dict[str, Any]:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy())
    return order_sign(amifampridine_order(), prefetch=prefetch)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


def test_service_call_logs_one_line_with_hook_fields_and_no_patient_data(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = seizure_request()
    response = app.test_client().post(f"{ORDER_SIGN}?patient={PATIENT_ID}", json=body)
    assert response.status_code == 200

    [line] = access_lines(caplog)
    assert line["service"] == "amifampridine-order-sign"
    assert line["hook"] == "order-sign"
    assert line["hookInstance"] == body["hookInstance"]
    assert line["status"] == 200
    assert line["method"] == "POST"
    assert line["route"] == "/cds-services/<service_id>"
    assert line["cards"].get("critical", 0) >= 1
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] > 0
    text = all_log_text(caplog)
    for secret in (PATIENT_ID, BIRTH_DATE, "Epilepsy", "84757009", "amifampridine 10 MG"):
        assert secret not in text


def test_unmatched_paths_are_not_echoed_in_the_log(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = app.test_client().get(f"/Patient/{PATIENT_ID}?birthdate={BIRTH_DATE}")
    assert response.status_code == 404
    [line] = access_lines(caplog)
    assert line["route"] == "<unmatched>"
    assert line["status"] == 404
    assert PATIENT_ID not in all_log_text(caplog) and BIRTH_DATE not in all_log_text(caplog)


def test_rejected_token_is_timed_counted_and_never_logged(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trusted, stranger = make_keypair("ES384"), make_keypair("ES384", kid="stranger")
    clients = write_trusted_clients(tmp_path, [client_entry(jwks=jwks_of(trusted))])
    app = make_app(
        CDS_AUTH="on", CDS_TRUSTED_CLIENTS=str(clients), CDS_PUBLIC_BASE_URL="https://cds.example.org"
    )
    token = mint_token(stranger, aud=f"https://cds.example.org{ORDER_SIGN}")
    caplog.set_level(logging.INFO)
    labels = {"service_id": "amifampridine-order-sign", "status": "401"}
    before = REGISTRY.get_sample_value("cds_requests_total", labels) or 0.0

    response = app.test_client().post(ORDER_SIGN, json=seizure_request(), headers=bearer(token))

    assert response.status_code == 401
    assert REGISTRY.get_sample_value("cds_requests_total", labels) == before + 1
    [line] = access_lines(caplog)
    assert line["status"] == 401 and line["latency_ms"] > 0
    assert "hookInstance" not in line  # the body was never read
    text = all_log_text(caplog)
    assert token not in text and token.split(".")[2] not in text


def test_metrics_count_requests_by_service_and_status(app: Flask) -> None:
    labels = {"service_id": "amifampridine-order-sign", "status": "200"}
    before = REGISTRY.get_sample_value("cds_requests_total", labels) or 0.0
    before_hist = REGISTRY.get_sample_value("cds_request_duration_seconds_count", labels) or 0.0
    client = app.test_client()
    for _ in range(3):
        assert client.post(ORDER_SIGN, json=seizure_request()).status_code == 200

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert REGISTRY.get_sample_value("cds_requests_total", labels) == before + 3
    assert REGISTRY.get_sample_value("cds_request_duration_seconds_count", labels) == before_hist + 3
    assert 'cds_cards_total{indicator="critical",topic="seizure-history"}' in text
    for family in ("cds_requests_total", "cds_request_duration_seconds_bucket", "cds_jwt_failures_total"):
        assert f"# TYPE {family.removesuffix('_bucket').removesuffix('_total')}" in text


def test_unknown_service_ids_do_not_create_metric_labels(app: Flask) -> None:
    app.test_client().post("/cds-services/made-up-service-id", json=seizure_request())
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "made-up-service-id" not in text


def test_probes_are_quiet_unless_asked(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    make_app().test_client().get("/healthz")
    assert access_lines(caplog) == []
    make_app(CDS_LOG_PROBES="on").test_client().get("/healthz")
    [line] = access_lines(caplog)
    assert line["route"] == "/healthz" and line["status"] == 200


def test_metrics_endpoint_can_be_turned_off(make_app: Callable[..., Flask]) -> None:
    assert make_app(CDS_METRICS_ENABLED="off").test_client().get("/metrics").status_code == 404


def test_json_formatter_logs_exception_type_and_frames_but_not_its_message() -> None:
    try:
        raise KeyError(f"Patient/{PATIENT_ID}")
    except KeyError:
        record = logging.LogRecord(
            "cds_service.x", logging.ERROR, __file__, 1, "lookup failed", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error" and entry["message"] == "lookup failed"
    assert entry["error"] == "KeyError"
    assert any("test_observability.py" in frame for frame in entry["stack"])
    assert PATIENT_ID not in json.dumps(entry)


def test_access_line_without_app_fields_names_no_path() -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/Patient/{PATIENT_ID}", "QUERY_STRING": "a=b"}
    line = json.loads(access_line(environ, 404, 0.0123) or "{}")
    assert line == {**line, "route": "<unmatched>", "status": 404, "latency_ms": 12.3, "method": "GET"}
    quiet = {"REQUEST_METHOD": "GET", ENVIRON_KEY: {"route": "/readyz"}}
    assert access_line(quiet, 200, 0.001) is None
    assert access_line(quiet, 503, 0.001) is not None  # a failing probe is worth a line


# --- the real server: gunicorn with cds_service.gunicorn_conf ---------------------------------------
@pytest.fixture
def gunicorn_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    # Importing the config prepares PROMETHEUS_MULTIPROC_DIR; keep that out of this test process.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    return importlib.import_module("cds_service.gunicorn_conf")


class FakeAudit:
    def __init__(self) -> None:
        self.closed_with: list[float] = []

    def close(self, timeout: float = 10.0) -> None:
        self.closed_with.append(timeout)


def test_worker_exit_drains_the_audit_queue_in_the_worker_only(gunicorn_conf: Any) -> None:
    audit = FakeAudit()
    app = SimpleNamespace(extensions={"cds.audit": audit})
    server = SimpleNamespace(log=logging.getLogger("test"))
    gunicorn_conf.worker_exit(server, SimpleNamespace(pid=os.getpid() + 1, wsgi=app))  # called in the master
    assert audit.closed_with == []
    gunicorn_conf.worker_exit(server, SimpleNamespace(pid=os.getpid(), wsgi=app))
    assert audit.closed_with == [5.0]


def test_gunicorn_settings_come_from_the_environment(
    gunicorn_conf: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CDS_BIND", "CDS_WORKERS", "CDS_THREADS", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)
    conf = importlib.reload(gunicorn_conf)
    assert (conf.bind, conf.workers, conf.threads, conf.worker_class) == (
        ["127.0.0.1:8080"],
        2,
        4,
        "cds_service.gunicorn_worker.JsonErrorWorker",
    )
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("CDS_WORKERS", "3")
    assert importlib.reload(gunicorn_conf).bind == ["0.0.0.0:9000"] and gunicorn_conf.workers == 3
    monkeypatch.setenv("CDS_BIND", "unix:/run/cds.sock")
    assert importlib.reload(gunicorn_conf).bind == ["unix:/run/cds.sock"]
    monkeypatch.setenv("CDS_WORKERS", "many")
    with pytest.raises(SystemExit) as stopped:
        importlib.reload(gunicorn_conf)
    assert stopped.value.code == 2
    monkeypatch.setenv("CDS_WORKERS", "2")
    importlib.reload(gunicorn_conf)  # leave a usable module behind for other tests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(extra)
    return env


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.fixture
def gunicorn_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path, Path]]:
    port = _free_port()
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    env = _clean_env(
        CDS_AUTH="off",
        CDS_DATA_DIR=str(tmp_path / "data"),
        CDS_WORKERS="2",
        CDS_THREADS="2",
        PYTHONPATH=str(ROOT),
    )
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the server creates its metrics directory
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(CDS_SERVICE), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=err,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _http(f"{base}/readyz")[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not become ready: {stderr.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base, process, stdout, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.integration
@pytest.mark.skipif(not CDS_SERVICE.exists(), reason="cds-service is not installed in this environment")
def test_gunicorn_aggregates_metrics_logs_json_and_drains_on_sigterm(
    gunicorn_server: tuple[str, subprocess.Popen[bytes], Path, Path],
) -> None:
    base, process, stdout, stderr = gunicorn_server
    database = stdout.parent / "data" / "cds.sqlite3"
    instances = []
    for _ in range(12):
        body = seizure_request()
        instances.append(body["hookInstance"])
        status, _ = _http(f"{base}{ORDER_SIGN}?patient={PATIENT_ID}", body)
        assert status == 200

    status, metrics = _http(f"{base}/metrics")
    assert status == 200
    text = metrics.decode()
    # Multiprocess collector: every worker's counts, and none of the per-process default collectors.
    assert 'cds_requests_total{service_id="amifampridine-order-sign",status="200"} 12.0' in text
    assert "python_gc_objects_collected_total" not in text

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert list((stdout.parent / "tmp").glob("cds-metrics-*")) == []  # its metrics directory is gone
    # Workers flushed their queued audit writes before exiting: every call's cards are stored.
    with sqlite3.connect(database) as db:
        stored = {row[0] for row in db.execute("SELECT DISTINCT hook_instance FROM issued_card")}
    assert stored == set(instances)

    lines = [json.loads(line) for line in stdout.read_text().splitlines() if line.strip()]
    hook_lines = [line for line in lines if line.get("hookInstance")]
    assert sorted(line["hookInstance"] for line in hook_lines) == sorted(instances)  # exactly one each
    assert all(line["status"] == 200 and line["service"] == "amifampridine-order-sign" for line in hook_lines)
    everything = stdout.read_text() + stderr.read_text()
    assert PATIENT_ID not in everything and BIRTH_DATE not in everything
    for raw in stderr.read_text().splitlines():
        assert json.loads(raw)["level"]  # gunicorn's own log is JSON too


@pytest.mark.integration
@pytest.mark.skipif(not CDS_SERVICE.exists(), reason="cds-service is not installed in this environment")
def test_serve_without_trusted_clients_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CDS_SERVICE), "serve", "--host", "127.0.0.1", "--port", str(_free_port())],
        env=_clean_env(CDS_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(problems) == 1 and "CDS_TRUSTED_CLIENTS" in problems[0]
    assert "Traceback" not in result.stderr


def test_no_metric_has_a_label_the_prometheus_operator_overwrites() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from cds_service import metrics

    declared = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    assert len(declared) >= 5
    for metric in declared:
        # The operator sets these as target labels: ours would be overwritten or renamed exported_*.
        assert not {"service", "job", "instance", "namespace", "pod"} & set(metric._labelnames), metric


def test_text_access_line_for_a_terminal_carries_the_same_fields_without_json() -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        ENVIRON_KEY: {
            "route": "/cds-services/<service_id>",
            "service": "amifampridine-order-sign",
            "cards": {"critical": 1},
        },
    }
    line = access_line(environ, 200, 0.0078, "text") or ""
    assert not line.startswith("{")
    assert " POST /cds-services/<service_id> 200 7.8 ms " in line
    assert 'service="amifampridine-order-sign"' in line and 'cards={"critical":1}' in line


def test_gunicorn_logs_as_text_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn.config import Config

    from cds_service.gunicorn_conf import ServiceLogger

    monkeypatch.setenv("CDS_LOG_FORMAT", "text")
    logger = ServiceLogger(Config())
    assert logger.log_format == "text"
    assert all(not isinstance(h.formatter, JsonFormatter) for h in logger.error_log.handlers)
    monkeypatch.setenv("CDS_LOG_FORMAT", "json")
    assert all(isinstance(h.formatter, JsonFormatter) for h in ServiceLogger(Config()).error_log.handlers)
