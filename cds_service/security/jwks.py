"""Fetch and cache the JWK Sets of trusted clients.

Only URLs from the trusted-clients file are ever fetched (the caller guarantees it; ``jku`` is matched
against that list first). Fetches use HTTPS, no redirects, a size cap and one deadline (``timeout``)
for the whole exchange, status line and headers included (``cds_service.outbound``); at most
``MAX_FETCHES_PER_ORIGIN`` run at once against one host. A key set is kept for ``cache_seconds``; an
unknown ``kid`` triggers a refresh at most once per ``refresh_interval`` per URL, so a flood of tokens
with made-up kids cannot turn the service into a request amplifier.

No lock is held across a fetch: one request fetches, the others asking for the same URL meanwhile wait
for it at most ``timeout`` (single flight), and requests for other URLs never wait at all.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from cds_service.outbound import BoundedClient, OutboundError
from cds_service.security.config import jwk_problem

log = logging.getLogger("cds_service.security.jwks")

MAX_JWKS_BYTES = 256 * 1024
# Key-set fetches in flight to one host (scheme://host:port); one per URL already, by the single flight.
MAX_FETCHES_PER_ORIGIN = 4


class JwksFetchError(Exception):
    """The key set could not be fetched or parsed."""


@dataclass
class _Entry:
    keys: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    fetched_at: float | None = None  # last successful fetch
    attempted_at: float | None = None  # last attempt, successful or not
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards the fields, never a fetch
    in_flight: threading.Event | None = None  # set when the fetch under way ends


class JwksCache:
    def __init__(
        self,
        *,
        timeout: float = 3.0,
        cache_seconds: float = 3600.0,
        refresh_interval: float = 60.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.refresh_interval = refresh_interval
        self._outbound = BoundedClient(session or requests.Session(), per_origin=MAX_FETCHES_PER_ORIGIN)
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._entries_lock = threading.Lock()

    def get_key(self, url: str, kid: str) -> Mapping[str, Any] | None:
        """The JWK with ``kid`` from the set at ``url``, refreshing the set when allowed; None if absent."""
        entry = self._entry(url)
        with entry.lock:
            now = self._clock()
            stale = entry.fetched_at is None or now - entry.fetched_at >= self.cache_seconds
            if not (stale or kid not in entry.keys):
                return entry.keys.get(kid)
            waiting = entry.in_flight
            leader = waiting is None and self._may_fetch(entry, now)
            if leader:
                entry.attempted_at = now
                entry.in_flight = threading.Event()
        if leader:
            self._refresh(url, entry, now)
        elif waiting is not None:
            waiting.wait(self.timeout)  # bounded: the fetch under way ends by its own deadline
        with entry.lock:
            return entry.keys.get(kid)

    def _entry(self, url: str) -> _Entry:
        with self._entries_lock:
            return self._entries.setdefault(url, _Entry())

    def _may_fetch(self, entry: _Entry, now: float) -> bool:
        return entry.attempted_at is None or now - entry.attempted_at >= self.refresh_interval

    def _refresh(self, url: str, entry: _Entry, now: float) -> None:
        """Fetch outside the entry's lock; store the keys and wake the waiters under it."""
        keys: dict[str, Mapping[str, Any]] | None = None
        try:
            keys = self.fetch(url)
        except JwksFetchError as exc:
            # Keep the keys we had: a brief outage at the EHR should not lock it out of its own service.
            log.warning("JWKS fetch failed url=%s reason=%s kept_keys=%d", url, exc, len(entry.keys))
        finally:
            with entry.lock:
                if keys is not None:
                    entry.keys = keys
                    entry.fetched_at = now
                done, entry.in_flight = entry.in_flight, None
            if done is not None:
                done.set()
        if keys is not None:
            log.info("JWKS fetched url=%s kids=%s", url, ",".join(sorted(keys)))

    def fetch(self, url: str) -> dict[str, Mapping[str, Any]]:
        if urlsplit(url).scheme != "https":
            raise JwksFetchError("only https key set URLs are fetched")
        try:
            answer = self._outbound.get(
                url,
                headers={"Accept": "application/json, application/jwk-set+json"},
                deadline=time.monotonic() + self.timeout,
                timeouts=(self.timeout, self.timeout),
                max_bytes=MAX_JWKS_BYTES,
            )
        except OutboundError as exc:
            if exc.kind == "too-large":
                raise JwksFetchError("key set larger than 256 KiB") from exc
            raise JwksFetchError(str(exc)) from exc
        if answer.status != 200:
            raise JwksFetchError(f"HTTP {answer.status}")
        return parse_jwks(_json(answer.body))


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise JwksFetchError("not JSON") from exc


def parse_jwks(data: Any) -> dict[str, Mapping[str, Any]]:
    """Usable keys of a JWK Set by kid; unusable keys are skipped with a log line."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksFetchError("not a JWK Set")
    keys: dict[str, Mapping[str, Any]] = {}
    for key in data["keys"]:
        problem = jwk_problem(key)
        if problem:
            log.warning("JWKS key skipped: %s", problem)
            continue
        keys[key["kid"]] = dict(key)
    return keys
