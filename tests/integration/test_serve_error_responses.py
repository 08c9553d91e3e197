"""What a real ``cds-service serve`` process (gunicorn) sends for requests it refuses before the app.

gunicorn answered these itself with HTML pages without the security headers (431, 400), and a chunked
body past CDS_MAX_BODY_BYTES was read up to the limit and refused as truncated JSON (400, not 413).
Every answer here must be a JSON OperationOutcome with the security headers.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from helpers.builders import ORDER_SIGN, ibuprofen_order, order_sign
from serve_process import served

pytestmark = pytest.mark.integration

MAX_BODY = 4096
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-frame-options": "DENY",
    "strict-transport-security": "max-age=31536000",
}


@pytest.fixture(scope="module")
def serve_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-errors")


@pytest.fixture(scope="module")
def address(serve_dir: Path) -> Iterator[tuple[str, int]]:
    with served(serve_dir, CDS_MAX_BODY_BYTES=str(MAX_BODY)) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def _raw_exchange(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; read the answer until the server closes the connection."""
    with socket.create_connection(address, timeout=20) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _assert_json_with_security_headers(headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"] == "application/json"
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert int(headers["content-length"]) == len(body)
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"][0]


def test_an_oversized_header_gets_431_as_json_with_the_security_headers(address):
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    status, headers, body = _raw_exchange(address, request)
    assert status == 431
    issue = _assert_json_with_security_headers(headers, body)
    assert issue["code"] == "too-long" and "8190 bytes" in issue["diagnostics"]


def test_too_many_header_fields_get_431_as_json(address):
    fields = b"".join(b"X-Field-%d: a\r\n" % number for number in range(120))
    status, headers, body = _raw_exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert status == 431
    assert "at most 100 fields" in _assert_json_with_security_headers(headers, body)["diagnostics"]


def test_a_malformed_request_line_gets_400_as_json_without_echoing_or_logging_it(address, serve_dir):
    status, headers, body = _raw_exchange(address, b"GET /x?patient=secret-id-xyz HTTP/1.1 junk\r\n\r\n")
    assert status == 400
    issue = _assert_json_with_security_headers(headers, body)
    assert issue["code"] == "invalid"
    assert b"secret-id-xyz" not in body
    log = (serve_dir / "serve.log").read_text()
    assert "Invalid request from ip=127.0.0.1: Invalid HTTP Version (request text not logged)" in log
    assert "secret-id-xyz" not in log


def test_an_overlong_request_line_gets_414_as_json(address):
    status, headers, body = _raw_exchange(address, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414
    assert _assert_json_with_security_headers(headers, body)["code"] == "too-long"


def _post_chunked(address: tuple[str, int], body: bytes) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(*address, timeout=20)
    try:
        pieces = (body[start : start + 1000] for start in range(0, len(body), 1000))
        connection.request(
            "POST", ORDER_SIGN, body=pieces, headers={"Content-Type": "application/json"}, encode_chunked=True
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_an_oversized_chunked_body_gets_413_naming_the_limit(address):
    body = orjson.dumps(order_sign(ibuprofen_order(), padding="x" * (2 * MAX_BODY)))
    status, headers, answer = _post_chunked(address, body)
    assert status == 413
    issue = _assert_json_with_security_headers(headers, answer)
    assert issue["code"] == "too-long"
    assert f"{MAX_BODY} bytes" in issue["diagnostics"] and "CDS_MAX_BODY_BYTES" in issue["diagnostics"]


def test_a_chunked_body_within_the_limit_is_evaluated(address):
    body = orjson.dumps(order_sign(ibuprofen_order(), padding="x" * (MAX_BODY // 2)))
    status, _, answer = _post_chunked(address, body)
    assert (status, json.loads(answer)) == (200, {"cards": []})
