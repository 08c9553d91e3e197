"""A bounded HTTP GET, shared by the FHIR fallback client and the JWKS fetch.

Every outbound request the service makes is bounded three ways:

- **one deadline** for the whole exchange: connect, TLS handshake, status line, headers and body. Socket
  timeouts alone bound each wait for data, not the exchange: a server that trickles its status line a
  byte a second never trips a 4 s read timeout. A single watchdog thread shuts the socket down when the
  deadline passes, so the blocked read returns at once and the thread that made the request is free;
- **a per-origin concurrency limit** (scheme://host:port): a request that finds its origin's slots all
  taken fails at once instead of waiting, so a slow or stuck server holds at most that many threads and
  only its own calls suffer;
- **bytes**: one answer is capped, and the caller may pass a ``ByteBudget`` shared by every request of
  one hook call, so many pages cannot add up past what one call may read.

No lock is held while a request is in flight. Transport is ``requests`` (its adapters, proxies, CA
handling) with connection classes that hand their sockets to the watchdog.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_CHUNK = 256 * 1024  # bytes asked of the socket per read of an answer's body


class OutboundError(Exception):
    """A request failed; ``kind`` says how. The message is safe to show (no URL query, no token)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # deadline | timeout (one wait) | busy | too-large | budget | unreachable


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes  # empty unless the status was one the caller asked the body of


class ByteBudget:
    """Bytes one hook call may still read from outside, shared by its concurrent requests."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def charge(self, size: int) -> bool:
        """Count ``size`` more bytes; False once the call has read more than its limit."""
        with self._lock:
            self.used += size
            return self.used <= self.limit


def origin(url: str) -> str:
    """scheme://host:port, the host lower-cased and the default port made explicit."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


# ---------------------------------------------------------------- the deadline watchdog


