"""Security headers on every response.

The API answers JSON only, so the default Content-Security-Policy forbids everything. A view that serves
HTML (the preview page) sets its own CSP, which is kept. Nothing is cached: responses hold PHI-derived
advice for one patient at one moment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the gunicorn worker builds its own error responses from these, without Flask
    from flask import Response

JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=31536000"

_ALWAYS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_DEFAULTS = {
    "Content-Security-Policy": JSON_CSP,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def security_headers(*, hsts: bool = True) -> dict[str, str]:
    """Every security header of a response that sets none itself (gunicorn's own error responses)."""
    return {**_ALWAYS, **_DEFAULTS, **({"Strict-Transport-Security": HSTS} if hsts else {})}


def add_security_headers(response: Response, *, hsts: bool = True) -> Response:
    for name, value in _ALWAYS.items():
        response.headers[name] = value
    for name, value in _DEFAULTS.items():
        response.headers.setdefault(name, value)
    if hsts:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response
