"""Which renal result the renal rule judges on: the newest usable one (the kind decides only among results
of the same day), and a measured clearance's unit (mL/min, mL/s, mL/min/1.73 m2; any other is not used)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.builders import (
    ORDER_SIGN,
    PATIENT_ID,
    amifampridine_order,
    empty_prefetch,
    order_sign,
    patient,
    searchset,
)

from cds_service.app import create_app
from cds_service.config import Settings

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLEARANCE = ("2164-2", "Creatinine renal clearance in 24 hour Urine and Serum or Plasma")
EGFR = ("98979-8", "eGFR (CKD-EPI 2021)")
CREATININE = ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma")
OLD = "2019-05-02"  # years before the order (authored 2026-11-22)
NEW = "2026-11-01"
EARLIER = "2026-05-02"  # older than NEW, within CDS_RENAL_MAX_AGE_DAYS (365) of the order


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    return create_app(settings).test_client()


def observation(
    obs_id: str, code: tuple[str, str], value: float, unit: str | None, day: str
) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit is not None:
        quantity.update({"unit": unit, "system": UCUM, "code": unit})
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": day,
        "valueQuantity": quantity,
    }


def request(*renal: dict[str, Any]) -> dict[str, Any]:
    """A new start at 10 mg three times a day (no other card) for a man of 45 years and 90 kg."""
    prefetch = empty_prefetch()
    prefetch["patient"] = patient(birth_date="1981-06-01", gender="male")
    prefetch["weight"] = searchset(observation("obs-weight", ("29463-7", "Body weight"), 90, "kg", NEW))
    prefetch["renal"] = searchset(*renal)
    return order_sign(amifampridine_order(), prefetch=prefetch)


def cards_for(client: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(ORDER_SIGN, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def renal_card(cards: list[dict[str, Any]]) -> dict[str, Any]:
    assert [card["source"]["topic"]["code"] for card in cards] == ["renal-impairment"]
    return cards[0]


def old_clearance_95() -> dict[str, Any]:
    return observation("obs-crcl-old", CLEARANCE, 95, "mL/min", OLD)


def test_an_old_measured_clearance_does_not_hide_a_new_egfr_of_12(client: Any) -> None:
    card = renal_card(
        cards_for(
            client, request(old_clearance_95(), observation("obs-egfr", EGFR, 12, "mL/min/{1.73_m2}", NEW))
        )
    )
    assert card["indicator"] == "critical"
    assert "12 mL/min" in card["summary"] and "stand-in" in card["detail"] and NEW in card["detail"]


def test_an_old_measured_clearance_does_not_hide_a_new_serum_creatinine(client: Any) -> None:
    # Cockcroft-Gault: (140 − 45) × 90 kg / (72 × 6.0 mg/dL) ≈ 19.8 mL/min (male): impaired, not end-stage.
    card = renal_card(
        cards_for(client, request(old_clearance_95(), observation("obs-scr", CREATININE, 6.0, "mg/dL", NEW)))
    )
    assert card["indicator"] == "warning"
    assert "20 mL/min" in card["summary"] and "Cockcroft-Gault" in card["detail"]


@pytest.mark.parametrize("clearance_first", [True, False])
def test_on_the_same_day_the_measured_clearance_wins_over_an_egfr(client: Any, clearance_first: bool) -> None:
    renal = [
        observation("obs-crcl", CLEARANCE, 95, "mL/min", NEW),
        observation("obs-egfr", EGFR, 40, "mL/min/{1.73_m2}", NEW),
    ]
    assert cards_for(client, request(*(renal if clearance_first else renal[::-1]))) == []


def test_on_the_same_day_cockcroft_gault_wins_over_an_egfr(client: Any) -> None:
    # Cockcroft-Gault ≈ 119 mL/min from 1.0 mg/dL: normal, although the eGFR of the same day says 40.
    renal = [
        observation("obs-egfr", EGFR, 40, "mL/min/{1.73_m2}", NEW),
        observation("obs-scr", CREATININE, 1.0, "mg/dL", NEW),
    ]
    assert cards_for(client, request(*renal)) == []


def test_a_newer_egfr_wins_over_an_older_serum_creatinine(client: Any) -> None:
    renal = [
        observation("obs-scr", CREATININE, 1.0, "mg/dL", OLD),
        observation("obs-egfr", EGFR, 40, "mL/min/{1.73_m2}", NEW),
    ]
    card = renal_card(cards_for(client, request(*renal)))
    assert card["indicator"] == "warning" and "40 mL/min" in card["summary"]


def test_a_clearance_of_1_5_ml_per_s_is_90_ml_per_min_not_end_stage(client: Any) -> None:
    # 1.5 mL/s × 60 = 90 mL/min: the top of the label's 15-90 range, so the warning, never the critical card.
    card = renal_card(cards_for(client, request(observation("obs-crcl", CLEARANCE, 1.5, "mL/s", NEW))))
    assert card["indicator"] == "warning"
    assert "90 mL/min" in card["summary"] and "recorded as 1.5 mL/s" in card["detail"]


def test_a_clearance_of_1_6_ml_per_s_is_normal(client: Any) -> None:
    # 1.6 mL/s = 96 mL/min: no renal card (read as 1.6 mL/min it would be end-stage).
    assert cards_for(client, request(observation("obs-crcl", CLEARANCE, 1.6, "mL/s", NEW))) == []


@pytest.mark.parametrize("unit", ["ml/min", "mL/min/{1.73_m2}", "mL/min/1.73m2"])
def test_clearance_units_read_as_ml_per_min(client: Any, unit: str) -> None:
    card = renal_card(cards_for(client, request(observation("obs-crcl", CLEARANCE, 12, unit, NEW))))
    assert card["indicator"] == "critical" and "12 mL/min" in card["summary"]
    if "1.73" in unit:
        assert "per 1.73 m² body surface, read as mL/min" in card["detail"]


@pytest.mark.parametrize("unit", ["mg", None])
def test_a_clearance_in_another_unit_or_none_is_not_used(client: Any, unit: str | None) -> None:
    assert cards_for(client, request(observation("obs-crcl", CLEARANCE, 12, unit, NEW))) == []


def test_a_clearance_in_another_unit_falls_through_to_an_older_egfr(client: Any) -> None:
    renal = [
        observation("obs-crcl", CLEARANCE, 12, "mg", NEW),
        observation("obs-egfr", EGFR, 60, "mL/min/{1.73_m2}", EARLIER),
    ]
    card = renal_card(cards_for(client, request(*renal)))
    assert card["indicator"] == "warning"
    assert "60 mL/min" in card["summary"] and "stand-in" in card["detail"]
