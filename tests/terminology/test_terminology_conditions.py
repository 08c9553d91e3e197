"""The condition value sets recognise seizures, liver and kidney disease coded the way EHRs and Synthea
code them: through the HTTP API for each class of code the old lists missed, over every Condition in the
shared test data, and structurally (every code names its public sources; fewer than two means verify)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers.builders import (
    ICD10CM,
    ORDER_SIGN,
    PATIENT_ID,
    SNOMED,
    amifampridine_order,
    empty_prefetch,
    order_sign,
    searchset,
)

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.valuesets import SOURCE_URL, VERIFY_URL

ROOT = Path(__file__).resolve().parents[2]
VALUESETS = ROOT / "cards" / "valuesets"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
OWNED = (
    "seizure-disorders",
    "febrile-seizures",
    "liver-conditions",
    "kidney-conditions",
    "end-stage-renal-disease",
)
# The shared folder lies beside the repository (a fresh clone in CI, ../shared).
SHARED_TEST_DATA = ROOT.parent / "shared" / "test-data"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    settings = Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    return create_app(settings).test_client()


def condition(system: str, code: str, display: str | None = None, **extra: Any) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    resource = {
        "resourceType": "Condition",
        "id": f"cond-{code.replace('.', '-')}",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [coding]},
    }
    resource.update(extra)
    return resource


def cards_for(client: FlaskClient, *conditions: dict[str, Any]) -> dict[str, str]:
    """Topic -> indicator of the cards for a new amifampridine order with these conditions on record."""
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(*conditions)
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch=prefetch))
    assert response.status_code == 200, response.get_data(as_text=True)
    return {card["source"]["topic"]["code"]: card["indicator"] for card in response.get_json()["cards"]}


# ---------------------------------------------------------------- through the HTTP API


@pytest.mark.parametrize(
    ("system", "code", "display"),
    [
        # "History of" situations, what problem lists hold (Synthea 3.x and 4.x).
        (SNOMED, "703151001", "History of single seizure (situation)"),
        (SNOMED, "1290882004", "History of seizure (situation)"),
        # Common SNOMED CT disorders that were not among the seven listed codes.
        (SNOMED, "230381009", "Focal epilepsy (disorder)"),
        (SNOMED, "193000002", "Temporal lobe epilepsy (disorder)"),
        (SNOMED, "6204001", "Juvenile myoclonic epilepsy"),
        # Epilepsy with febrile seizures is epilepsy: critical, not the febrile warning.
        (SNOMED, "784372002", "Familial mesial temporal lobe epilepsy with febrile seizures (disorder)"),
        # "Epilepsy resolved" (NHS QOF refset): resolved epilepsy is still a history of seizures.
        (SNOMED, "162658001", "Epilepsy resolved"),
        # Legacy ICD-9-CM records.
        (ICD9CM, "345.90", "Epilepsy, unspecified, without mention of intractable epilepsy"),
        (ICD9CM, "78039", "Other convulsions"),
    ],
)
def test_seizure_history_is_critical(client: FlaskClient, system: str, code: str, display: str) -> None:
    assert cards_for(client, condition(system, code, display)).get("seizure-history") == "critical"


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (SNOMED, "41497008"),
        (SNOMED, "230432008"),
        (ICD10CM, "R56.01"),
        (ICD9CM, "780.31"),
        (ICD9CM, "780.32"),
    ],
)
def test_febrile_seizures_only_give_the_warning(client: FlaskClient, system: str, code: str) -> None:
    assert cards_for(client, condition(system, code)).get("seizure-history") == "warning"


def test_febrile_seizure_with_epilepsy_stays_critical(client: FlaskClient) -> None:
    cards = cards_for(client, condition(SNOMED, "41497008"), condition(ICD9CM, "345.10"))
    assert cards.get("seizure-history") == "critical"


@pytest.mark.parametrize(
    ("system", "code", "display"),
    [
        (SNOMED, "420054005", "Alcoholic cirrhosis (disorder)"),  # alcoholic cirrhosis, SNOMED CT only
        (SNOMED, "235875008", "Alcoholic hepatitis (disorder)"),
        (SNOMED, "128302006", "Chronic hepatitis C (disorder)"),  # Synthea's HIV baseline module
        (SNOMED, "235884008", "Fulminant hepatic failure (disorder)"),
        (ICD10CM, "K76.82", "Hepatic encephalopathy"),  # new in ICD-10-CM FY2023
        (ICD10CM, "K74.02", "Hepatic fibrosis, advanced fibrosis"),  # new in ICD-10-CM FY2023
        (ICD10CM, "K70.11", "Alcoholic hepatitis with ascites"),
        (ICD10CM, "K71.7", "Toxic liver disease with fibrosis and cirrhosis of liver"),
        (ICD10CM, "B18.2", "Chronic viral hepatitis C"),
        (ICD9CM, "571.2", "Alcoholic cirrhosis of liver"),
        (ICD9CM, "572.2", "Hepatic encephalopathy"),
    ],
)
def test_liver_disease_means_hepatic_impairment(
    client: FlaskClient, system: str, code: str, display: str
) -> None:
    assert "hepatic-impairment" in cards_for(client, condition(system, code, display))


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10CM, "K76.0"),  # fatty liver: the fixture hepatic-fatty-liver expects no card
        (ICD10CM, "K70.0"),  # alcoholic fatty liver
        (ICD10CM, "K75.81"),  # NASH
        (SNOMED, "197315008"),  # Non-alcoholic fatty liver
        (SNOMED, "50325005"),  # Alcoholic fatty liver
        (ICD9CM, "571.8"),  # other chronic nonalcoholic liver disease (where NAFLD is coded)
    ],
)
def test_fatty_liver_alone_is_not_hepatic_impairment(client: FlaskClient, system: str, code: str) -> None:
    assert "hepatic-impairment" not in cards_for(client, condition(system, code))


@pytest.mark.parametrize(
    ("system", "code", "display"),
    [
        (SNOMED, "428982002", "Dependence on hemodialysis due to end stage renal disease (finding)"),
        (SNOMED, "428937001", "Dependence on peritoneal dialysis due to end stage renal disease (finding)"),
        (SNOMED, "105502003", "Dependence on renal dialysis (finding)"),
        (SNOMED, "236435004", "End stage renal failure on dialysis (disorder)"),
        (SNOMED, "714152005", "Chronic kidney disease stage 5 on dialysis (disorder)"),
        (ICD10CM, "Z49.31", "Encounter for adequacy testing for hemodialysis"),
        (ICD10CM, "I12.0", "Hypertensive chronic kidney disease with stage 5 CKD or end stage renal disease"),
        (
            SNOMED,
            "950291000000103",
            "Chronic kidney disease with GFR category G5 and albuminuria category A2",
        ),
        (ICD9CM, "V45.11", "Renal dialysis status"),
        (ICD9CM, "585.6", "End stage renal disease"),
    ],
)
def test_esrd_and_dialysis_are_critical(client: FlaskClient, system: str, code: str, display: str) -> None:
    assert cards_for(client, condition(system, code, display)).get("renal-impairment") == "critical"


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (SNOMED, "700379002"),
        (SNOMED, "431856006"),
        (ICD10CM, "I12.9"),
        (ICD9CM, "585.3"),
        (ICD9CM, "584.9"),
        # WHO ICD-10 I12.0 is "hypertensive renal disease with renal failure", not ESRD as in ICD-10-CM.
        (ICD10, "I12.0"),
    ],
)
def test_ckd_and_acute_kidney_failure_are_a_warning(client: FlaskClient, system: str, code: str) -> None:
    assert cards_for(client, condition(system, code)).get("renal-impairment") == "warning"


# ---------------------------------------------------------------- the shared test data

# Every Condition or AllergyIntolerance coding in ../shared/test-data that denotes a concept above, with the
# value sets that must recognise it. Every other coding there must be recognised by none of them.
EXPECTED_IN_TEST_DATA: dict[tuple[str, str], set[str]] = {
    (ICD10CM, "N18.32"): {"kidney-conditions"},  # carebundle-ckd3.json: Chronic kidney disease, stage 3b
}


def _resources(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("resourceType") in {"Condition", "AllergyIntolerance"}:
            yield node
        for child in node.values():
            yield from _resources(child)
    elif isinstance(node, list):
        for child in node:
            yield from _resources(child)


def _test_data_codings() -> list[tuple[str, str, str]]:
    if not SHARED_TEST_DATA.is_dir():
        pytest.skip(f"the team's shared test data is not at {SHARED_TEST_DATA}")
    files = sorted(SHARED_TEST_DATA.glob("synthea/*.json.gz"))
    files += sorted(SHARED_TEST_DATA.glob("carebundle/*.json"))
    files += sorted(SHARED_TEST_DATA.glob("sandbox-requests/*.json"))
    found = []
    for path in files:
        raw = path.read_bytes()
        document = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
        for resource in _resources(document):
            for coding in (resource.get("code") or {}).get("coding") or []:
                found.append((path.name, coding.get("system", ""), coding.get("code", "")))
    return found


def test_every_condition_in_the_shared_test_data_is_recognised_as_expected() -> None:
    knowledge = load_knowledge(ROOT / "cards")
    matchers = {name: knowledge.valueset(name) for name in OWNED}
    codings = _test_data_codings()
    assert len(codings) >= 30, "the shared test data should hold dozens of coded conditions"
    seen = set()
    for filename, system, code in codings:
        recognised = {name for name, matcher in matchers.items() if matcher.matches_code(system, code)}
        expected = EXPECTED_IN_TEST_DATA.get((system, code), set())
        assert recognised == expected, f"{filename}: {system}|{code} recognised by {recognised or 'none'}"
        seen.add((system, code))
    assert set(EXPECTED_IN_TEST_DATA) <= seen, "an expected coding is no longer in the shared test data"


# ---------------------------------------------------------------- structure of the files


def _coded_elements(name: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    resource = json.loads((VALUESETS / f"{name}.valueset.json").read_text(encoding="utf-8"))
    for include in resource["compose"]["include"]:
        for concept in include.get("concept", []):
            yield include["system"], concept["code"], concept
        for flt in include.get("filter", []):
            yield include["system"], f"prefix {flt['value']}", flt


@pytest.mark.parametrize("name", OWNED)
def test_every_code_names_its_sources_and_single_sourced_ones_are_verify(name: str) -> None:
    elements = list(_coded_elements(name))
    assert elements
    for system, code, element in elements:
        extensions = element.get("extension", [])
        sources = [e["valueString"] for e in extensions if e["url"] == SOURCE_URL]
        verify = any(e["url"] == VERIFY_URL and e.get("valueBoolean") is True for e in extensions)
        assert sources, f"{name}: {system}|{code} has no source"
        assert all(s.strip() for s in sources), f"{name}: {system}|{code} has an empty source"
        assert len(set(sources)) == len(sources), f"{name}: {system}|{code} cites a source twice"
        if len(sources) < 2:
            assert verify, f"{name}: {system}|{code} has one source and no verify"
        if "display" in element:
            assert element["display"].strip()


@pytest.mark.parametrize("name", OWNED)
def test_no_code_is_listed_twice(name: str) -> None:
    keys = [(system, code) for system, code, _ in _coded_elements(name)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", OWNED)
def test_files_are_written_as_the_build_script_writes_them(name: str) -> None:
    path = VALUESETS / f"{name}.valueset.json"
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert "scripts/terminology/conditions.py" in json.loads(text)["purpose"]
