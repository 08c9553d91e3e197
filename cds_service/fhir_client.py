"""Queries to the EHR's FHIR server for prefetch keys the EHR did not fill.

Queries run in parallel under one deadline per hook call (``CallLimits``), which covers connect, status
line, headers and body of every query and page (``cds_service.outbound``); searchset Bundles are
followed through their ``next`` links up to a page cap; the bytes read for one call are capped across
all its queries and pages. At most ``origin_limit`` queries are in flight to one server, so a slow
server holds a bounded share of the pool. The EHR's bearer token goes to that server only and is never
logged: log lines name the prefetch key, never the URL's query or the token.
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
from requests.adapters import HTTPAdapter

from cds_service import metrics
from cds_service.outbound import BoundedClient, ByteBudget, OutboundError

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
# How long a call waits, past its deadline, for queries whose sockets the watchdog has just shut.
_GRACE = 0.5


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
    deadline: float = 6.0  # one hook call's outbound work, every query and page included
    max_pages: int = 20
    max_response_bytes: int = 20 * 1024 * 1024  # one answer (one page), after any gzip decoding
    max_call_bytes: int = 16 * 1024 * 1024  # every answer of one hook call together (caps a page too)
    max_workers: int = 8  # pool threads for each hook call in flight (a call makes up to 7 queries)
    # Hook calls a process serves at once (gunicorn's threads, CDS_THREADS). The shared pool holds
    # max_workers threads for each, so concurrent calls do not queue behind each other's queries:
    # with one pool of 8, two calls of 7 queries took two rounds of the server's latency instead of one.
    calls_in_flight: int = 4
    # Queries in flight to one FHIR server (0: max_workers x calls_in_flight, what one EHR needs at full
    # load). The pool has that many threads more than one origin may hold, so a stuck server leaves the
    # usual pool to everyone else.
    max_per_origin: int = 0

    @property
    def origin_limit(self) -> int:
        return self.max_per_origin or self.max_workers * max(1, self.calls_in_flight)


@dataclass(frozen=True)
class CallLimits:
    """One hook call's share of outbound work: its deadline (time.monotonic()) and its byte budget."""

    deadline: float
    budget: ByteBudget


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
        self._outbound = BoundedClient(self._session, per_origin=settings.origin_limit)
        # Threads start on demand and are kept for reuse, so a large bound costs nothing while idle.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_workers * max(1, settings.calls_in_flight) + settings.origin_limit,
            thread_name_prefix="fhir-fetch",
        )

    def start_call(self) -> CallLimits:
        """The limits of one hook call's outbound work, starting now."""
        return CallLimits(time.monotonic() + self.settings.deadline, ByteBudget(self.settings.max_call_bytes))

    def fetch_all(
        self,
        base_url: str,
        queries: Mapping[str, str | dict[str, Any]],
        token: str | None,
        call: CallLimits | None = None,
    ) -> dict[str, FetchResult]:
        """Run every job in parallel within the call's limits; what misses the deadline is an error.

        A job is a query relative to ``base_url``, or a first page (a searchset Bundle the EHR sent in
        prefetch with a ``next`` link) whose remaining pages are to be read. ``call`` carries the
        deadline and byte budget across several batches of one hook call (a new one by default).
        """
        call = call or self.start_call()
        futures = {
            key: self._pool.submit(self._fetch, key, base_url, query, token, call)
            for key, query in queries.items()
        }
        wait(futures.values(), timeout=max(0.0, call.deadline - time.monotonic()))
        # At the deadline the watchdog shut the sockets of the queries still running: they end within
        # moments, and waiting for that leaves no work of this call behind (threads, per-origin slots).
        wait(futures.values(), timeout=_GRACE)
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
                # An OutboundError's own message (safe: no URL query, no token) keeps the exception's name
                # for the operator; the card gets _say's words without it.
                cause = exc.__cause__ if isinstance(exc.__cause__, OutboundError) else exc
                log.warning("fallback query for prefetch key %s failed: %s", key, cause)
                results[key] = FetchResult(None, str(exc))
            except Exception as exc:  # a bug reading one answer must cost that key, not the whole call
                metrics.FHIR_QUERIES.labels(key=key, outcome="error").inc()
                log.error("fallback query for prefetch key %s failed: %s", key, type(exc).__name__)
                results[key] = FetchResult(None, "the FHIR server's answer could not be read")
        return results

    def _fetch(
        self, key: str, base_url: str, query: str | dict[str, Any], token: str | None, call: CallLimits
    ) -> Any:
        started = time.monotonic()
        try:
            if isinstance(query, dict):
                first = query
            else:
                first = self._get(urljoin(base_url.rstrip("/") + "/", query), token, call)
            if first is None or first.get("resourceType") != "Bundle":
                return first
            return self._follow_pages(first, base_url, token, call)
        finally:
            metrics.FHIR_QUERY_LATENCY.labels(key=key).observe(time.monotonic() - started)

    def _follow_pages(
        self, bundle: dict[str, Any], base_url: str, token: str | None, call: CallLimits
    ) -> Any:
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
            page = self._get(next_url, token, call)
            if page is None or page.get("resourceType") != "Bundle":
                raise FetchError("a next page was not a Bundle")
            if problem := bundle_problem(page):
                raise FetchError(problem)
            entries.extend(page.get("entry") or [])
            pages += 1
        merged = {k: v for k, v in bundle.items() if k not in {"entry", "link"}}
        merged["entry"] = entries
        return merged

    def _get(self, url: str, token: str | None, call: CallLimits) -> dict[str, Any] | None:
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            answer = self._outbound.get(
                url,
                headers=headers,
                deadline=call.deadline,
                timeouts=(self.settings.connect_timeout, self.settings.read_timeout),
                max_bytes=self.settings.max_response_bytes,
                budget=call.budget,
                proxies=_proxies_for(_origin(url)),
            )
        except OutboundError as exc:
            raise FetchError(_say(exc, self.settings)) from exc
        if answer.status == 404 and "?" not in url:
            return None  # a read of a resource that does not exist: no data
        if answer.status in (401, 403):
            raise FetchError(f"the FHIR server refused the query (HTTP {answer.status})")
        if answer.status != 200:
            raise FetchError(f"the FHIR server answered HTTP {answer.status}")
        try:
            body = orjson.loads(answer.body)
        except orjson.JSONDecodeError as exc:
            raise FetchError("the FHIR server answered with something that is not JSON") from exc
        if not isinstance(body, dict):
            raise FetchError("the FHIR server answered with JSON that is not a resource")
        if body.get("resourceType") == "OperationOutcome":
            raise FetchError("the FHIR server answered with an OperationOutcome")
        return body


