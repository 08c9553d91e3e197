"""Which FHIR servers the service may call (SSRF guard).

``fhirServer`` in a hook request names the server the service will query with the EHR's access token.
Unchecked, any caller could point the service (and that token) at an internal address. With
authentication on, the server must be one the calling client registered; with it off, an optional
allow-list applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_base_url(url: str) -> str:
    """Canonical form of a FHIR base URL for exact comparison.

    Scheme and host lower-case, default port dropped, trailing slashes dropped. Raises ValueError for
    anything that is not a plain http(s) base URL (credentials, query or fragment included).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("not a URL")
    # A bare "?" or "#" parses as an empty query or fragment, which would compare equal to the plain base
    # URL, while a client resolving paths against the raw string would go one directory up.
    if "?" in url or "#" in url:
        raise ValueError("a FHIR base URL has no query or fragment")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError("not a valid URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("only http and https URLs are allowed")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not carry credentials")
    if parts.query or parts.fragment:
        raise ValueError("a FHIR base URL has no query or fragment")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def fhir_server_problem(
    fhir_server: object, allowed: Iterable[str] | None, *, allow_http: bool
) -> str | None:
    """Why the service must not call ``fhir_server``, or None when it may.

    ``allowed`` holds normalised base URLs; None means no list applies (auth off, no allow-list).
    The message never repeats the URL: it may hold whatever the caller chose to put there.
    """
    if not isinstance(fhir_server, str):
        return "fhirServer must be a string"
    try:
        normalised = normalize_base_url(fhir_server)
    except ValueError:
        return "fhirServer is not a valid http(s) base URL"
    if normalised.startswith("http:") and not allow_http:
        return "fhirServer must use https"
    if allowed is not None and normalised not in set(allowed):
        return "fhirServer is not registered for this client"
    return None
