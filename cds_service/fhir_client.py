"""Queries to the EHR's FHIR server for prefetch keys the EHR did not fill.

Queries run in parallel under one overall deadline; each has connect/read timeouts; searchset Bundles
are followed through their ``next`` links up to a page cap. The EHR's bearer token goes to that server
only and is never logged: log lines name the prefetch key, never the URL's query or the token.
"""

from __future__ import annotations

import functools
import http.cookiejar
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

from cds_service import metrics

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
_CHUNK = 256 * 1024  # bytes asked of the socket per read of an answer's body


class FetchError(Exception):
    """A query failed; the message is safe to show (no token, no patient data)."""


@dataclass(frozen=True)
class FetchResult:
    value: Any  # a resource, a Bundle (pages merged), or None
    error: str | None = None


@dataclass(frozen=True)
class ClientSettings:
    connect_timeout: float = 2.0
    read_timeout: float = 4.0
    deadline: float = 6.0
    max_pages: int = 20
    max_response_bytes: int = 20 * 1024 * 1024  # one answer (one page), after any gzip decoding
    max_workers: int = 8  # pool threads for each hook call in flight (a call makes up to 7 queries)
    # Hook calls a process serves at once (gunicorn's threads, CDS_THREADS). The shared pool holds
    # max_workers threads for each, so concurrent calls do not queue behind each other's queries:
    # with one pool of 8, two calls of 7 queries took two rounds of the server's latency instead of one.
    calls_in_flight: int = 4


