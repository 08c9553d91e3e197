"""Drug orders coded the way EHRs send them: a product code (RxNorm SCD, NDC package) and nothing else.

Through the HTTP API, both directions of each interaction; over every MedicationRequest of the team's
shared test data; and over the drug ValueSets themselves (every code has a source, fewer than two sources
means verify, every RxNorm display names an ingredient of its class).
"""

from __future__ import annotations

import copy
import functools
import gzip
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers.builders import (
    ORDER_SIGN,
    PATIENT_ID,
    amifampridine_order,
    empty_prefetch,
    epilepsy,
    order_sign,
    searchset,
    topics,
)

from cds_service.knowledge.classify import classify as classify_facts
from cds_service.knowledge.classify import medication_facts
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.valuesets import MATCH_TEXT_URL, SOURCE_URL, VERIFY_URL

ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE = load_knowledge(ROOT / "cards")
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
DRUG_VALUESETS = (
    "amifampridine",
    "other-aminopyridines",
    "cholinergic-drugs",
    "seizure-threshold-lowering-drugs",
    "aminopyridine-allergens",
)


def coded_only(system: str, code: str) -> dict[str, Any]:
    """A medicationCodeableConcept with one coding: no display, no text."""
    return {"coding": [{"system": system, "code": code}]}


def amifampridine_by_code(system: str, code: str, status: str = "draft", order_id: str = "amf") -> dict:
    order = amifampridine_order(order_id)
    order["status"] = status
    order["medicationCodeableConcept"] = coded_only(system, code)
    return order


def other_drug(system: str, code: str, status: str, order_id: str = "other") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": "2026-11-01",
        "medicationCodeableConcept": coded_only(system, code),
    }


