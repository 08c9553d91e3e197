"""Structured JSON logs, request metrics and the Prometheus ``/metrics`` endpoint.

``install_observability(app, settings)`` makes every request produce:

- one JSON access line (logger ``cds_service.access``): method, route template, status, latency, and for
  service calls the service id, hook, ``hookInstance`` and card counts by indicator, which the protocol
  layer puts on ``flask.g.cds_log``. Never the query string, a header value, a token or patient data;
  unmatched paths are logged as ``<unmatched>`` rather than echoed.
- ``cds_requests_total`` / ``cds_request_duration_seconds`` by service and status.

Under gunicorn the access line is written by ``cds_service.gunicorn_conf.ServiceLogger`` after the response
has been sent (the app leaves its fields in the WSGI environ), so each request still logs exactly once.

``cds_service.metrics`` is imported lazily: under gunicorn the master loads this module through the config
file, and metrics must be created in the workers, after ``PROMETHEUS_MULTIPROC_DIR`` is in place.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from cds_service.config import ConfigError, Settings

ACCESS_LOGGER = "cds_service.access"
ENVIRON_KEY = "cds.access"
_PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_LABEL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Set in each gunicorn worker by gunicorn_conf.post_worker_init: the server writes the access line.
_access_log_by_server = False


def delegate_access_log() -> None:
    """Leave the per-request line to the server's access logger (gunicorn with our config)."""
    global _access_log_by_server
    _access_log_by_server = True


# --- formatting ------------------------------------------------------------------------------------
def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Exceptions are logged as type and stack frames, without the message,
    because exception messages can quote request data."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            entry["error"] = exc_type.__name__
            entry["stack"] = [
                f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(tb)
            ]
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def log_formatter(fmt: str) -> logging.Formatter:
    """The formatter of the error log for ``CDS_LOG_FORMAT``: JSON lines, or plain text for a terminal."""
    return (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )


def access_line(environ: Mapping[str, Any], status: int, seconds: float, fmt: str = "json") -> str | None:
    """The access line for one request (JSON, or ``key=value`` text with ``fmt="text"``), or None for a
    successful probe when probes are quiet."""
    fields: Mapping[str, Any] = environ.get(ENVIRON_KEY) or {}
    route = fields.get("route") or "<unmatched>"
    if route in _PROBE_ROUTES and status < 400 and not fields.get("log_probes", False):
        return None
    entry: dict[str, Any] = {
        "ts": _iso(datetime.now(UTC)),
        "level": "info",
        "logger": "access",
        "method": str(environ.get("REQUEST_METHOD", "-"))[:16],
        "route": route,
        "status": status,
        "latency_ms": round(seconds * 1000.0, 2),
    }
    for key in ("service", "hook", "hookInstance", "cards", "feedback", "client", "request_id"):
        if fields.get(key) is not None:
            entry[key] = fields[key]
    if fmt == "text":
        head = f"{entry.pop('ts')} {entry.pop('method')} {entry.pop('route')} {entry.pop('status')}"
        latency = entry.pop("latency_ms")
        del entry["level"], entry["logger"]
        rest = " ".join(
            f"{key}={json.dumps(value, ensure_ascii=False, separators=(',', ':'))}"
            for key, value in entry.items()
        )
        return f"{head} {latency} ms {rest}".rstrip()
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


# --- logging setup ---------------------------------------------------------------------------------
def logging_settings(env: Mapping[str, str]) -> tuple[str, int]:
    """``CDS_LOG_FORMAT`` (json|text, default json) and ``CDS_LOG_LEVEL`` (default info), checked."""
    fmt = (env.get("CDS_LOG_FORMAT") or "json").strip().lower()
    if fmt not in {"json", "text"}:
        raise ConfigError(f"CDS_LOG_FORMAT must be json or text, got {fmt!r}")
    level_name = (env.get("CDS_LOG_LEVEL") or "info").strip().upper()
    level = logging.getLevelName(level_name)
    if level_name not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} or not isinstance(level, int):
        raise ConfigError(f"CDS_LOG_LEVEL must be debug, info, warning or error, got {level_name.lower()!r}")
    return fmt, level