class FhirClient:
    """One per process: a pooled ``requests`` session shared by the worker threads."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._session = requests.Session()
        # requests' environment lookups (proxy variables, ~/.netrc) cost ~0.6 ms of CPU on every query,
        # seven times per fallback call, and a ~/.netrc entry for the FHIR host would replace the EHR's
        # bearer token. The environment is read once instead: CA bundle here, proxies per origin.
        self._session.trust_env = False
        self._session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        # The session serves every hook call of the process: a cookie a FHIR server sets for one user's
        # token would otherwise ride along with the next call's queries. The bearer token is the only
        # credential; no cookie is kept.
        self._session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        # Enough kept-alive connections per host for every pool thread: a connection that does not fit is
        # closed after use, and the next query pays for a new TCP (and TLS) handshake.
        connections = settings.max_workers * max(1, settings.calls_in_flight)
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(8, connections), max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # Threads start on demand and are kept for reuse, so a large bound costs nothing while idle.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_workers * max(1, settings.calls_in_flight),
            thread_name_prefix="fhir-fetch",
        )

    def fetch_all(
        self, base_url: str, queries: Mapping[str, str | dict[str, Any]], token: str | None
    ) -> dict[str, FetchResult]:
        """Run every job in parallel; what misses the deadline is an error.

        A job is a query relative to ``base_url``, or a first page (a searchset Bundle the EHR sent in
        prefetch with a ``next`` link) whose remaining pages are to be read.
        """
        started = time.monotonic()
        deadline = started + self.settings.deadline
        futures = {
            key: self._pool.submit(self._fetch, key, base_url, query, token, deadline)
            for key, query in queries.items()
        }
        wait(futures.values(), timeout=self.settings.deadline)
        results: dict[str, FetchResult] = {}
        for key, future in futures.items():
            if not future.done():
                future.cancel()
                metrics.FHIR_QUERIES.labels(key=key, outcome="timeout").inc()
                results[key] = FetchResult(
                    None, f"the FHIR server did not answer within {self.settings.deadline:g} s"
                )
                continue
            try:
                results[key] = FetchResult(future.result())
                metrics.FHIR_QUERIES.labels(key=key, outcome="ok").inc()
            except FetchError as exc:
                metrics.FHIR_QUERIES.labels(key=key, outcome="error").inc()
                # The key names the data, the reason is our own wording: neither carries patient data.
                log.warning("fallback query for prefetch key %s failed: %s", key, exc)
                results[key] = FetchResult(None, str(exc))
            except Exception as exc:  # a bug reading one answer must cost that key, not the whole call
                metrics.FHIR_QUERIES.labels(key=key, outcome="error").inc()
                log.error("fallback query for prefetch key %s failed: %s", key, type(exc).__name__)
                results[key] = FetchResult(None, "the FHIR server's answer could not be read")
        return results

    def _fetch(
        self, key: str, base_url: str, query: str | dict[str, Any], token: str | None, deadline: float
    ) -> Any:
        started = time.monotonic()
        try:
            if isinstance(query, dict):
                first = query
            else:
                first = self._get(urljoin(base_url.rstrip("/") + "/", query), token, deadline)
            if first is None or first.get("resourceType") != "Bundle":
                return first
            return self._follow_pages(first, base_url, token, deadline)
        finally:
            metrics.FHIR_QUERY_LATENCY.labels(key=key).observe(time.monotonic() - started)

    def _follow_pages(self, bundle: dict[str, Any], base_url: str, token: str | None, deadline: float) -> Any:
        if problem := bundle_problem(bundle):
            raise FetchError(problem)
        entries = list(bundle.get("entry") or [])
        page, pages = bundle, 1
        while (next_url := next_link(page)) is not None:
            if pages >= self.settings.max_pages:
                raise FetchError(f"more than {self.settings.max_pages} pages of results")
            if not _same_origin(next_url, base_url):
                # A next link to another host would carry the EHR's token elsewhere.
                raise FetchError("a next link pointed outside the FHIR server")
            page = self._get(next_url, token, deadline)
            if page is None or page.get("resourceType") != "Bundle":
                raise FetchError("a next page was not a Bundle")
            if problem := bundle_problem(page):
                raise FetchError(problem)
            entries.extend(page.get("entry") or [])
            pages += 1
        merged = {k: v for k, v in bundle.items() if k not in {"entry", "link"}}
        merged["entry"] = entries
        return merged

    def _get(self, url: str, token: str | None, deadline: float) -> dict[str, Any] | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("the overall deadline passed")
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = (min(self.settings.connect_timeout, remaining), min(self.settings.read_timeout, remaining))
        try:
            # Streamed, so that the body is read under our limits (_read_body), not all at once.
            response = self._session.get(
                url,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                proxies=_proxies_for(_origin(url)),
                stream=True,
            )
            with response:
                if response.status_code == 404 and "?" not in url:
                    return None  # a read of a resource that does not exist: no data
                if response.status_code in (401, 403):
                    raise FetchError(f"the FHIR server refused the query (HTTP {response.status_code})")
                if response.status_code != 200:
                    raise FetchError(f"the FHIR server answered HTTP {response.status_code}")
                content = self._read_body(response, deadline)
        # urllib3's own timeout error is what a stall while reading the body raises.
        except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
            raise FetchError("the FHIR server timed out") from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise FetchError(f"the FHIR server could not be reached ({type(exc).__name__})") from exc
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise FetchError("the FHIR server answered with something that is not JSON") from exc
        if not isinstance(body, dict):
            raise FetchError("the FHIR server answered with JSON that is not a resource")
        if body.get("resourceType") == "OperationOutcome":
            raise FetchError("the FHIR server answered with an OperationOutcome")
        return body

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        """The answer's body, up to ``max_response_bytes`` and within the call's deadline.

        The read timeout bounds each wait for data, not the whole body: a server that sends a byte every
        few seconds would otherwise hold this pool thread long after the hook call has given up on it.
        """
        limit = self.settings.max_response_bytes
        too_large = f"the FHIR server's answer is larger than {limit} bytes"
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(too_large)
        chunks: list[bytes] = []
        size = 0
        # read1 returns what has arrived (decoded, if gzip), so the deadline is checked as data comes in.
        while chunk := response.raw.read1(_CHUNK, decode_content=True):
            size += len(chunk)
            if size > limit:
                raise FetchError(too_large)
            if time.monotonic() > deadline:
                raise FetchError("the overall deadline passed while the answer was arriving")
            chunks.append(chunk)
        return b"".join(chunks)


def _origin(url: str) -> str:
    """scheme://host[:port], the host lower-cased (host names are case-insensitive)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.lower()}"


@functools.lru_cache(maxsize=64)
def _proxies_for(origin: str) -> dict[str, str]:
    """HTTP(S)_PROXY / NO_PROXY from the environment for one FHIR server, read once per origin."""
    return requests.utils.get_environ_proxies(origin)


def next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


# OperationOutcome issue severities that mean the search did not (fully) work.
_FAILED = frozenset({"error", "fatal"})


def bundle_problem(bundle: Mapping[str, Any]) -> str | None:
    """Why a Bundle cannot be read as a search result, or None.

    ``entry`` and ``link`` must be lists of objects. An OperationOutcome entry with an error or fatal
    issue (a server's ``search.mode: outcome``) means the results are not what was asked for: the
    CDS Hooks spec asks services to check prefetch for OperationOutcomes, and this is where they hide.
    """
    for element in ("entry", "link"):
        items = bundle.get(element)
        if items is not None and not (isinstance(items, list) and all(isinstance(i, dict) for i in items)):
            return f"the Bundle's {element} is not a list of objects"
    for entry in bundle.get("entry") or ():
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            issues = resource.get("issue")
            if isinstance(issues, list) and any(
                isinstance(issue, dict) and issue.get("severity") in _FAILED for issue in issues
            ):
                return "the Bundle carries an OperationOutcome with an error"
    return None


def _same_origin(url: str, base_url: str) -> bool:
    return _origin(url) == _origin(base_url)
