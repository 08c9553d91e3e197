"""Every card links to the label section it cites (issue 17, item 6): a CDS Hooks Link, type absolute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[2]
LABEL = yaml.safe_load((ROOT / "cards/label.yaml").read_text(encoding="utf-8"))
CASES = [case for case in yaml.safe_load((ROOT / "fixtures/manifest.yaml").read_text()) if case["expected"]]


def _section(topic: str) -> str:
    return str(yaml.safe_load((ROOT / f"cards/topics/{topic}.yaml").read_text(encoding="utf-8"))["section"])


@pytest.mark.parametrize("case", CASES[:12], ids=lambda case: case["id"])
def test_each_card_links_to_its_label_section(client: FlaskClient, case: dict) -> None:
    body = json.loads((ROOT / f"fixtures/requests/{case['id']}.json").read_text(encoding="utf-8"))
    response = client.post(f"/cds-services/amifampridine-{body['hook']}", json=body)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert sorted(card["source"]["topic"]["code"] for card in cards) == sorted(case["expected"])
    for card in cards:
        [link] = card["links"]
        assert link["type"] == "absolute"
        assert link["url"] == LABEL["url"]
        assert link["label"].endswith(f"§{_section(card['source']['topic']['code'])}")
        assert set(link) == {"label", "url", "type"}
