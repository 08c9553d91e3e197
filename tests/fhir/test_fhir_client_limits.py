"""How much of a FHIR server's answer the fallback client reads, and for how long, on a real socket.

A local server on 127.0.0.1 plays a misbehaving FHIR server: one that trickles its answer a byte at a
time, or sends a gzip body that inflates past the limit. The client must stop at its limits and free
the connection, not read on in a pool thread after the hook call has given up.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cds_service.fhir_client import ClientSettings, FhirClient

BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}
Answer = Callable[[BaseHTTPRequestHandler], None]


class FhirStub:
    """Serves every GET with ``answer``; ``disconnected`` is set when a write to the client fails."""

    def __init__(self, answer: Answer) -> None:
        self.disconnected = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    owner.disconnected.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def __enter__(self) -> FhirStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[[Answer], FhirStub]]:
    started: list[FhirStub] = []

    def start(answer: Answer) -> FhirStub:
        started.append(FhirStub(answer).__enter__())
        return started[-1]

    yield start
    for server in started:
        server.__exit__(None, None, None)


def _headers(handler: BaseHTTPRequestHandler, length: int, **extra: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/fhir+json")
    handler.send_header("Content-Length", str(length))
    for name, value in extra.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()


def test_a_trickling_answer_is_abandoned_at_the_deadline(stub: Callable[[Answer], FhirStub]) -> None:
    def trickle(handler: BaseHTTPRequestHandler) -> None:
        _headers(handler, 100_000)
        for _ in range(100_000):  # a byte every 50 ms: 83 minutes for the whole answer
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.05)

    server = stub(trickle)
    client = FhirClient(ClientSettings(deadline=0.5, read_timeout=2.0))
    started = time.monotonic()
    results = client.fetch_all(server.base_url, {"conditions": "Condition?patient=p"}, "token")
    assert time.monotonic() - started < 1.5
    assert results["conditions"].value is None
    assert results["conditions"].error
    # The pool thread stopped reading and closed the connection soon after the deadline.
    assert server.disconnected.wait(timeout=3.0)


def test_a_stall_in_the_middle_of_an_answer_is_a_timeout(stub: Callable[[Answer], FhirStub]) -> None:
    def stall(handler: BaseHTTPRequestHandler) -> None:
        _headers(handler, 1000)
        handler.wfile.write(b'{"resourceType": ')
        handler.wfile.flush()
        time.sleep(2.0)

    server = stub(stall)
    client = FhirClient(ClientSettings(read_timeout=0.3, deadline=5.0))
    result = client.fetch_all(server.base_url, {"conditions": "Condition?patient=p"}, "token")["conditions"]
    assert result.error == "the FHIR server timed out"


def test_an_answer_over_the_limit_is_refused_before_it_is_read(stub: Callable[[Answer], FhirStub]) -> None:
    body = json.dumps(BUNDLE).encode() + b" " * 5000

    def large(handler: BaseHTTPRequestHandler) -> None:
        _headers(handler, len(body))
        handler.wfile.write(body)

    server = stub(large)
    client = FhirClient(ClientSettings(max_response_bytes=4096))
    result = client.fetch_all(server.base_url, {"conditions": "Condition?patient=p"}, "token")["conditions"]
    assert result.error == "the FHIR server's answer is larger than 4096 bytes"


def test_a_gzip_answer_is_inflated_and_its_inflated_size_counts(stub: Callable[[Answer], FhirStub]) -> None:
    small = json.dumps(BUNDLE).encode()
    bomb = gzip.compress(small[:-1] + b" " * 50_000 + b"}")  # 50 KB of JSON in a few hundred bytes

    def gzipped(handler: BaseHTTPRequestHandler) -> None:
        body = gzip.compress(small) if handler.path.endswith("small") else bomb
        _headers(handler, len(body), Content_Encoding="gzip")
        handler.wfile.write(body)

    server = stub(gzipped)
    client = FhirClient(ClientSettings(max_response_bytes=10_000))
    results = client.fetch_all(
        server.base_url, {"patient": "Condition?patient=small", "conditions": "Condition?patient=bomb"}, "t"
    )
    assert results["patient"].value == BUNDLE
    assert results["conditions"].error == "the FHIR server's answer is larger than 10000 bytes"
