"""gunicorn's own error responses as JSON OperationOutcomes with the security headers.

gunicorn answers a request it cannot parse (bad request line: 400, request line too long: 414, header
fields too large: 431, ...) itself, before the app sees it, with an HTML page and none of the security
headers. ``JsonErrorWorker`` keeps gunicorn's decisions (the status, its warning and access log lines)
and replaces only the page: ``handle_error`` writes to a stand-in socket, and the status line it wrote is
answered on the real socket with an OperationOutcome and the same headers as every other response.

Loaded by the gunicorn master (``worker_class`` in ``gunicorn_conf``): nothing here imports Flask or the
metrics module. gunicorn is pinned to the major version whose ``handle_error`` this relies on
(pyproject.toml); if a later one wrote its page differently, its own page is sent unchanged.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson
from gunicorn.workers.gthread import ThreadWorker

from cds_service.config import ConfigError, env_flag
from cds_service.hooks.errors import operation_outcome
from cds_service.security.headers import security_headers

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9]{2}) ([^\r\n]*)\r\n")


class _CapturedPage:
    """Stands in for the client socket while gunicorn writes its error page, and keeps the bytes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status(self) -> tuple[int, str] | None:
        match = _STATUS_LINE.match(bytes(self.data))
        return (int(match[1]), match[2].decode("latin-1")) if match else None


def _hsts() -> bool:
    try:
        return env_flag(os.environ, "CDS_HSTS", True)
    except ConfigError:  # the master's preflight has refused to start with a malformed value
        return True


def error_response(status: int, reason: str, diagnostics: str, *, hsts: bool) -> bytes:
    """A complete HTTP/1.1 response: an OperationOutcome, the security headers, and Connection: close."""
    body = orjson.dumps(operation_outcome(diagnostics, status=status))
    headers = {
        "Connection": "close",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **security_headers(hsts=hsts),
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


class JsonErrorWorker(ThreadWorker):
    """gunicorn's threaded worker, answering the requests gunicorn itself refuses in JSON."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        page = _CapturedPage()
        super().handle_error(req, page, addr, exc)
        status = page.status()
        if status is None:
            response = bytes(page.data)
        else:
            code, reason = status
            response = error_response(code, reason, self._diagnostics(code, reason), hsts=_hsts())
        try:
            client.sendall(response)
        except OSError:
            self.log.debug("Failed to send error message.")

    def _diagnostics(self, status: int, reason: str) -> str:
        # Never the request's own text (gunicorn's page quotes it): it may hold a token or patient data.
        cfg = self.cfg
        if status == 431:
            return (
                f"request header fields too large: at most {cfg.limit_request_fields} fields of at most "
                f"{cfg.limit_request_field_size} bytes each"
            )
        if status == 414:
            return f"request line longer than {cfg.limit_request_line} bytes"
        if status == 400:
            return "the request is not valid HTTP/1.1 (request line, header or chunked framing)"
        if status >= 500:
            return f"{reason.lower()}; the request was not evaluated"
        return reason
