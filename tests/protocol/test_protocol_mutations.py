"""A damaged request never gets a 500: every mutation of a valid body is answered 200, 400 or 412."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from helpers.builders import ORDER_SIGN, amifampridine_order, empty_prefetch, epilepsy, order_sign, searchset
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.app import create_app
from cds_service.config import Settings

VALID = json.dumps(
    order_sign(amifampridine_order(), prefetch={**empty_prefetch(), "conditions": searchset(epilepsy())})
).encode()
# Bytes that break JSON in the ways decoders disagree on: bad UTF-8, lone surrogates, numbers no float
# holds, stray brackets, control characters.
DAMAGE = [
    b"1e999",
    b"null",
    b"[",
    b"]",
    b"{",
    b"}",
    b'"\xff"',
    b'"\\ud800"',
    b",",
    b":",
    b"\x00",
    b"[]",
    b"-0",
]

edit = st.tuples(
    st.integers(min_value=0, max_value=len(VALID) - 1),  # where
    st.integers(min_value=0, max_value=20),  # how many bytes to remove there
    st.one_of(st.sampled_from(DAMAGE), st.binary(max_size=3)),  # what to put in their place
)


def _apply(body: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    damaged = bytearray(body)
    for where, removed, inserted in edits:
        where = min(where, len(damaged))
        damaged[where : where + removed] = inserted
    return bytes(damaged)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    # One app for every example: building one per example would dominate the run time.
    data = tmp_path_factory.mktemp("mutations")
    return create_app(
        Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(data / "data")})
    ).test_client()


@settings(max_examples=400, deadline=None)
@given(edits=st.lists(edit, min_size=1, max_size=3))
def test_damaged_requests_get_a_4xx_never_a_500(
    edits: list[tuple[int, int, bytes]], client: FlaskClient
) -> None:
    response = client.post(ORDER_SIGN, data=_apply(VALID, edits), content_type="application/json")
    assert response.status_code in {200, 400, 412}, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body is not None
    if response.status_code != 200:
        assert body["resourceType"] == "OperationOutcome"
        assert "Traceback" not in json.dumps(body)
