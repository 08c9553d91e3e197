"""Which FHIR servers the service may call (SSRF guard).

``fhirServer`` in a hook request names the server the service will query with the EHR's access token.
Unchecked, any caller could point the service (and that token) at an internal address. With
authentication on, the server must be one the calling client registered; with it off, a loopback address
or one listed in ``CDS_FHIR_SERVER_ALLOWLIST``. Link-local and cloud metadata addresses are refused in
every mode unless listed. The check is made on every call that names a server, not only when the service
is about to fetch, so a misconfigured client is told at its first call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Instance metadata services hand out cloud credentials to whoever asks from inside the instance. The
# IPv4 ones on 169.254.0.0/16 are caught as link-local; these are the others (names and addresses).
_METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",  # GCP
        "metadata.goog",  # GCP
        "metadata",  # GCP short name
        "instance-data",  # AWS
        "instance-data.ec2.internal",  # AWS
        "metadata.azure.com",  # Azure
        "metadata.tencentyun.com",  # Tencent Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
    }
)


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


def _host(normalised: str) -> str:
    host = urlsplit(normalised).hostname or ""
    return host.rstrip(".")  # "metadata.google.internal." names the same host


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:169.254.169.254 reaches the IPv4 address
    return address


def is_link_local_or_metadata(host: str) -> bool:
    """Whether ``host`` (a URL's host, lower-case) is a link-local or a known cloud metadata address."""
    address = _ip(host)
    if address is not None:
        return address.is_link_local or str(address) in _METADATA_HOSTS
    return host in _METADATA_HOSTS


def is_loopback(host: str) -> bool:
    """Whether ``host`` is written as a loopback address: ``localhost``, 127.0.0.0/8 or ``::1``.

    Only these spellings count. A name that merely resolves to loopback, or an IPv4 address written as
    one decimal number, is not recognised and so not allowed (failing closed).
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fhir_server_problem(
    fhir_server: object,
    allowed: Iterable[str] | None,
    *,
    allow_http: bool,
    allow_loopback: bool = False,
) -> str | None:
    """Why the service must not call ``fhir_server``, or None when it may.

    ``allowed`` holds normalised base URLs; None means no list applies (any server but link-local and
    metadata ones). ``allow_loopback`` also admits servers on this host (auth off: a developer's machine).
    A server listed in ``allowed`` is admitted whatever its address: listing it is the explicit choice.
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
    if allowed is not None and normalised in set(allowed):
        return None
    host = _host(normalised)
    if is_link_local_or_metadata(host):
        return "fhirServer is a link-local or cloud metadata address that is not explicitly allowed"
    if allow_loopback and is_loopback(host):
        return None
    if allowed is None:
        return None
    if allow_loopback:
        return "fhirServer is neither a loopback address nor listed in CDS_FHIR_SERVER_ALLOWLIST"
    return "fhirServer is not registered for this client"