def configure_logging(env: Mapping[str, str] | None = None) -> None:
    """JSON (or plain text with ``CDS_LOG_FORMAT=text``) on stderr, access lines on stdout.

    Only installs handlers when nobody configured logging yet (a root logger without handlers), so a
    host application's or pytest's logging setup stays in charge.
    """
    fmt, level = logging_settings(os.environ if env is None else env)
    logging.getLogger("cds_service").setLevel(level)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)

    root = logging.getLogger()
    if root.handlers:
        return
    errors = logging.StreamHandler(sys.stderr)
    errors.setFormatter(log_formatter(fmt))
    errors.addFilter(lambda record: record.name != ACCESS_LOGGER)
    access = logging.StreamHandler(sys.stdout)
    access.setFormatter(logging.Formatter("%(message)s"))
    access.addFilter(lambda record: record.name == ACCESS_LOGGER)
    root.addHandler(errors)
    root.addHandler(access)
    if root.level > level:
        root.setLevel(level)


# --- request hooks ---------------------------------------------------------------------------------
def _label(value: Any, fallback: str) -> str:
    text = str(value) if value is not None else ""
    return text if _LABEL.match(text) else fallback


def _cards_by_indicator(raw: Any) -> dict[str, int] | None:
    if not isinstance(raw, Mapping):
        return None
    return {_label(key, "other"): int(count) for key, count in raw.items() if isinstance(count, int)}


def _request_fields(log_probes: bool) -> dict[str, Any]:
    """What the access line may show about the current request: no PHI, no tokens, no query string."""
    rule = request.url_rule.rule if request.url_rule is not None else None
    fields: dict[str, Any] = {"route": rule, "log_probes": log_probes}
    cds_log = g.get("cds_log")
    if isinstance(cds_log, Mapping):
        # The protocol layer names a service only once it has matched a declared one: bounded labels.
        if cds_log.get("service") is not None:
            fields["service"] = _label(cds_log.get("service"), "other")
        if cds_log.get("hook") is not None:
            fields["hook"] = _label(cds_log.get("hook"), "other")
        instance = cds_log.get("hookInstance")
        if isinstance(instance, str) and _REQUEST_ID.match(instance):
            fields["hookInstance"] = instance
        cards = _cards_by_indicator(cds_log.get("cards"))
        if cards is not None:
            fields["cards"] = cards
        if isinstance(cds_log.get("feedback"), int):
            fields["feedback"] = cds_log["feedback"]
    client = g.get("cds_client")
    if client is not None and isinstance(getattr(client, "iss", None), str):
        fields["client"] = client.iss[:256]
    request_id = request.headers.get("X-Request-ID", "")
    if _REQUEST_ID.match(request_id):
        fields["request_id"] = request_id
    return fields


def _service_label(fields: Mapping[str, Any]) -> str:
    """The service id of a hook call (also when it was rejected before the protocol layer ran, e.g. a 401),
    else the view's name without its blueprint prefix: a fixed, small set of labels either way."""
    if fields.get("service"):
        return str(fields["service"])
    from cds_service.protocol.services import SERVICES

    service_id = (request.view_args or {}).get("service_id")
    if service_id in SERVICES:
        return str(service_id)
    endpoint = request.endpoint.rsplit(".", 1)[-1] if request.endpoint else None
    return _label(endpoint, "unmatched")


def _record_metrics(fields: Mapping[str, Any], status: int, seconds: float) -> None:
    from cds_service import metrics

    service = _service_label(fields)
    metrics.REQUESTS.labels(service_id=service, status=str(status)).inc()
    metrics.REQUEST_LATENCY.labels(service_id=service, status=str(status)).observe(seconds)


def _metrics_view() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)


def install_observability(app: Flask, settings: Settings) -> None:
    """Configure logging, time and count every request, log one line per request, serve ``/metrics``."""
    configure_logging(settings.env)
    log_format = logging_settings(settings.env)[0]
    log_probes = settings.flag("CDS_LOG_PROBES", False)
    access_log = logging.getLogger(ACCESS_LOGGER)
    # Import now so that a broken metrics module fails at start-up, not on the first request.
    from cds_service import metrics  # noqa: F401

    def _start_timer() -> None:
        g.cds_started = time.perf_counter()

    # First in line: a hook that answers early (a 401 from security) must still be timed.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("cds_started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        try:
            fields = _request_fields(log_probes)
            request.environ[ENVIRON_KEY] = fields
            _record_metrics(fields, response.status_code, seconds)
            if not _access_log_by_server:
                line = access_line(request.environ, response.status_code, seconds, log_format)
                if line is not None:
                    access_log.info(line)
        except Exception:  # observability must never turn a good answer into a 500
            logging.getLogger(__name__).exception("recording the request failed")
        return response

    if settings.flag("CDS_METRICS_ENABLED", True):
        app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])
