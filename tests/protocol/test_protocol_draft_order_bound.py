"""CDS_MAX_DRAFT_ORDERS bounds the orders (and selections) one hook call may carry: past it, 413 naming it.

Before, 20,000 draft orders were all evaluated: 10 s of work and a 36 MB response for one call.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers.builders import (
    ORDER_SELECT,
    ORDER_SIGN,
    amifampridine_order,
    empty_prefetch,
    ibuprofen_order,
    order_sign,
)

from cds_service.config import ConfigError, Settings


def _orders(count: int) -> list[dict[str, Any]]:
    return [ibuprofen_order(f"draft-{number}") for number in range(count)]


def _issue(response: Any) -> dict[str, Any]:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def test_the_default_limit_is_200_draft_orders(client):
    at_limit = client.post(ORDER_SIGN, json=order_sign(*_orders(200)))
    assert (at_limit.status_code, at_limit.get_json()) == (200, {"cards": []})
    past = client.post(ORDER_SIGN, json=order_sign(*_orders(201)))
    assert past.status_code == 413
    issue = _issue(past)
    assert issue["code"] == "too-long"
    assert issue["expression"] == ["context.draftOrders.entry"]
    assert "201" in issue["diagnostics"] and "at most 200" in issue["diagnostics"]
    assert "CDS_MAX_DRAFT_ORDERS" in issue["diagnostics"]


def test_the_limit_is_refused_before_any_order_is_evaluated(make_app):
    # Three amifampridine orders with complete prefetch would give cards; past the limit there are none.
    client = make_app(CDS_MAX_DRAFT_ORDERS="2").test_client()
    orders = [amifampridine_order(f"amf-{number}") for number in range(3)]
    response = client.post(ORDER_SIGN, json=order_sign(*orders, prefetch=empty_prefetch()))
    assert response.status_code == 413
    assert "at most 2 " in _issue(response)["diagnostics"]
    assert client.post(ORDER_SIGN, json=order_sign(*orders[:2], prefetch=empty_prefetch())).status_code == 200


def test_selections_are_bounded_too(make_app):
    client = make_app(CDS_MAX_DRAFT_ORDERS="5").test_client()
    body = order_sign(*_orders(2))
    body["hook"] = "order-select"
    body["context"]["selections"] = ["MedicationRequest/draft-0"] * 6  # repeats are work, not information
    response = client.post(ORDER_SELECT, json=body)
    assert response.status_code == 413
    assert _issue(response)["expression"] == ["context.selections"]
    body["context"]["selections"] = ["MedicationRequest/draft-0"] * 5
    assert client.post(ORDER_SELECT, json=body).status_code == 200


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_malformed_limit_stops_the_start(value):
    with pytest.raises(ConfigError, match="CDS_MAX_DRAFT_ORDERS"):
        Settings.from_env({"CDS_MAX_DRAFT_ORDERS": value})
