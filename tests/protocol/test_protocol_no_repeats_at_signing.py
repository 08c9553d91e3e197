"""No repeats at signing (issue 17, item 4): a card accepted or overridden at order-select is not shown
again at order-sign for the same patient and order while its finding is unchanged. Through HTTP, with
two app instances on one database where it matters (workers and replicas share the suppression)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.builders import topics
from helpers.storage_requests import SEIZURE_TOPIC, accepted, order_sign_with_seizure_history, overridden
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.storage.models import CardSuppression, IssuedCard

pytest_plugins = ["conftest_postgres"]

SELECT_URL = "/cds-services/amifampridine-order-select"
SIGN_URL = "/cds-services/amifampridine-order-sign"
SELECT_FEEDBACK = f"{SELECT_URL}/feedback"
# The CDS Hooks sandbox gives every draft this id, whatever the patient and the drug.
SANDBOX_DRAFT_ID = "request-123"


@pytest.fixture
def make(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def build(**env: str) -> Flask:
        settings = {
            "CDS_DATA_DIR": str(tmp_path / "data"),  # one patient-id key file, shared as by replicas
            "CDS_DATABASE_URL": database_url,
            "CDS_AUTH": "off",
            **env,
        }
        app = create_app(Settings.from_env(settings))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["cds.audit"].close(timeout=5)


def sign_body(patient_id: str = "patient-1", mg: float = 5) -> dict[str, Any]:
    body = order_sign_with_seizure_history(patient_id)
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["id"] = SANDBOX_DRAFT_ID
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = mg
    return body


def select_body(patient_id: str = "patient-1", mg: float = 5) -> dict[str, Any]:
    body = copy.deepcopy(sign_body(patient_id, mg))
    body["hook"] = "order-select"
    body["context"]["selections"] = [f"MedicationRequest/{SANDBOX_DRAFT_ID}"]
    return body


def shown(response: Any) -> list[str]:
    """The topics of a 200 answer's cards."""
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return topics(response.get_json())


def seizure_card_at_select(client: FlaskClient, patient_id: str = "patient-1") -> str:
    response = client.post(SELECT_URL, json=select_body(patient_id))
    assert SEIZURE_TOPIC in shown(response)
    [card] = [c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == SEIZURE_TOPIC]
    return card["uuid"]


def answer(client: FlaskClient, card: str, how: str = "overridden") -> None:
    entry = overridden(card, code="benefit-outweighs-risk") if how == "overridden" else accepted(card)
    response = client.post(SELECT_FEEDBACK, json={"feedback": [entry]})
    assert response.status_code == 200
    assert response.get_json()["stored"] == 1


def sign_rows(app: Flask) -> list[tuple[str | None, bool]]:
    store = app.extensions["cds.audit"]
    store.flush()
    with store.engine.connect() as conn:
        query = select(IssuedCard.topic, IssuedCard.suppressed).where(IssuedCard.hook == "order-sign")
        return sorted((topic, bool(hidden)) for topic, hidden in conn.execute(query))


@pytest.mark.parametrize("how", ["overridden", "accepted"])
def test_a_card_answered_at_order_select_is_not_shown_again_at_order_sign(
    make: Callable[..., Flask], how: str
) -> None:
    app = make()
    client = app.test_client()
    answer(client, seizure_card_at_select(client), how)
    assert SEIZURE_TOPIC not in shown(client.post(SIGN_URL, json=sign_body()))
    assert (SEIZURE_TOPIC, True) in sign_rows(app)  # the audit says it was suppressed
    assert (SEIZURE_TOPIC, False) not in sign_rows(app)


def test_another_replica_on_the_same_database_does_not_repeat_it_either(make: Callable[..., Flask]) -> None:
    first, second = make(), make()
    answer(first.test_client(), seizure_card_at_select(first.test_client()))
    assert SEIZURE_TOPIC not in shown(second.test_client().post(SIGN_URL, json=sign_body()))


def test_a_card_shown_but_not_answered_is_shown_again(make: Callable[..., Flask]) -> None:
    client = make().test_client()
    seizure_card_at_select(client)
    assert SEIZURE_TOPIC in shown(client.post(SIGN_URL, json=sign_body()))


def test_a_changed_dose_at_order_sign_brings_it_back(make: Callable[..., Flask]) -> None:
    app = make()
    client = app.test_client()
    answer(client, seizure_card_at_select(client))
    assert SEIZURE_TOPIC in shown(client.post(SIGN_URL, json=sign_body(mg=10)))
    assert (SEIZURE_TOPIC, False) in sign_rows(app)


def test_another_patient_with_the_same_draft_id_is_unaffected(make: Callable[..., Flask]) -> None:
    client = make().test_client()
    answer(client, seizure_card_at_select(client, "patient-1"))
    assert SEIZURE_TOPIC in shown(client.post(SIGN_URL, json=sign_body("patient-2")))


def test_after_the_expiry_it_returns(make: Callable[..., Flask]) -> None:
    app = make(CDS_SIGN_SUPPRESSION_HOURS="2")
    client = app.test_client()
    answer(client, seizure_card_at_select(client))
    store = app.extensions["cds.audit"]
    now = store.clock()
    store.clock = lambda: now + timedelta(hours=1)
    assert SEIZURE_TOPIC not in shown(client.post(SIGN_URL, json=sign_body()))
    store.clock = lambda: now + timedelta(hours=2, seconds=1)
    assert SEIZURE_TOPIC in shown(client.post(SIGN_URL, json=sign_body()))


def test_switched_off_every_card_is_shown_at_signing(make: Callable[..., Flask]) -> None:
    app = make(CDS_SIGN_SUPPRESSION="off")
    client = app.test_client()
    answer(client, seizure_card_at_select(client))
    assert SEIZURE_TOPIC in shown(client.post(SIGN_URL, json=sign_body()))
    with app.extensions["cds.audit"].engine.connect() as conn:
        assert conn.execute(select(CardSuppression.finding_key)).all() == []


def test_no_patient_id_in_clear_in_the_suppression_rows(make: Callable[..., Flask]) -> None:
    app = make()
    client = app.test_client()
    answer(client, seizure_card_at_select(client, "patient-secret-42"))
    store = app.extensions["cds.audit"]
    with store.engine.connect() as conn:
        stored = [*conn.execute(select(CardSuppression.finding_key)).scalars()]
        stored += [*conn.execute(select(IssuedCard.finding_key, IssuedCard.order_key)).all()]
    assert stored and "patient-secret-42" not in repr(stored) and SANDBOX_DRAFT_ID not in repr(stored)
