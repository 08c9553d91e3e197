"""Client authentication (CDS Hooks JWT), FHIR server allow-list and response hygiene.

Interface used by the app factory and the protocol layer:
- ``install_security(app, settings)``: registers request hooks that authenticate every call to
  ``/cds-services*`` and ``/admin*`` (not OPTIONS preflights), put the caller on ``flask.g.cds_client``
  (a ``CdsClient`` with ``iss``, ``tenant`` and ``fhir_servers``, or None when auth is off), and add
  security headers to every response. Raises ``ConfigError`` when the configuration is unusable.
- ``authorize_fhir_server(fhir_server)``: called on every hook call that names a ``fhirServer`` (and again
  before any outbound FHIR request); raises ``CdsError(403)`` when the calling client may not send it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request

from cds_service.config import ConfigError, Settings
from cds_service.hooks.errors import CdsError, operation_outcome
from cds_service.security.config import SecuritySettings, TrustedClient, load_trusted_clients
from cds_service.security.fhir_allowlist import fhir_server_problem
from cds_service.security.headers import add_security_headers
from cds_service.security.jwks import JwksCache
from cds_service.security.jwt_verifier import AuthError, CdsClient, JwtVerifier, printable
from cds_service.security.replay import make_replay_cache
from cds_service.storage.config import StorageConfig

__all__ = [
    "AUTH_OFF_WARNING",
    "CdsClient",
    "SecurityState",
    "authorize_fhir_server",
    "install_security",
    "replay_cache_status",
]

log = logging.getLogger("cds_service.security")

PROTECTED_PREFIXES = ("/cds-services", "/admin")
AUTH_OFF_WARNING = (
    "CDS_AUTH=off: client authentication is DISABLED - any caller can invoke the services and name a "
    "loopback FHIR server (or one in CDS_FHIR_SERVER_ALLOWLIST). Use only on a developer machine, never "
    "with real patient data."
)


@dataclass
class SecurityState:
    """What the request hooks need, kept on ``app.extensions["cds.security"]``."""

    settings: SecuritySettings
    verifier: JwtVerifier | None  # None when CDS_AUTH=off
    clients: tuple[TrustedClient, ...] = ()


def install_security(app: Flask, settings: Settings) -> None:
    sec = SecuritySettings.from_settings(settings)
    verifier: JwtVerifier | None = None
    clients: tuple[TrustedClient, ...] = ()
    if sec.auth_enabled:
        if sec.trusted_clients_path is None:
            raise ConfigError(
                "CDS_AUTH is on but CDS_TRUSTED_CLIENTS is not set: point it at the trusted-clients file "
                "(or set CDS_AUTH=off on a developer machine)"
            )
        clients = load_trusted_clients(sec.trusted_clients_path)
        verifier = JwtVerifier(
            clients,
            jwks_cache=JwksCache(
                timeout=sec.jwks_timeout,
                cache_seconds=sec.jwks_cache_seconds,
                refresh_interval=sec.jwks_refresh_interval,
            ),
            # The database the audit store uses (its SQLite default included): shared by every worker.
            replay_cache=make_replay_cache(
                sec.replay_cache, StorageConfig.from_env(settings.env).database_url
            ),
            algorithms=sec.algorithms,
            leeway=sec.leeway,
            max_lifetime=sec.max_token_lifetime,
        )
        log.info("client authentication on: %d trusted client(s)", len(clients))
        if sec.public_base_url is None:
            log.warning(
                "CDS_PUBLIC_BASE_URL is not set: the JWT audience is derived from the request URL, "
                "which is wrong behind a proxy; set it to the URL the EHR calls"
            )
    else:
        log.warning("!!! %s !!!", AUTH_OFF_WARNING)
        app.extensions["cds.auth_warning"] = AUTH_OFF_WARNING
    app.extensions["cds.security"] = SecurityState(settings=sec, verifier=verifier, clients=clients)
    app.before_request(_authenticate)
    app.after_request(_add_headers)


def replay_cache_status() -> dict[str, Any] | None:
    """For ``/readyz``: where seen ``jti``s are kept and whether that store is degraded (None: auth off)."""
    state: SecurityState | None = current_app.extensions.get("cds.security")
    return state.verifier.replay.status() if state is not None and state.verifier is not None else None


def _authenticate() -> Response | None:
    g.cds_client = None
    state: SecurityState = current_app.extensions["cds.security"]
    if state.verifier is None or request.method == "OPTIONS":
        return None
    if not request.path.startswith(PROTECTED_PREFIXES):
        return None
    base = state.settings.public_base_url or request.url_root.rstrip("/")
    try:
        g.cds_client = state.verifier.verify_authorization(
            request.headers.get("Authorization"), base + request.path
        )
    except AuthError as exc:
        from cds_service import metrics  # late: the gunicorn master must not load metrics (cli imports us)

        metrics.JWT_FAILURES.labels(reason=exc.reason).inc()
        log.warning(
            "JWT rejected: check=%s iss=%s kid=%s jti=%s path=%s",
            exc.reason,
            printable(exc.iss),
            printable(exc.kid),
            printable(exc.jti),
            printable(request.path),
        )
        response = jsonify(operation_outcome("unauthorized", status=401))
        response.status_code = 401
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


def _add_headers(response: Response) -> Response:
    state: SecurityState | None = current_app.extensions.get("cds.security")
    return add_security_headers(response, hsts=state.settings.hsts if state else True)


def authorize_fhir_server(fhir_server: str) -> None:
    """Raise CdsError(403) unless the current request may have the service call ``fhir_server``."""
    state: SecurityState | None = current_app.extensions.get("cds.security")
    if state is None:  # fail closed if the app was built without security
        raise CdsError(403, "fhirServer cannot be checked: security is not installed")
    client: CdsClient | None = g.get("cds_client")
    auth_off = state.verifier is None  # then loopback (a developer's machine) and CDS_FHIR_SERVER_ALLOWLIST
    client_servers = client.fhir_servers if client else ()
    allowed = state.settings.fhir_allowlist if auth_off else client_servers
    problem = fhir_server_problem(
        fhir_server, allowed, allow_http=state.settings.allow_http_fhir, allow_loopback=auth_off
    )
    if problem:
        log.warning("fhirServer refused: %s iss=%s", problem, printable(client.iss if client else None))
        raise CdsError(403, problem, expression=["fhirServer"])