@dataclass(eq=False)
class _Guard:
    """One request's deadline and the sockets it has opened or reused."""

    deadline: float
    sockets: list[socket.socket] = field(default_factory=list)
    expired: bool = False
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)
            late = self.expired
        if late:
            _shut(sock)

    def expire(self) -> None:
        with self.lock:
            if self.finished:
                return
            self.expired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # shutdown, not close: it wakes a recv blocked in another thread at once (close may not), and the
    # owner of the socket still closes it, so no file descriptor is closed under its feet.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that expires guards at their deadlines (a heap, one condition variable)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Guard]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, guard: _Guard) -> None:
        with self._cond:
            heapq.heappush(self._heap, (guard.deadline, next(self._order), guard))
            if self._thread is None or not self._thread.is_alive():  # started lazily, again after a fork
                self._thread = threading.Thread(target=self._run, name="outbound-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)  # finished in time: nothing to do
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                guard = heapq.heappop(self._heap)[2]
            guard.expire()


_WATCHDOG = _Watchdog()
_current = threading.local()  # the guard of the request this thread is making, if any


def _watch_current(sock: socket.socket | None) -> None:
    guard: _Guard | None = getattr(_current, "guard", None)
    if guard is not None and sock is not None:
        guard.watch(sock)


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch_current(sock)  # before the TLS handshake, which the deadline covers too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _watch_current(self.sock)  # a kept-alive connection: its socket was opened by another request
        super().request(*args, **kwargs)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch_current(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _watch_current(self.sock)
        super().request(*args, **kwargs)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_GUARDED_POOLS = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections (direct or through a proxy) report their sockets to the watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_GUARDED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_GUARDED_POOLS)
        return manager


# ---------------------------------------------------------------- the per-origin limit


class OriginLimiter:
    """At most ``per_origin`` requests in flight to one origin; no waiting for a slot.

    A counter per origin in flight (a bounded semaphore that forgets an origin once it is idle, so the
    map holds only the origins being called, whatever hosts requests name)."""

    def __init__(self, per_origin: int) -> None:
        self.per_origin = per_origin
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()  # guards the counts only, never held across a request

    def try_acquire(self, key: str) -> bool:
        with self._lock:
            count = self._in_flight.get(key, 0)
            if count >= self.per_origin:
                return False
            self._in_flight[key] = count + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            count = self._in_flight.pop(key, 0) - 1
            if count > 0:
                self._in_flight[key] = count


# ---------------------------------------------------------------- the GET


class BoundedClient:
    """A ``requests`` session behind the three bounds. One per purpose (FHIR, JWKS) per process."""

    def __init__(self, session: requests.Session, *, per_origin: int, mount: bool = True) -> None:
        self.session = session
        self.limiter = OriginLimiter(per_origin)
        if mount:
            for prefix, adapter in list(session.adapters.items()):
                guarded = GuardedAdapter(
                    pool_connections=adapter._pool_connections,  # type: ignore[attr-defined]
                    pool_maxsize=adapter._pool_maxsize,  # type: ignore[attr-defined]
                    max_retries=adapter.max_retries,
                )
                session.mount(prefix, guarded)

    def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        deadline: float,
        timeouts: tuple[float, float],
        max_bytes: int,
        budget: ByteBudget | None = None,
        read_body: frozenset[int] = frozenset({200}),
        proxies: Mapping[str, str] | None = None,
    ) -> Answer:
        """GET ``url`` within ``deadline`` (time.monotonic()); the body is read for ``read_body`` statuses.

        ``timeouts`` (connect, read) bound each wait; the deadline bounds the whole exchange.
        """
        if deadline - time.monotonic() <= 0:
            raise OutboundError("deadline", "the deadline passed before the request was made")
        slot = origin(url)
        if not self.limiter.try_acquire(slot):
            raise OutboundError(
                "busy", f"more than {self.limiter.per_origin} requests in flight to this server"
            )
        guard = _Guard(deadline)
        _WATCHDOG.add(guard)
        _current.guard = guard
        try:
            return self._exchange(url, headers, timeouts, max_bytes, budget, read_body, proxies, guard)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if guard.expired:
                raise OutboundError("deadline", "the server did not answer within the deadline") from exc
            if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
                raise OutboundError("timeout", "the server timed out") from exc
            reason = f"the server could not be reached ({type(exc).__name__})"
            raise OutboundError("unreachable", reason) from exc
        finally:
            _current.guard = None
            with guard.lock:
                guard.finished = True
            self.limiter.release(slot)

    def _exchange(
        self,
        url: str,
        headers: Mapping[str, str],
        timeouts: tuple[float, float],
        max_bytes: int,
        budget: ByteBudget | None,
        read_body: frozenset[int],
        proxies: Mapping[str, str] | None,
        guard: _Guard,
    ) -> Answer:
        # Streamed, so that the body is read here under the limits, not all at once by requests.
        response = self.session.get(
            url,
            headers=dict(headers),
            timeout=timeouts,
            allow_redirects=False,
            proxies=dict(proxies) if proxies is not None else None,
            stream=True,
        )
        with response:
            body = b""
            if response.status_code in read_body:
                body = _read(response, max_bytes, budget, guard)
            elif guard.expired:
                raise OutboundError("deadline", "the server did not answer within the deadline")
            return Answer(response.status_code, response.headers, body)


def _read(response: requests.Response, limit: int, budget: ByteBudget | None, guard: _Guard) -> bytes:
    too_large = f"the answer is larger than {limit} bytes"
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise OutboundError("too-large", too_large)
    chunks: list[bytes] = []
    size = 0
    # read1 returns what has arrived (decoded, if gzip), so each chunk is counted as it comes in.
    while chunk := response.raw.read1(_CHUNK, decode_content=True):
        size += len(chunk)
        if size > limit:
            raise OutboundError("too-large", too_large)
        if budget is not None and not budget.charge(len(chunk)):
            raise OutboundError("budget", f"the call read more than {budget.limit} bytes from outside")
        chunks.append(chunk)
    if guard.expired:  # the watchdog shut the socket: what arrived is a truncated answer
        raise OutboundError("deadline", "the server did not answer within the deadline")
    return b"".join(chunks)