def _say(error: OutboundError, settings: ClientSettings) -> str:
    """The reason a query failed, in the words of a data-unavailable card (no URL, no token)."""
    if error.kind == "deadline":
        return f"the FHIR server did not answer within {settings.deadline:g} s"
    if error.kind == "timeout":
        return "the FHIR server timed out"
    if error.kind == "too-large":
        return f"the FHIR server's answer is larger than {settings.max_response_bytes} bytes"
    if error.kind == "budget":
        return (
            f"the FHIR server's answers for this call came to more than {settings.max_call_bytes} bytes "
            "(CDS_FHIR_MAX_CALL_BYTES)"
        )
    if error.kind == "busy":
        return f"the FHIR server already had {settings.origin_limit} queries of this service in flight"
    if error.kind == "unreachable":  # the exception's name stays in the log line, out of the card
        return "the FHIR server could not be reached"
    return str(error).replace("the server", "the FHIR server")


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
    # One pass over the entries (a long record has hundreds): their shape and any failed outcome.
    entries = bundle.get("entry")
    failed = False
    if entries is not None:
        if not isinstance(entries, list):
            return "the Bundle's entry is not a list of objects"
        for entry in entries:
            if not isinstance(entry, dict):
                return "the Bundle's entry is not a list of objects"
            resource = entry.get("resource")
            outcome = isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome"
            if outcome and not failed:
                issues = resource.get("issue")
                failed = isinstance(issues, list) and any(
                    isinstance(issue, dict) and issue.get("severity") in _FAILED for issue in issues
                )
    links = bundle.get("link")
    if links is not None and not (isinstance(links, list) and all(isinstance(i, dict) for i in links)):
        return "the Bundle's link is not a list of objects"
    return "the Bundle carries an OperationOutcome with an error" if failed else None


def _same_origin(url: str, base_url: str) -> bool:
    return _origin(url) == _origin(base_url)
