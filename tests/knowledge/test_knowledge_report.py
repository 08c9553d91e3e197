"""``cds-service knowledge report``: per value set, codes by system, verify, sources; site additions apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.site_knowledge import CARDS, LOCAL_FORMULARY, cards_copy, site_valueset, write_site

from cds_service import cli
from cds_service.knowledge.valuesets import SOURCE_URL, VERIFY_URL

SHIPPED = sorted(p.name.removesuffix(".valueset.json") for p in (CARDS / "valuesets").glob("*.valueset.json"))


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(["knowledge", "report", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_json_report_counts_every_value_set_by_system(capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(_report(capsys, str(CARDS), "--json"))
    assert re.fullmatch(r"[0-9a-f]{12}", report["knowledgeVersion"]) and report["siteDir"] is None
    assert [entry["name"] for entry in report["valueSets"]] == SHIPPED
    for entry in report["valueSets"]:
        resource = json.loads((CARDS / "valuesets" / f"{entry['name']}.valueset.json").read_text())
        concepts = [
            (include["system"], concept)
            for include in resource["compose"]["include"]
            for concept in include.get("concept", [])
        ]
        assert entry["codes"] == len(concepts) == sum(entry["bySystem"].values())
        assert entry["verify"] >= sum(
            any(ext["url"] == VERIFY_URL for ext in concept.get("extension", [])) for _, concept in concepts
        )
        assert sum(entry["sources"].values()) >= entry["codes"] + entry["filters"]
        assert "site" not in entry


def test_sources_and_verify_are_counted_per_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cards = cards_copy(tmp_path)
    path = cards / "valuesets" / "febrile-seizures.valueset.json"
    [before] = [
        e
        for e in json.loads(_report(capsys, str(cards), "--json"))["valueSets"]
        if e["name"] == "febrile-seizures"
    ]
    resource = json.loads(path.read_text())
    source = {"url": SOURCE_URL, "valueString": "test source A"}
    second = {"url": SOURCE_URL, "valueString": "test source B"}
    resource["compose"]["include"].append(
        {
            "system": "http://snomed.info/sct",
            "concept": [
                {"code": "1", "extension": [source, second]},
                {"code": "2", "extension": [source, {"url": VERIFY_URL, "valueBoolean": True}]},
            ],
        }
    )
    path.write_text(json.dumps(resource))
    report = json.loads(_report(capsys, str(cards), "--json"))
    [entry] = [e for e in report["valueSets"] if e["name"] == "febrile-seizures"]
    assert entry["sources"]["test source A"] == 2
    assert entry["sources"]["test source B"] == 1
    assert entry["verify"] == before["verify"] + 1
    snomed = "http://snomed.info/sct"
    assert entry["bySystem"][snomed] == before["bySystem"].get(snomed, 0) + 2


def test_site_additions_are_shown_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(
        tmp_path / "site", {"amifampridine": site_valueset(LOCAL_FORMULARY, "FIRD-10", "FIRD-20")}
    )
    report = json.loads(_report(capsys, str(CARDS), "--site", str(site), "--json"))
    assert report["siteDir"] == str(site)
    [entry] = [e for e in report["valueSets"] if e["name"] == "amifampridine"]
    assert entry["site"]["codes"] == 2 and entry["site"]["bySystem"] == {LOCAL_FORMULARY: 2}
    assert entry["site"]["file"].endswith("valuesets/amifampridine.valueset.json")
    assert LOCAL_FORMULARY not in entry["bySystem"]

    text = _report(capsys, str(CARDS), "--site", str(site))
    lines = text.splitlines()
    assert lines[0].startswith(f"Knowledge version {report['knowledgeVersion']} (") and str(site) in lines[0]
    assert re.match(r"value set\s+codes\s+verify\s+filters\s+names\s+codes by system$", lines[2])
    row = lines.index(next(line for line in lines if line.startswith("amifampridine ")))
    assert re.match(rf"  \+ site additions\s+2\s+0\s+0\s+0\s+{re.escape(LOCAL_FORMULARY)} 2$", lines[row + 1])
    assert "Sources (codes and filters citing each source)" in lines


def test_text_report_has_one_row_per_value_set(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _report(capsys, str(CARDS)).splitlines()
    rows = [line.split()[0] for line in lines[3 : 3 + len(SHIPPED)]]
    assert rows == SHIPPED


def test_report_on_a_broken_knowledge_base_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = cards_copy(tmp_path)
    (cards / "valuesets" / "liver-conditions.valueset.json").write_text("{")
    assert cli.main(["knowledge", "report", str(cards)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "liver-conditions.valueset.json: cannot read JSON" in err
