"""Gunicorn configuration for ``cds-service serve`` and the container image.

Loaded by gunicorn as ``python:cds_service.gunicorn_conf``. Every setting comes from the environment so
that the same image runs on a laptop and in Kubernetes:

- ``CDS_BIND`` (else ``HOST``:``PORT``, default ``127.0.0.1:8080``; the image sets ``HOST=0.0.0.0``)
- ``CDS_WORKERS`` (2) processes, each with ``CDS_THREADS`` (4) threads
- ``CDS_GRACEFUL_TIMEOUT`` (20 s) to finish in-flight requests after SIGTERM, ``CDS_WORKER_TIMEOUT`` (30 s)
- ``CDS_AUDIT_DRAIN_TIMEOUT`` (5 s) to flush queued audit writes when a worker exits
- ``CDS_KEEPALIVE`` (5 s) idle keep-alive, ``CDS_KEEPALIVE_REQUESTS`` (50) requests per connection
- ``CDS_ACCESS_LOG`` (on): one JSON line per request on stdout, without query strings

Prometheus metrics are aggregated across worker processes through ``PROMETHEUS_MULTIPROC_DIR``. The
variable has to be set before any worker imports ``prometheus_client``, so this module sets it up when
gunicorn loads it (in the master, before workers fork) and wipes stale files from an earlier run.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from gunicorn.glogging import Logger
from gunicorn.http.message import Request as Http1Request

from cds_service.config import ConfigError, env_flag, env_int
from cds_service.observability import access_line, log_formatter, logging_settings

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWNED_MARKER = ".created-by-cds-service"


def _config_error(message: str) -> NoReturn:
    # Same one-line shape and exit status as the CLI's configuration errors.
    print(f"cds-service: configuration error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _int_env(name: str, default: int, minimum: int = 1) -> int:
    try:
        return env_int(os.environ, name, default, minimum=minimum)
    except ConfigError as exc:
        _config_error(str(exc))


def _on(name: str, default: bool) -> bool:
    try:
        return env_flag(os.environ, name, default)
    except ConfigError as exc:
        _config_error(str(exc))


def _bind_address() -> str:
    explicit = os.environ.get("CDS_BIND", "").strip()
    if explicit:
        return explicit
    host = os.environ.get("HOST", "").strip() or "127.0.0.1"
    port = _int_env("PORT", 8080)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def prepare_metrics_dir() -> Path:
    """Make sure ``PROMETHEUS_MULTIPROC_DIR`` names an existing directory; create a private one if unset.

    Idempotent. Call it before anything imports ``cds_service.metrics`` in a process that will fork
    gunicorn workers (the CLI may call it before validating the configuration).
    """
    current = os.environ.get(_MULTIPROC_ENV, "").strip()
    if current:
        path = Path(current)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="cds-metrics-"))
        (path / _OWNED_MARKER).touch()  # ours to remove at exit (survives a config reload on SIGHUP)
        os.environ[_MULTIPROC_ENV] = str(path)
    return path


def _wipe_metrics_dir(path: Path) -> None:
    # Files left by a previous run would be summed into this run's counters.
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


_INVALID_REQUEST = "Invalid request from ip="


def redact_invalid_request(message: str) -> str:
    """gunicorn's line for a request it refused, without the request text it quotes.

    ``Invalid request from ip=1.2.3.4: Invalid HTTP request line: 'GET /x?patient=123 …'``: the quoted
    request line or header may hold a token or a patient id; the kind of problem is enough.
    """
    prefix, separator, error = message.partition(": ")
    if not message.startswith(_INVALID_REQUEST) or not separator:
        return message
    kind = re.split(r"""['"]""", error, maxsplit=1)[0].rstrip(" :")
    return f"{prefix}: {kind}" + (" (request text not logged)" if kind != error else "")


class ServiceLogger(Logger):
    """Gunicorn's logger in the service's format (``CDS_LOG_FORMAT``): JSON lines in production, plain
    text at a developer's terminal (``make run``); the access log via access_line, redacted."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.log_format = logging_settings(os.environ)[0]
        for handler in self.error_log.handlers:
            handler.setFormatter(log_formatter(self.log_format))

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().warning(redact_invalid_request(msg) if isinstance(msg, str) else msg, *args, **kwargs)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        # gunicorn >= 24 exposes access_log_enabled; older versions only have cfg.accesslog.
        if not getattr(self, "access_log_enabled", bool(self.cfg.accesslog)):
            return
        try:
            status = int(str(resp.status).split(None, 1)[0])
            line = access_line(environ, status, request_time.total_seconds(), self.log_format)
            if line is not None:
                self.access_log.info(line)
        except Exception:  # a broken log line must never break a response
            self.error_log.exception("access log line failed")


# --- server settings -------------------------------------------------------------------------------
bind = [_bind_address()]
workers = _int_env("CDS_WORKERS", 2)
threads = _int_env("CDS_THREADS", 4)
# gunicorn's threaded worker ("gthread"), whose own error responses (a request it cannot parse, header
# fields too large) are JSON OperationOutcomes with the security headers instead of HTML pages.
worker_class = "cds_service.gunicorn_worker.JsonErrorWorker"
timeout = _int_env("CDS_WORKER_TIMEOUT", 30)
graceful_timeout = _int_env("CDS_GRACEFUL_TIMEOUT", 20)
keepalive = _int_env("CDS_KEEPALIVE", 5)
# A kept-alive connection stays with the worker that accepted it, so a few long-lived connections (an
# EHR's pool, a proxy's upstream keep-alive) can all land on one worker while the other idles: measured
# with 4 clients, a third of the runs served at half speed. Closing each connection after this many
# requests makes the client reconnect, and the idle worker, not waiting for the GIL, accepts first.
keepalive_requests = _int_env("CDS_KEEPALIVE_REQUESTS", 50)
# gunicorn 27 opens a control socket at a fixed path under $HOME: two servers on one host (the
# benchmark, parallel tests) would fight over it, and a read-only root has no place for it. Unused here.
control_socket_disable = True
# Bound what a client can make us buffer before the app sees the request.
limit_request_line = 8190
limit_request_fields = 100
# The reverse proxy in front terminates TLS; only trust X-Forwarded-* from addresses the operator names.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Read-only root filesystem: worker heartbeat files go to a tmpfs.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
proc_name = "cds-service"

logger_class = ServiceLogger
loglevel = os.environ.get("CDS_LOG_LEVEL", "info").lower()
errorlog = "-"
accesslog = "-" if _on("CDS_ACCESS_LOG", True) else None

_AUDIT_DRAIN_TIMEOUT = float(_int_env("CDS_AUDIT_DRAIN_TIMEOUT", 5, minimum=0))
_METRICS_DIR = prepare_metrics_dir()


def preflight() -> str | None:
    """Check the configuration the app factory will read, without starting anything.

    Runs in the master before workers fork, so that a container without configuration stops at once
    with one line (exit 2) instead of every worker failing to boot with a traceback. Returns the
    problem, or None. Nothing here opens a connection or starts a thread.
    """
    from flask import Flask

    from cds_service.config import ConfigError, Settings
    from cds_service.knowledge.loader import KnowledgeError, load_knowledge
    from cds_service.observability import logging_settings
    from cds_service.security import install_security
    from cds_service.storage.config import StorageConfig

    cards_dir = None
    # The workers log the same start-up warnings moments later, in JSON; say nothing twice.
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        settings = Settings.from_env()
        cards_dir = settings.cards_dir
        logging_settings(settings.env)
        load_knowledge(settings.cards_dir, settings.site_knowledge_dir)
        StorageConfig.from_settings(settings)
        install_security(Flask("cds-service-preflight"), settings)
    except KnowledgeError as exc:
        return f"knowledge base in {cards_dir} is broken: {exc}"
    except ConfigError as exc:
        return str(exc)
    finally:
        logging.disable(previous)
    return None


# --- server hooks ----------------------------------------------------------------------------------
def on_starting(server: Any) -> None:
    problem = preflight()
    if problem is not None:
        _config_error(problem)
    _wipe_metrics_dir(_METRICS_DIR)
    from prometheus_client import values

    if values.ValueClass.__name__ == "MutexValue":
        # prometheus_client was imported before this module set PROMETHEUS_MULTIPROC_DIR (by whatever
        # started gunicorn): each worker would then only report its own counts.
        server.log.warning("metrics are per worker: prometheus_client was imported before gunicorn started")


def post_worker_init(worker: Any) -> None:
    logging.captureWarnings(True)  # Python warnings become JSON log lines too
    # The app is loaded: its ~130,000 start-up objects (libraries, FHIR models, the knowledge base) live
    # as long as the worker. Frozen, the cyclic GC stops walking them on every full collection, which a
    # 260 KB request body triggers every few calls (measured: ~2 ms per heavy call, docs/performance.md).
    gc.freeze()
    # The worker's access line is written by ServiceLogger.access; the app must not write a second one.
    if accesslog is not None:
        from cds_service import observability

        observability.delegate_access_log()


def pre_request(worker: Any, req: Any) -> None:
    # req_number counts the requests on an HTTP/1.x connection (1 for the first); gunicorn then answers
    # with "Connection: close" and closes the socket after the response. (HTTP/2, not enabled here,
    # numbers streams instead.)
    if isinstance(req, Http1Request) and req.req_number >= keepalive_requests:
        req.must_close = True


def worker_exit(server: Any, worker: Any) -> None:
    """Drain queued audit writes after the worker has stopped serving (runs in the worker process)."""
    if getattr(worker, "pid", None) != os.getpid():
        return  # called in the master for a worker that was already gone
    app = getattr(worker, "wsgi", None)
    audit = getattr(app, "extensions", {}).get("cds.audit")
    if audit is None:
        return
    try:
        audit.close(timeout=_AUDIT_DRAIN_TIMEOUT)
    except Exception:
        server.log.exception("draining the audit queue failed")


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if (_METRICS_DIR / _OWNED_MARKER).exists():
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
