"""A damaged knowledge base stops the start with one line naming the file: create_app, ``cds-service
knowledge check`` and ``cds-service evaluate`` say the same."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.site_knowledge import CARDS, ROOT, cards_copy

from cds_service import cli
from cds_service.app import create_app
from cds_service.config import ConfigError, Settings
from cds_service.knowledge import requirements
from cds_service.rules import RULES


def _drop_phenotype_answers(cards: Path) -> str:
    path = cards / "nat2.yaml"
    text = path.read_text()
    path.write_text(re.sub(r"(?m)^phenotype_answers:\n(?:  .*\n)+", "", text))
    assert "LA9657-3" not in path.read_text()  # the regex did remove the table
    return "nat2.yaml: 'phenotype_answers' is missing"


def _delete_cholinergic_valueset(cards: Path) -> str:
    (cards / "valuesets" / "cholinergic-drugs.valueset.json").unlink()
    return "valuesets/cholinergic-drugs.valueset.json: missing"


def _delete_hepatic_topic(cards: Path) -> str:
    (cards / "topics" / "hepatic-impairment.yaml").unlink()
    return "topics/hepatic-impairment.yaml: missing"


def _codesystem_concept_without_topic(cards: Path) -> str:
    path = cards / "card-topics.codesystem.json"
    codesystem = json.loads(path.read_text())
    codesystem["concept"].append({"code": "qt-prolongation", "display": "QT prolongation"})
    path.write_text(json.dumps(codesystem))
    return "topics/qt-prolongation.yaml: missing (topic 'qt-prolongation' of card-topics.codesystem.json)"


def _topic_the_rules_produce_missing_from_codesystem(cards: Path) -> str:
    path = cards / "card-topics.codesystem.json"
    codesystem = json.loads(path.read_text())
    codesystem["concept"] = [c for c in codesystem["concept"] if c["code"] != "weight-needed"]
    path.write_text(json.dumps(codesystem))
    (cards / "topics" / "weight-needed.yaml").unlink()
    return "card-topics.codesystem.json: topic 'weight-needed' is missing (the rules produce it)"


def _dose_caps_key_missing(cards: Path) -> str:
    path = cards / "dose-caps.yaml"
    path.write_text(re.sub(r"(?m)^minimum_age_years:.*\n", "", path.read_text()))
    return "dose-caps.yaml: 'minimum_age_years' is missing"


def _nat2_not_yaml(cards: Path) -> str:
    (cards / "nat2.yaml").write_text("gene: [\n")
    return "nat2.yaml: cannot read YAML"


def _sentence_a_rule_uses_deleted(cards: Path) -> str:
    path = cards / "topics" / "weight-needed.yaml"
    text = path.read_text()
    path.write_text(re.sub(r"(?m)^  no-weight:.*\n", "", text))
    assert "no-weight" not in path.read_text()
    return "topics/weight-needed.yaml: sentences.no-weight is missing (used by the weight-needed rule)"


def _suggestion_label_deleted(cards: Path) -> str:
    path = cards / "topics" / "starting-dose.yaml"
    path.write_text(re.sub(r"(?m)^suggestions:\n(?:  .*\n)+", "", path.read_text()))
    return "topics/starting-dose.yaml: suggestions.initial-range is missing (used by the starting-dose rule)"


DAMAGES: dict[str, Callable[[Path], str]] = {
    "a sentence a rule uses deleted": _sentence_a_rule_uses_deleted,
    "a suggestion label deleted": _suggestion_label_deleted,
    "nat2.yaml without phenotype_answers": _drop_phenotype_answers,
    "cholinergic value set deleted": _delete_cholinergic_valueset,
    "hepatic-impairment topic deleted": _delete_hepatic_topic,
    "CodeSystem concept without a topic file": _codesystem_concept_without_topic,
    "topic a rule produces missing": _topic_the_rules_produce_missing_from_codesystem,
    "dose-caps key missing": _dose_caps_key_missing,
    "nat2.yaml not YAML": _nat2_not_yaml,
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_cards_directory_stops_the_start(damage: str, tmp_path: Path) -> None:
    cards = cards_copy(tmp_path)
    message = DAMAGES[damage](cards)
    with pytest.raises(ConfigError) as raised:
        create_app(Settings.from_env({"CDS_AUTH": "off", "CDS_CARDS_DIR": str(cards)}))
    text = str(raised.value)
    assert message in text and str(cards) in text and "\n" not in text


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_knowledge_check_names_the_damaged_file(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = cards_copy(tmp_path)
    message = DAMAGES[damage](cards)
    assert cli.main(["knowledge", "check", str(cards)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("cds-service: knowledge base is broken: ") and err.count("\n") == 1
    assert message in err


def test_knowledge_check_of_the_shipped_cards_passes_with_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["knowledge", "check", str(CARDS)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.match(r"knowledge OK: version [0-9a-f]{12}\n", out)
    assert "16 topics, 13 value sets" in out and "tables dose-caps, dose-card, nat2" in out


def test_evaluate_on_a_damaged_cards_directory_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cards = cards_copy(tmp_path)
    message = _delete_cholinergic_valueset(cards)
    monkeypatch.setenv("CDS_CARDS_DIR", str(cards))
    request = ROOT / "fixtures" / "requests" / "cholinergic-pyridostigmine.json"
    assert cli.main(["evaluate", str(request)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err and "Traceback" not in err


# --- the declarations cover what the code reads -----------------------------------------------------------
def _source() -> str:
    return "\n".join(path.read_text() for path in (ROOT / "cds_service").rglob("*.py"))


def test_every_value_set_the_code_names_is_declared() -> None:
    source = _source()
    named = set(re.findall(r"valueset\(\s*\"([a-z0-9-]+)\"", source))
    named |= set(re.findall(r"\"([a-z0-9-]+)\"", _block(source, "_VALUESETS = (", ")")))
    named |= set(re.findall(r"\"([a-z0-9-]+)\"", _block(source, "_OBSERVATION_VALUESETS = {", "}")))
    from cds_service.knowledge.classify import DRUG_CLASSES

    named |= set(DRUG_CLASSES)
    named -= {"weight", "renal", "nat2"}  # prefetch keys of _OBSERVATION_VALUESETS
    declared = set(requirements.declared().valuesets)
    assert len(named) >= 13 and named <= declared, sorted(named ^ declared)
    shipped = {p.name.removesuffix(".valueset.json") for p in (CARDS / "valuesets").glob("*.valueset.json")}
    assert declared <= shipped


def _block(source: str, start: str, end: str) -> str:
    blocks = [part.split(end, 1)[0] for part in source.split(start)[1:]]
    assert blocks, start
    return "\n".join(blocks)


def test_every_table_the_code_reads_is_declared() -> None:
    read = set(re.findall(r"knowledge\.data\.get\(\s*\"([a-z0-9-]+)\"", _source()))
    assert read and read <= set(requirements.declared().tables)


def test_every_topic_a_rule_produces_is_declared() -> None:
    # unidentified-medication is a rule whose findings are data-unavailable cards, not a topic of its own.
    produced = {topic for spec in RULES for topic in spec.topics} | {requirements.DATA_UNAVAILABLE}
    assert produced == set(requirements.declared().topics)
    assert "unidentified-medication" in {spec.name for spec in RULES}
    assert set(requirements.CONTRAINDICATIONS) <= produced
    shipped = {p.stem for p in (CARDS / "topics").glob("*.yaml")}
    assert produced == shipped


def test_a_codesystem_topic_without_a_rule_stops_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = cards_copy(tmp_path)
    path = cards / "card-topics.codesystem.json"
    codesystem = json.loads(path.read_text())
    codesystem["concept"].append({"code": "qt-prolongation", "display": "QT prolongation"})
    path.write_text(json.dumps(codesystem))
    definition = (cards / "topics" / "cholinergic-drug.yaml").read_text()
    (cards / "topics" / "qt-prolongation.yaml").write_text(
        definition.replace("cholinergic-drug", "qt-prolongation")
    )
    assert cli.main(["knowledge", "check", str(cards)]) == 1
    err = capsys.readouterr().err
    assert "card-topics.codesystem.json: topic 'qt-prolongation' has no rule that produces it" in err
