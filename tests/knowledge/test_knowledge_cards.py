"""cards/: every topic has texts and override reasons, code lists carry provenance and verify marks,
and the dose table parses for every label version."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cds_service.knowledge.classify import MedicationFacts, classify
from cds_service.knowledge.dose_table import CHILD_UNDER_45KG, STANDARD, parse_dose_table
from cds_service.knowledge.loader import KnowledgeError, load_knowledge
from cds_service.knowledge.valuesets import SOURCE_URL, VERIFY_URL

ROOT = Path(__file__).resolve().parents[2]
CARDS = ROOT / "cards"
KNOWLEDGE = load_knowledge(CARDS)
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def test_every_topic_of_the_codesystem_has_a_definition() -> None:
    codes = {c["code"] for c in json.loads((CARDS / "card-topics.codesystem.json").read_text())["concept"]}
    assert set(KNOWLEDGE.topics) == codes
    for topic in KNOWLEDGE.topics.values():
        assert topic.section, topic.topic
        assert topic.indicator == "info" or topic.override_reasons


def test_dose_table_2024_and_pre_2024() -> None:
    current = parse_dose_table(KNOWLEDGE.data["dose-caps"], "2024-05")
    assert (current.row(STANDARD).max_single_mg, current.row(STANDARD).max_daily_mg) == (20, 100)
    assert (current.row(CHILD_UNDER_45KG).max_single_mg, current.row(CHILD_UNDER_45KG).max_daily_mg) == (
        10,
        50,
    )
    assert current.row(STANDARD).initial_low_mg == 15 and current.row(STANDARD).initial_high_mg == 30
    assert current.row(CHILD_UNDER_45KG).titration_step_mg == 2.5
    assert (current.child_weight_split_kg, current.child_age_below_years, current.minimum_age_years) == (
        45,
        17,
        6,
    )
    older = parse_dose_table(KNOWLEDGE.data["dose-caps"], "pre-2024")
    assert older.row(STANDARD).max_daily_mg == 80 and older.row(CHILD_UNDER_45KG).max_daily_mg == 40


def test_dose_table_rejects_unknown_version_and_broken_numbers() -> None:
    with pytest.raises(KnowledgeError, match="not one of"):
        parse_dose_table(KNOWLEDGE.data["dose-caps"], "2031-01")
    broken = copy.deepcopy(KNOWLEDGE.data["dose-caps"])
    broken["versions"]["2024-05"]["standard"]["max_daily_mg"] = "a lot"
    with pytest.raises(KnowledgeError, match="max_daily_mg"):
        parse_dose_table(broken, "2024-05")
    unsafe = copy.deepcopy(KNOWLEDGE.data["dose-caps"])
    unsafe["suggested_regimens"]["lowest_start"]["standard"]["mg_per_dose"] = 30
    with pytest.raises(KnowledgeError, match="exceeds its caps"):
        parse_dose_table(unsafe, "2024-05")


@pytest.mark.parametrize("path", sorted((CARDS / "valuesets").glob("*.valueset.json")), ids=lambda p: p.stem)
def test_valuesets_carry_provenance(path: Path) -> None:
    resource = json.loads(path.read_text())
    assert resource["url"].endswith("/" + resource["id"])
    assert resource["purpose"] and resource["description"]


def test_codes_the_reference_marks_verify_carry_the_mark() -> None:
    cholinergic = KNOWLEDGE.valueset("cholinergic-drugs")
    seizure = KNOWLEDGE.valueset("seizure-threshold-lowering-drugs")
    for code in ("183379", "7315", "8328"):  # rivastigmine, neostigmine, pilocarpine
        assert (RX, code) in cholinergic.unverified
    for code in ("2403", "51272", "6754", "10438", "5690"):
        assert (RX, code) in seizure.unverified
    assert (RX, "36437") not in seizure.unverified  # sertraline is confirmed
    raw = json.loads((CARDS / "valuesets" / "cholinergic-drugs.valueset.json").read_text())
    marked = [c for inc in raw["compose"]["include"] for c in inc.get("concept", []) if c.get("extension")]
    # A concept's extensions are its sources and the verify mark, nothing else.
    assert all(ext["url"] in {VERIFY_URL, SOURCE_URL} for c in marked for ext in c["extension"])


@pytest.mark.parametrize(
    ("text", "drug_class"),
    [
        ("sertraline 50 MG Oral Tablet", "seizure-threshold-lowering-drugs"),
        (
            "Bupropion Hydrochloride 150 MG 12HR Extended Release Oral Tablet",
            "seizure-threshold-lowering-drugs",
        ),
        ("lithium carbonate 300 MG Oral Capsule", "seizure-threshold-lowering-drugs"),
        ("Pyridostigmine Bromide 60 MG Oral Tablet", "cholinergic-drugs"),
        ("donepezil hydrochloride 10 MG Oral Tablet [Aricept]", "cholinergic-drugs"),
        ("dalfampridine 10 MG 12HR Extended Release Oral Tablet", "other-aminopyridines"),
        ("Ampyra 10 MG", "other-aminopyridines"),
        ("3,4-diaminopyridine 10 mg capsule (compounded)", "amifampridine"),
        ("RUZURGI 10 MG Oral Tablet", "amifampridine"),
    ],
)
def test_product_level_names_classify(text: str, drug_class: str) -> None:
    assert classify(MedicationFacts((), (text,), None), KNOWLEDGE) == frozenset({drug_class})


@pytest.mark.parametrize(
    ("system", "code", "drug_class"),
    [
        ("http://www.whocc.no/atc", "N06DA02", "cholinergic-drugs"),
        ("http://www.whocc.no/atc", "N07AB02", "cholinergic-drugs"),  # class fallback (bethanechol)
        ("http://www.whocc.no/atc", "N06AA09", "seizure-threshold-lowering-drugs"),
        ("http://www.whocc.no/atc", "J01MA06", "seizure-threshold-lowering-drugs"),  # any fluoroquinolone
        (RX, "42347", "seizure-threshold-lowering-drugs"),
        ("http://hl7.org/fhir/sid/ndc", "69616-211-06", "amifampridine"),
        ("http://www.whocc.no/atc", "N07XX07", "other-aminopyridines"),
    ],
)
def test_codes_classify(system: str, code: str, drug_class: str) -> None:
    facts = MedicationFacts(({"system": system, "code": code},), (), None)
    assert classify(facts, KNOWLEDGE) == frozenset({drug_class})


def test_unrelated_drugs_do_not_classify() -> None:
    for text in (
        "naproxen sodium 220 MG Oral Tablet",
        "warfarin sodium 5 MG Oral Tablet",
        "mirtazapine 15 MG",
    ):
        assert classify(MedicationFacts((), (text,), None), KNOWLEDGE) == frozenset()