def post(client: FlaskClient, draft: dict[str, Any], **prefetch: dict[str, Any]) -> list[str]:
    body = order_sign(draft, prefetch={**empty_prefetch(), **prefetch})
    response = client.post(ORDER_SIGN, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return topics(response.get_json())


# ----------------------------------------------------------------------------- amifampridine by code


@pytest.mark.parametrize(
    "ndc",
    ["69616-211-03", "69616-211-08", "69616021104", "69616-0211-06"],
    ids=["package-03", "package-08", "11-digit", "5-4-2"],
)
def test_amifampridine_coded_only_by_ndc_package_gets_its_checks(client: FlaskClient, ndc: str) -> None:
    draft = amifampridine_by_code(NDC, ndc)
    assert "seizure-history" in post(client, draft, conditions=searchset(epilepsy()))


def test_an_unknown_code_alone_gets_no_amifampridine_checks(client: FlaskClient) -> None:
    # The contrast for the test above: the same draft with a code of another product is not ours.
    draft = amifampridine_by_code(NDC, "00093-0058-01")
    assert "seizure-history" not in post(client, draft, conditions=searchset(epilepsy()))


# ----------------------------------------------------------------------------- interacting drugs by code

INTERACTIONS = [
    pytest.param(RXNORM, "312941", "seizure-threshold-drug", id="sertraline-50mg-SCD"),
    pytest.param(RXNORM, "993503", "seizure-threshold-drug", id="bupropion-100mg-12hr-ER-SCD"),
    pytest.param(RXNORM, "153639", "seizure-threshold-drug", id="quetiapine-100mg-SBD-Seroquel"),
    pytest.param(RXNORM, "903857", "cholinergic-drug", id="pyridostigmine-60mg-SCD"),
    pytest.param(RXNORM, "997223", "cholinergic-drug", id="donepezil-10mg-SCD"),
    pytest.param(RXNORM, "897021", "aminopyridine-duplicate", id="dalfampridine-10mg-ER-SCD"),
]


@pytest.mark.parametrize(("system", "code", "topic"), INTERACTIONS)
def test_active_drug_coded_only_by_product_code_interacts_with_an_amifampridine_draft(
    client: FlaskClient, system: str, code: str, topic: str
) -> None:
    active = other_drug(system, code, "active")
    found = post(client, amifampridine_order(), medications=searchset(active))
    assert topic in found


@pytest.mark.parametrize(("system", "code", "topic"), INTERACTIONS)
def test_drafted_drug_coded_only_by_product_code_meets_amifampridine_active_by_ndc(
    client: FlaskClient, system: str, code: str, topic: str
) -> None:
    on_amifampridine = amifampridine_by_code(NDC, "69616-211-03", status="active", order_id="amf-active")
    found = post(client, other_drug(system, code, "draft"), medications=searchset(on_amifampridine))
    assert topic in found


def test_a_non_interacting_product_code_raises_no_interaction(client: FlaskClient) -> None:
    active = other_drug(RXNORM, "855332", "active")  # warfarin sodium 5 MG Oral Tablet
    found = post(client, amifampridine_order(), medications=searchset(active))
    assert not {"seizure-threshold-drug", "cholinergic-drug", "aminopyridine-duplicate"} & set(found)


# ----------------------------------------------------------------------------- the team's test data


def shared_test_data() -> Path:
    # In the main checkout ../shared is the team's folder; a worktree (wt/<name>) sits one level deeper.
    for parent in Path(__file__).resolve().parents[2:5]:
        candidate = parent / "shared" / "test-data"
        if candidate.is_dir():
            return candidate
    pytest.skip("the team's shared test data (../shared/test-data) is not present")


def medication_requests(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if value.get("resourceType") == "MedicationRequest":
            yield value
        for child in value.values():
            yield from medication_requests(child)
    elif isinstance(value, list):
        for child in value:
            yield from medication_requests(child)


def load(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


# Every RxNorm code ordered in ../shared/test-data, with the classes it must have. None of these
# patients is on an interacting drug, so every one must classify as nothing, by code and by name.
TEST_DATA_ORDERS: dict[str, frozenset[str]] = {
    "197361": frozenset(),  # amlodipine 5 MG Oral Tablet
    "310798": frozenset(),  # hydrochlorothiazide 25 MG Oral Tablet
    "316049": frozenset(),  # Hydrochlorothiazide 25 MG
    "861007": frozenset(),  # metformin hydrochloride 500 MG Oral Tablet
    "617310": frozenset(),  # atorvastatin 20 MG Oral Tablet
    "314076": frozenset(),  # lisinopril 10 MG Oral Tablet
    "197807": frozenset(),  # Ibuprofen 800 MG Oral Tablet
    "849574": frozenset(),  # Naproxen sodium 220 MG Oral Tablet
    "897718": frozenset(),  # Verapamil Hydrochloride 40 MG
    "197604": frozenset(),  # Digoxin 0.125 MG Oral Tablet
    "855332": frozenset(),  # Warfarin Sodium 5 MG Oral Tablet
    "904419": frozenset(),  # Alendronic acid 10 MG Oral Tablet
    "309362": frozenset(),  # Clopidogrel 75 MG Oral Tablet
    "705129": frozenset(),  # Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray
    "312961": frozenset(),  # Simvastatin 20 MG Oral Tablet
    "313782": frozenset(),  # Acetaminophen 325 MG Oral Tablet
}


def test_every_medication_request_of_the_shared_test_data_is_classified_as_listed() -> None:
    folder = shared_test_data()
    files = sorted(folder.glob("synthea/*.json.gz")) + sorted(folder.glob("carebundle/*.json"))
    files += sorted(folder.glob("sandbox-requests/*.json"))
    assert files, f"no test data under {folder}"
    seen: set[str] = set()
    for path in files:
        for order in medication_requests(load(path)):
            codings = (order.get("medicationCodeableConcept") or {}).get("coding") or []
            for coding in codings:
                code = coding.get("code")
                assert coding.get("system") == RXNORM and code in TEST_DATA_ORDERS, (path.name, coding)
                seen.add(code)
                expected = TEST_DATA_ORDERS[code]
                assert classify_facts(medication_facts(order), KNOWLEDGE) == expected, (path.name, code)
                bare = {**order, "medicationCodeableConcept": coded_only(RXNORM, code)}
                assert classify_facts(medication_facts(bare), KNOWLEDGE) == expected, (path.name, code)
    assert seen == set(TEST_DATA_ORDERS)


# ----------------------------------------------------------------------------- the ValueSets themselves


def valueset(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "cards" / "valuesets" / f"{name}.valueset.json").read_text(encoding="utf-8"))


def concepts(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for include in resource["compose"]["include"]:
        for concept in include.get("concept", []):
            yield include["system"], concept


@pytest.mark.parametrize("name", DRUG_VALUESETS)
def test_every_concept_has_a_source_and_fewer_than_two_sources_means_verify(name: str) -> None:
    for system, concept in concepts(valueset(name)):
        extensions = concept.get("extension", [])
        sources = [ext["valueString"] for ext in extensions if ext["url"] == SOURCE_URL]
        verify = [ext for ext in extensions if ext["url"] == VERIFY_URL]
        assert sources and all(s.strip() for s in sources), (system, concept["code"])
        assert len(sources) == len(set(sources)), (system, concept["code"])
        if len(sources) < 2:
            assert verify == [{"url": VERIFY_URL, "valueBoolean": True}], (system, concept["code"])


@pytest.mark.parametrize("name", DRUG_VALUESETS)
def test_no_code_is_listed_twice(name: str) -> None:
    listed = [(system, concept["code"]) for system, concept in concepts(valueset(name))]
    assert len(listed) == len(set(listed))


@pytest.mark.parametrize("name", DRUG_VALUESETS)
def test_every_rxnorm_display_names_an_ingredient_or_brand_of_its_class(name: str) -> None:
    resource = valueset(name)
    matcher = KNOWLEDGE.valueset(name)
    rxnorm = [concept for system, concept in concepts(resource) if system == RXNORM]
    for concept in rxnorm:
        assert matcher.find_name(concept["display"]), concept


def test_no_product_code_sits_in_two_drug_classes() -> None:
    owner: dict[tuple[str, str], str] = {}
    for name in DRUG_VALUESETS[:4]:
        for system, concept in concepts(valueset(name)):
            key = (system, concept["code"])
            assert key not in owner, (key, owner.get(key), name)
            owner[key] = name


def test_the_value_sets_now_hold_product_codes() -> None:
    # The gap of issue 14: an order coded by an SCD alone was invisible. Product codes are now listed.
    seizure = KNOWLEDGE.valueset("seizure-threshold-lowering-drugs")
    cholinergic = KNOWLEDGE.valueset("cholinergic-drugs")
    assert len(seizure.codes[RXNORM]) > 400 and len(cholinergic.codes[RXNORM]) > 40
    assert KNOWLEDGE.valueset("amifampridine").matches_code(NDC, "69616-211-03")


def test_match_text_names_are_kept() -> None:
    names = {
        ext["valueString"] for ext in valueset("amifampridine")["extension"] if ext["url"] == MATCH_TEXT_URL
    }
    assert {"amifampridine", "Firdapse", "Ruzurgi", "3,4-DAP"} <= names


# ----------------------------------------------------------------------------- the build script


@functools.cache
def build_script() -> Any:
    path = ROOT / "scripts" / "terminology" / "drugs.py"
    spec = importlib.util.spec_from_file_location("terminology_drugs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_script_maps_products_to_classes_by_whole_ingredient_words() -> None:
    drugs = build_script()
    assert drugs.classes_named("olanzapine 6 MG / fluoxetine 25 MG Oral Capsule") == {
        "seizure-threshold-lowering-drugs"
    }
    assert drugs.classes_named(
        "atropine sulfate 0.14 MG/ML / edrophonium chloride 10 MG/ML Injectable Solution"
    ) == {"cholinergic-drugs"}
    assert drugs.classes_named("levofloxacin 500 MG Oral Tablet") == {"seizure-threshold-lowering-drugs"}
    assert drugs.classes_named("mirtazapine 15 MG Oral Tablet") == set()  # an antidepressant, not listed
    assert drugs.classes_named("trazodone hydrochloride 50 MG Oral Tablet") == set()


def test_script_needs_two_independent_confirming_sources() -> None:
    drugs = build_script()
    concept = drugs.Concept("2403")
    concept.displays[drugs.CLINICAL_VERIFY_SOURCE] = "chlorpromazine"
    concept.displays[drugs.Source("VSAC 1 Antipsychotic (a)", "antipsychotic")] = "chlorpromazine"
    assert not concept.confirmed  # the reference only asks for it to be checked
    concept.displays[drugs.Source("VSAC 2 Antipsychotic (b)", "antipsychotic")] = "chlorpromazine"
    assert not concept.confirmed  # the same value set republished is not a second source
    concept.displays[drugs.Source("US Core allergy substance", "us core")] = "Chlorpromazine"
    assert concept.confirmed


def test_script_counts_a_republished_or_retitled_value_set_once() -> None:
    drugs = build_script()
    keys = drugs.independence_keys(
        {
            "VSAC 196.12.1213": {"Antidepressant Medication"},
            "VSAC 196.11.1530": {"Antidepressant Medication"},  # same title, new OID
            "VSAC 196.12.1523": {"Antipsychotic", "Potentially Harmful Antipsychotics for Older Adults"},
            "VSAC 1248.120": {"Potentially Harmful Antipsychotics for Older Adults"},
            "VSAC 526.3.1566": {"Adult Depression Medications"},
        }
    )
    assert keys["VSAC 196.12.1213"] == keys["VSAC 196.11.1530"]
    assert keys["VSAC 196.12.1523"] == keys["VSAC 1248.120"]
    assert len({keys["VSAC 196.12.1213"], keys["VSAC 196.12.1523"], keys["VSAC 526.3.1566"]}) == 3


def test_script_keeps_pharmacist_metadata_and_is_deterministic() -> None:
    drugs = build_script()
    current = valueset("cholinergic-drugs")
    parsed: dict[str, dict[str, Any]] = {}
    for system, concept in concepts(current):
        parsed.setdefault(system, {})[concept["code"]] = drugs.Concept(
            concept["code"], {drugs.CLINICAL_SOURCE: concept["display"]}
        )
    first = drugs.dump(drugs.build(copy.deepcopy(current), parsed))
    assert first == drugs.dump(drugs.build(copy.deepcopy(current), parsed))
    rebuilt = json.loads(first)
    assert {k: rebuilt[k] for k in ("url", "title", "description")} == {
        k: current[k] for k in ("url", "title", "description")
    }
    assert [i for i in rebuilt["compose"]["include"] if "filter" in i] == [
        i for i in current["compose"]["include"] if "filter" in i
    ]
