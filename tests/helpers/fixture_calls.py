"""The fixtures' saved requests (fixtures/requests) sent through a Flask test client, and edits of them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.knowledge.loader import load_knowledge

ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE = load_knowledge(ROOT / "cards")
SIGN = "/cds-services/amifampridine-order-sign"


def request_for(case_id: str) -> dict[str, Any]:
    return json.loads((ROOT / "fixtures" / "requests" / f"{case_id}.json").read_text(encoding="utf-8"))


def make_client(tmp_path: Path, **env: str) -> Any:
    settings = Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path), **env})
    return create_app(settings).test_client()


def cards_for(client: Any, request: dict[str, Any], url: str = SIGN) -> list[dict[str, Any]]:
    response = client.post(url, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def first_draft(request: dict[str, Any]) -> dict[str, Any]:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def update_resource(card: dict[str, Any]) -> dict[str, Any]:
    (action,) = card["suggestions"][0]["actions"]
    assert action["type"] == "update"
    return action["resource"]


def with_nat2(**fields: Any) -> dict[str, Any]:
    """The NAT2 *5/*6 new-start fixture with its one NAT2 Observation's code and value replaced."""
    request = copy.deepcopy(request_for("nat2-genotype-5-6"))
    (entry,) = request["prefetch"]["nat2"]["entry"]
    observation = entry["resource"]
    observation["id"] = "amf-pgx-obs"  # the fixture's id says "nat2"; these tests are about the content
    for key in [k for k in observation if k == "component" or k.startswith("value")]:
        del observation[key]
    observation.update(fields)
    return request
