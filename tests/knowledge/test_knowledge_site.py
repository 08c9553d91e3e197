"""A site's own codes (CDS_SITE_KNOWLEDGE): added to the shipped value sets, never replacing them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from helpers.builders import (
    ORDER_SIGN,
    SNOMED,
    amifampridine_order,
    empty_prefetch,
    epilepsy,
    order_sign,
    searchset,
    topics,
)
from helpers.site_knowledge import (
    CARDS,
    EXAMPLE_SITE,
    LOCAL_FORMULARY,
    LOCAL_PROBLEMS,
    firdapse_by_local_code,
    local_epilepsy,
    site_valueset,
    write_site,
)

from cds_service import cli
from cds_service.config import ConfigError, Settings
from cds_service.knowledge.loader import load_knowledge


def _with_epilepsy() -> dict:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy())
    return prefetch


def _with_local_epilepsy() -> dict:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(local_epilepsy())
    return prefetch


def test_an_order_coded_only_by_a_local_product_code_gets_its_cards_with_the_site_file(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    request = order_sign(firdapse_by_local_code(), prefetch=_with_epilepsy())
    # Shipped knowledge alone: the local code means nothing, the order is not amifampridine.
    assert make_app().test_client().post(ORDER_SIGN, json=request).get_json() == {"cards": []}

    site = write_site(tmp_path / "site", {"amifampridine": site_valueset(LOCAL_FORMULARY, "FIRD-10")})
    answer = make_app(CDS_SITE_KNOWLEDGE=str(site)).test_client().post(ORDER_SIGN, json=request)
    assert answer.status_code == 200
    assert "seizure-history" in topics(answer.get_json())


def test_a_local_problem_list_code_for_epilepsy_gives_the_seizure_history_card(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    request = order_sign(amifampridine_order(), prefetch=_with_local_epilepsy())
    assert "seizure-history" not in topics(make_app().test_client().post(ORDER_SIGN, json=request).get_json())

    site = write_site(tmp_path / "site", {"seizure-disorders": site_valueset(LOCAL_PROBLEMS, "PL-0345")})
    answer = make_app(CDS_SITE_KNOWLEDGE=str(site)).test_client().post(ORDER_SIGN, json=request)
    [card] = [c for c in answer.get_json()["cards"] if c["source"]["topic"]["code"] == "seizure-history"]
    assert card["indicator"] == "critical"


def test_the_shipped_example_directory_adds_both_codes_and_is_not_loaded_by_default(
    make_app: Callable[..., Flask],
) -> None:
    assert Settings.from_env({}).site_knowledge_dir is None
    client = make_app(CDS_SITE_KNOWLEDGE=str(EXAMPLE_SITE)).test_client()
    request = order_sign(firdapse_by_local_code(), prefetch=_with_local_epilepsy())
    assert "seizure-history" in topics(client.post(ORDER_SIGN, json=request).get_json())
    site = client.get("/readyz").get_json()["site"]
    assert site == {
        "valueSetsExtended": ["amifampridine", "seizure-disorders"],
        "topicsOff": [],
        "indicators": {},
    }


def test_a_site_file_cannot_replace_the_shipped_codes(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    # A site seizure-disorders file listing only its own code: the shipped SNOMED Epilepsy still matches.
    site = write_site(tmp_path / "site", {"seizure-disorders": site_valueset(LOCAL_PROBLEMS, "PL-0345")})
    client = make_app(CDS_SITE_KNOWLEDGE=str(site)).test_client()
    answer = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch=_with_epilepsy()))
    assert "seizure-history" in topics(answer.get_json())
    matcher = load_knowledge(CARDS, site).valueset("seizure-disorders")
    assert matcher.matches_code(SNOMED, "84757009") and matcher.matches_code(LOCAL_PROBLEMS, "PL-0345")


def test_a_site_file_that_removes_codes_is_refused(tmp_path: Path) -> None:
    resource = site_valueset(LOCAL_PROBLEMS, "PL-0345")
    resource["compose"]["exclude"] = [{"system": SNOMED, "concept": [{"code": "84757009"}]}]
    site = write_site(tmp_path / "site", {"seizure-disorders": resource})
    with pytest.raises(
        ConfigError, match=r"seizure-disorders\.valueset\.json: compose\.exclude is not allowed"
    ):
        _create(site)


def _create(site: Path) -> Flask:
    from cds_service.app import create_app

    return create_app(Settings.from_env({"CDS_AUTH": "off", "CDS_SITE_KNOWLEDGE": str(site)}))


BROKEN_SITES = {
    "not JSON": ({"amifampridine": "{not json"}, None, "amifampridine.valueset.json: cannot read JSON"),
    "not a ValueSet": (
        {"amifampridine": {"resourceType": "CodeSystem"}},
        None,
        "amifampridine.valueset.json: resourceType must be ValueSet",
    ),
    "a value set the service does not ship": (
        {"epilepsy-local": site_valueset(LOCAL_PROBLEMS, "PL-0345")},
        None,
        "epilepsy-local.valueset.json: the service ships no value set 'epilepsy-local'",
    ),
    "a concept without a code": (
        {"amifampridine": site_valueset(LOCAL_FORMULARY, "")},
        None,
        "amifampridine.valueset.json: a concept in include",
    ),
    "adds nothing": (
        {"amifampridine": {"resourceType": "ValueSet", "compose": {"include": []}}},
        None,
        "amifampridine.valueset.json: adds nothing",
    ),
    "a whole code system": (
        {
            "seizure-disorders": {
                "resourceType": "ValueSet",
                "compose": {"include": [{"system": "http://snomed.info/sct"}]},
            }
        },
        None,
        "seizure-disorders.valueset.json: compose.include[0] lists no concept and no filter",
    ),
    "site.yaml not YAML": ({}, "topics: [", "site.yaml: cannot read YAML"),
    "site.yaml unknown key": ({}, "valuesets: {}\n", "site.yaml: unknown key 'valuesets'"),
}


@pytest.mark.parametrize("case", list(BROKEN_SITES), ids=list(BROKEN_SITES))
def test_a_broken_site_file_stops_the_start_with_one_line_naming_it(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    valuesets, site_yaml, message = BROKEN_SITES[case]
    site = write_site(tmp_path / "site", valuesets, site_yaml)
    with pytest.raises(ConfigError) as raised:
        _create(site)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert str(site) in str(raised.value)

    assert cli.main(["knowledge", "check", "--site", str(site)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err


def test_a_file_the_service_would_not_read_is_refused(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {"amifampridine": site_valueset(LOCAL_FORMULARY, "FIRD-10")})
    (site / "topics").mkdir()
    (site / "topics" / "seizure-history.yaml").write_text("topic: seizure-history\n")
    with pytest.raises(ConfigError, match=r"topics/seizure-history\.yaml: not a site knowledge file"):
        _create(site)
    (site / "topics" / "seizure-history.yaml").unlink()
    (site / "NOTES.md").write_text("Reviewed by P&T on 2026-11-30.\n")  # notes for people are fine
    assert _create(site).test_client().get("/readyz").status_code == 200


def test_a_missing_site_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CDS_SITE_KNOWLEDGE .* is not a directory"):
        Settings.from_env({"CDS_SITE_KNOWLEDGE": str(tmp_path / "absent")})


def test_site_names_are_added_for_text_matching(tmp_path: Path) -> None:
    resource = {
        "resourceType": "ValueSet",
        "extension": [
            {
                "url": "https://amifampridine-cds.github.io/fhir/StructureDefinition/match-text",
                "valueString": "Amifa-Local",
            }
        ],
    }
    site = write_site(tmp_path / "site", {"amifampridine": resource})
    matcher = load_knowledge(CARDS, site).valueset("amifampridine")
    assert matcher.find_name("AMIFA-LOCAL 10 mg tab") == "AMIFA-LOCAL"
    assert matcher.find_name("Firdapse 10 mg") == "Firdapse"  # the shipped names are still there
    assert json.loads((CARDS / "valuesets" / "amifampridine.valueset.json").read_text())["url"] == matcher.url
