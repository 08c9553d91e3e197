"""Clinical review items 7 and 8 through the HTTP API: a NAT2 result is read from NAT2's own diplotype (not
the first gene of a panel) and a negated "slow acetylator" is not a poor metabolizer; seizure-threshold
drugs ordered by brand name (Zoloft, Wellbutrin, ...) are recognised."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from helpers.builders import topics
from helpers.fixture_calls import cards_for, make_client, request_for, with_nat2

NAT2 = "nat2-poor-metabolizer"
SEIZURE = "seizure-threshold-drug"
LOINC = "http://loinc.org"
PANEL = {"coding": [{"system": LOINC, "code": "51969-4", "display": "Genetic analysis report"}]}
GENOTYPE = {"system": LOINC, "code": "84413-4", "display": "Genotype display name"}
GENE_STUDIED_NAT2 = {
    "code": {"coding": [{"system": LOINC, "code": "48018-6", "display": "Gene studied [ID]"}]},
    "valueCodeableConcept": {
        "coding": [{"system": "http://www.genenames.org", "code": "HGNC:7646", "display": "NAT2"}]
    },
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_client(tmp_path_factory.mktemp("data"))


def with_active_drug(text: str) -> dict[str, Any]:
    """The sertraline fixture with the active co-medication written only as free text."""
    request = copy.deepcopy(request_for("seizure-threshold-sertraline"))
    (entry,) = request["prefetch"]["medications"]["entry"]
    entry["resource"]["medicationCodeableConcept"] = {"text": text}
    return request


# --- NAT2: whose diplotype -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Pharmacogenomic panel: CYP2D6 *4/*4 (poor metabolizer); NAT2 *5/*6 (slow acetylator)",
        "Pharmacogenomic panel: NAT2 *5/*6 (slow acetylator); CYP2D6 *4/*4 (poor metabolizer)",  # control
        "CYP2D6 *1/*1; NAT2*5B/*6A",
        "CYP2D6 *4/*4; NAT2 genotype: *5/*6",
    ],
)
def test_a_panel_is_read_by_the_nat2_diplotype_whatever_comes_first(client: Any, value: str) -> None:
    assert topics(cards_for(client, with_nat2(code=PANEL, valueString=value))) == [NAT2]


def test_another_genes_slow_diplotype_is_not_read_as_nat2(client: Any) -> None:
    request = with_nat2(
        code=PANEL, valueString="CYP2D6 *5/*6 (poor metabolizer); NAT2 *4/*4 (rapid acetylator)"
    )
    assert NAT2 not in topics(cards_for(client, request))


def test_a_panel_of_components_is_read_by_the_nat2_component(client: Any) -> None:
    components = [
        {"code": {"text": "CYP2D6 genotype"}, "valueString": "*4/*4"},
        {"code": {"text": "NAT2 genotype"}, "valueString": "*5/*6"},
    ]
    assert topics(cards_for(client, with_nat2(code=PANEL, component=components))) == [NAT2]


# --- NAT2: negated phrases -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "NAT2 genotyping: no slow acetylator alleles detected",
        "NAT2: not a poor metabolizer",
        "NAT2 genotyping negative for slow acetylator alleles",
        "NAT2 result without slow acetylator alleles",
    ],
)
def test_a_negated_poor_phrase_raises_no_card(client: Any, value: str) -> None:
    assert NAT2 not in topics(cards_for(client, with_nat2(code=PANEL, valueString=value)))


@pytest.mark.parametrize(
    "value",
    [
        "NAT2 genotyping: slow acetylator",
        "No CYP2D6 variants found; NAT2: slow acetylator",  # the negation belongs to the other clause
    ],
)
def test_a_plain_poor_phrase_still_raises_the_card(client: Any, value: str) -> None:
    assert topics(cards_for(client, with_nat2(code=PANEL, valueString=value))) == [NAT2]


def test_an_id_that_mentions_nat2_does_not_make_a_result_nat2s(client: Any) -> None:
    request = with_nat2(code={"coding": [GENOTYPE], "text": "CYP2D6"}, valueString="poor metabolizer")
    request["prefetch"]["nat2"]["entry"][0]["resource"]["id"] = "amf-nat2-genotype-5-6-obs-2"
    assert NAT2 not in topics(cards_for(client, request))


# --- NAT2: the shapes that were read before are read the same way --------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"code": {"coding": [GENOTYPE], "text": "NAT2 genotype"}, "valueString": "*5/*5"}, [NAT2]),
        ({"code": {"coding": [GENOTYPE], "text": "NAT2"}, "valueString": "NAT2*6A/*7B"}, [NAT2]),
        ({"code": {"coding": [GENOTYPE], "text": "NAT2"}, "valueString": "NAT2*4/*4"}, []),
        ({"code": {"coding": [GENOTYPE], "text": "NAT2"}, "valueString": "NAT2*4/*99"}, []),
        ({"code": {"coding": [GENOTYPE], "text": "CYP2D6"}, "valueString": "poor metabolizer"}, []),
        (
            {
                "code": {"coding": [GENOTYPE]},
                "valueString": "*5/*6",
                "component": [GENE_STUDIED_NAT2],
            },
            [NAT2],
        ),
        (
            {
                "code": {"coding": [{"system": LOINC, "code": "53040-2"}]},
                "component": [GENE_STUDIED_NAT2],
                "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9657-3"}]},
            },
            [NAT2],
        ),
    ],
)
def test_existing_nat2_shapes_unchanged(client: Any, fields: dict[str, Any], expected: list[str]) -> None:
    assert topics(cards_for(client, with_nat2(**fields))) == expected


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        ("nat2-genotype-5-6", [NAT2]),
        ("nat2-genotype-4-5", []),
        ("nat2-legacy-slow", [NAT2]),
        ("nat2-poor-implication", [NAT2]),
        ("nat2-intermediate", []),
    ],
)
def test_nat2_fixtures_unchanged(client: Any, case_id: str, expected: list[str]) -> None:
    assert topics(cards_for(client, request_for(case_id))) == expected


# --- Seizure-threshold drugs by brand name -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Zoloft 50 mg tablet",
        "Wellbutrin XL 150 mg tablet",
        "Seroquel 25 mg tablet",
        "Ultram 50 mg tablet",
        "Lexapro 10 mg tablet",
    ],
)
def test_an_active_brand_name_drug_raises_the_seizure_threshold_card(client: Any, text: str) -> None:
    (card,) = cards_for(client, with_active_drug(text))
    assert card["source"]["topic"]["code"] == SEIZURE
    assert text.split()[0] in card["summary"]


def test_the_cholinergic_brand_control_still_works(client: Any) -> None:
    assert topics(cards_for(client, with_active_drug("Mestinon 60 mg tablet"))) == ["cholinergic-drug"]


def test_an_unrelated_brand_raises_no_card(client: Any) -> None:
    assert cards_for(client, with_active_drug("Lipitor 20 mg tablet")) == []
