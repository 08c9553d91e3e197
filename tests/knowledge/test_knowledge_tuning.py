"""Site tuning (site.yaml in CDS_SITE_KNOWLEDGE): a topic turned off or shown with another indicator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from helpers.builders import (
    ORDER_SIGN,
    amifampridine_order,
    empty_prefetch,
    epilepsy,
    order_sign,
    searchset,
    topics,
)
from helpers.site_knowledge import CARDS, write_site

from cds_service import cli
from cds_service.config import ConfigError
from cds_service.integration.offline import evaluate_request
from cds_service.knowledge.loader import load_knowledge
from cds_service.runtime import Runtime


def _epilepsy_and_pyridostigmine() -> dict:
    """An amifampridine order for a patient with epilepsy who takes pyridostigmine."""
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy())
    prefetch["medications"] = searchset(
        {
            "resourceType": "MedicationRequest",
            "id": "current-pyr",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/amf-test-patient"},
            "medicationCodeableConcept": {"text": "Pyridostigmine bromide 60 MG Oral Tablet"},
        }
    )
    return order_sign(amifampridine_order(), prefetch=prefetch)


def _cards(app: Flask) -> dict[str, str]:
    answer = app.test_client().post(ORDER_SIGN, json=_epilepsy_and_pyridostigmine())
    assert answer.status_code == 200
    return {card["source"]["topic"]["code"]: card["indicator"] for card in answer.get_json()["cards"]}


def test_shipped_behaviour_without_tuning(make_app: Callable[..., Flask]) -> None:
    cards = _cards(make_app())
    assert cards["seizure-history"] == "critical" and cards["cholinergic-drug"] == "warning"


def test_a_topic_turned_off_gives_no_card_and_readyz_says_so(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    site = write_site(tmp_path / "site", site_yaml="topics:\n  cholinergic-drug:\n    enabled: false\n")
    app = make_app(CDS_SITE_KNOWLEDGE=str(site))
    cards = _cards(app)
    assert "cholinergic-drug" not in cards and "seizure-history" in cards
    assert app.test_client().get("/readyz").get_json()["site"]["topicsOff"] == ["cholinergic-drug"]


def test_an_indicator_set_by_the_site_is_the_cards_indicator(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    site = write_site(
        tmp_path / "site",
        site_yaml="topics:\n  cholinergic-drug:\n    indicator: info\n"
        "  seizure-history:\n    indicator: warning\n",
    )
    app = make_app(CDS_SITE_KNOWLEDGE=str(site))
    cards = _cards(app)
    assert cards["cholinergic-drug"] == "info" and cards["seizure-history"] == "warning"
    ready = app.test_client().get("/readyz").get_json()
    assert ready["site"]["indicators"] == {"cholinergic-drug": "info", "seizure-history": "warning"}


def test_a_variant_indicator_applies_to_that_variant_only(tmp_path: Path) -> None:
    site = write_site(
        tmp_path / "site", site_yaml="topics:\n  seizure-history:\n    variants:\n      febrile: info\n"
    )
    topic = load_knowledge(CARDS, site).topic("seizure-history")
    assert topic.indicator == "critical" and topic.variant("febrile").indicator == "info"


def test_a_contraindication_is_turned_off_only_with_the_second_setting(
    make_app: Callable[..., Flask], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = write_site(tmp_path / "site", site_yaml="topics:\n  seizure-history:\n    enabled: false\n")
    with pytest.raises(ConfigError, match="acknowledge_contraindication_off: true") as raised:
        make_app(CDS_SITE_KNOWLEDGE=str(site))
    assert "site.yaml: topics.seizure-history is a contraindication" in str(raised.value)
    assert cli.main(["knowledge", "check", "--site", str(site)]) == 1
    assert "acknowledge_contraindication_off" in capsys.readouterr().err

    write_site(
        site,
        site_yaml="topics:\n  seizure-history:\n    enabled: false\n"
        "    acknowledge_contraindication_off: true\n",
    )
    cards = _cards(make_app(CDS_SITE_KNOWLEDGE=str(site)))
    assert "seizure-history" not in cards and "cholinergic-drug" in cards


def test_a_turned_off_topic_is_still_found_by_its_rule(tmp_path: Path) -> None:
    # The finding stays in the outcome (--explain shows it); only the card is left out.
    site = write_site(tmp_path / "site", site_yaml="topics:\n  cholinergic-drug:\n    enabled: false\n")
    from cds_service.config import Settings

    runtime = Runtime.start(Settings.from_env({"CDS_SITE_KNOWLEDGE": str(site)}))
    evaluation = evaluate_request(
        _epilepsy_and_pyridostigmine(), runtime.knowledge, runtime.templates, options=runtime.options
    )
    assert "cholinergic-drug" in {finding.topic for finding in evaluation.outcome.findings}
    assert "cholinergic-drug" not in topics({"cards": evaluation.outcome.cards})


REFUSED = {
    "data-unavailable off": (
        "topics:\n  data-unavailable:\n    enabled: false\n",
        "topics.data-unavailable cannot be turned off",
    ),
    "unknown topic": (
        "topics:\n  seizure-hx:\n    enabled: false\n",
        "topics.seizure-hx: no such card topic",
    ),
    "unknown indicator": (
        "topics:\n  titration-step:\n    indicator: urgent\n",
        "must be one of info, warning",
    ),
    "unknown variant": (
        "topics:\n  seizure-history:\n    variants:\n      adult: info\n",
        "has no variant 'adult'",
    ),
    "unknown key": ("topics:\n  titration-step:\n    enable: false\n", "unknown key 'enable'"),
    "enabled not a boolean": (
        "topics:\n  titration-step:\n    enabled: 'no'\n",
        "enabled must be true or false",
    ),
    "acknowledgement on another topic": (
        "topics:\n  titration-step:\n    enabled: false\n    acknowledge_contraindication_off: true\n",
        "acknowledge_contraindication_off only goes with enabled: false",
    ),
    "indicator on a topic turned off": (
        "topics:\n  titration-step:\n    enabled: false\n    indicator: info\n",
        "is turned off: an indicator for it would never show",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_a_wrong_site_yaml_stops_the_start(case: str, make_app: Callable[..., Flask], tmp_path: Path) -> None:
    text, message = REFUSED[case]
    site = write_site(tmp_path / "site", site_yaml=text)
    with pytest.raises(ConfigError) as raised:
        make_app(CDS_SITE_KNOWLEDGE=str(site))
    assert message in str(raised.value) and str(site / "site.yaml") in str(raised.value)
    assert "\n" not in str(raised.value)
