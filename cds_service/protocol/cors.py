"""CORS for browser-based CDS clients (the CDS Hooks sandbox among them), including preflights.

Origins come from ``CDS_CORS_ORIGINS`` (comma-separated; ``*`` for local use). The production default
is none: an EHR calls server to server and needs no CORS at all.
"""

from __future__ import annotations

from flask import Flask, Response, request

from cds_service.config import Settings

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
# Response headers a browser client may read beyond the CORS-safelisted ones.
EXPOSED_HEADERS = "X-Knowledge-Version"


def install_cors(app: Flask, settings: Settings) -> None:
    origins = set(settings.cors_origins)
    if not origins:
        return
    allow_any = "*" in origins

    def allowed(origin: str | None) -> str | None:
        if not origin:
            return None
        return "*" if allow_any else (origin if origin in origins else None)

    @app.before_request
    def preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = app.response_class(status=204)
        return response  # headers are added by add_headers below

    @app.after_request
    def add_headers(response: Response) -> Response:
        origin = allowed(request.headers.get("Origin"))
        if origin is None:
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        if origin != "*":
            response.headers.add("Vary", "Origin")
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response
