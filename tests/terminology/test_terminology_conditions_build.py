"""scripts/terminology/conditions.py on small made-up source files: which codes it writes, how it cites and
marks them, that it keeps each file's own metadata, and that a rebuild is byte-for-byte the same."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any
from xml.sax.saxutils import escape

import pytest

ROOT = Path(__file__).resolve().parents[2]
MATCH_TEXT_URL = "https://amifampridine-cds.github.io/fhir/StructureDefinition/match-text"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "conditions_build", ROOT / "scripts/terminology/conditions.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


BUILD = _load_script()
SNOMED, ICD10CM, ICD9CM = BUILD.SNOMED, BUILD.ICD10CM, BUILD.ICD9CM


def _valueset(oid: str, title: str, codes: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "url": f"http://cts.nlm.nih.gov/fhir/ValueSet/{oid}",
        "title": title,
        "version": "1",
        "expansion": {"contains": [{"system": s, "code": c, "display": d} for s, c, d in codes]},
    }


def _xlsx(path: Path, rows: list[tuple[str, str]]) -> None:
    strings = [text for row in [("CODE", "LONG"), *rows] for text in row]
    shared = "".join(f"<si><t>{escape(text)}</t></si>" for text in strings)
    cells = "".join(
        f'<row r="{n + 1}"><c r="A{n + 1}" t="s"><v>{2 * n}</v></c>'
        f'<c r="B{n + 1}" t="s"><v>{2 * n + 1}</v></c></row>'
        for n in range(len(rows) + 1)
    )
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("xl/sharedStrings.xml", f"<sst {ns}>{shared}</sst>")
        book.writestr(
            "xl/worksheets/sheet1.xml", f"<worksheet {ns}><sheetData>{cells}</sheetData></worksheet>"
        )


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """Every OID and prefix the specs name, each listed once, plus a few SNOMED codes to choose from."""
    vsac = tmp_path / "vsac"
    vsac.mkdir()
    oids = {oid for spec in BUILD.SPECS for oid in spec.vsac}
    members = {
        "2.16.840.1.113883.3.464.1003.105.12.1206": [
            (SNOMED, "84757009", "Epilepsy (disorder)"),
            (SNOMED, "191714002", "Dissociative convulsions (disorder)"),
            (SNOMED, "1187042007", "Early-onset seizures syndrome (disorder)"),
            (ICD10CM, "G40.909", "Epilepsy, unspecified"),
        ],
        "2.16.840.1.113762.1.4.1047.42": [
            (SNOMED, "420054005", "Alcoholic cirrhosis (disorder)"),
            (SNOMED, "50325005", "Alcoholic fatty liver (disorder)"),
            (ICD10CM, "K76.82", "Hepatic encephalopathy"),
        ],
    }
    for oid in oids:
        resource = _valueset(oid, f"Set {oid}", members.get(oid, []))
        (vsac / f"valueset-{oid}.json").write_text(json.dumps(resource), encoding="utf-8")
    synthea = tmp_path / "synthea"
    synthea.mkdir()
    module = {
        "states": {
            "History": {
                "type": "ConditionOnset",
                "codes": [
                    {"system": "SNOMED-CT", "code": "703151001", "display": "History of single seizure"}
                ],
            },
            "Epilepsy": {
                "type": "ConditionOnset",
                "codes": [{"system": "SNOMED-CT", "code": 84757009, "display": "Epilepsy"}],
            },
            "EEG": {
                "type": "Procedure",
                "codes": [{"system": "SNOMED-CT", "code": "54550000", "display": "EEG"}],
            },
        }
    }
    (synthea / "epilepsy.json").write_text(json.dumps(module), encoding="utf-8")
    prefixes = {p for spec in BUILD.SPECS for p in spec.icd10cm}
    tabular = tmp_path / "tabular.xml"
    diags = "".join(f"<diag><name>{p}</name><desc>Category {p}</desc></diag>" for p in sorted(prefixes))
    tabular.write_text(f"<ICD10CM.tabular><chapter>{diags}</chapter></ICD10CM.tabular>", encoding="utf-8")
    who = tmp_path / "who.xml"
    who.write_text(
        '<root><item type="category"><name>G40</name><description>Epilepsy</description></item></root>'
    )
    icd9 = tmp_path / "cms32.xlsx"
    icd9_prefixes = sorted({p.replace(".", "") for spec in BUILD.SPECS for p in spec.icd9cm})
    _xlsx(icd9, [(p, f"Code {p}") for p in icd9_prefixes])
    return {"vsac": vsac, "synthea": synthea, "tabular": tabular, "who": who, "icd9": icd9}


def _run(sources: dict[str, Path], out: Path) -> None:
    BUILD.main(
        [
            f"--vsac=test/vsac@1={sources['vsac']}",
            f"--synthea=test/synthea@1={sources['synthea']}",
            f"--icd10cm=test tabular={sources['tabular']}",
            f"--icd9cm=test cms32={sources['icd9']}",
            f"--who-icd10=test who={sources['who']}",
            f"--out={out}",
        ]
    )


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    for spec in BUILD.SPECS:
        shutil.copy(ROOT / "cards" / "valuesets" / f"{spec.name}.valueset.json", folder)
    seizure = folder / "seizure-disorders.valueset.json"
    resource = json.loads(seizure.read_text(encoding="utf-8"))
    resource["extension"] = [{"url": MATCH_TEXT_URL, "valueString": "epilepsy"}]
    seizure.write_text(json.dumps(resource), encoding="utf-8")
    return folder


def _concepts(folder: Path, name: str) -> dict[str, dict[str, Any]]:
    resource = json.loads((folder / f"{name}.valueset.json").read_text(encoding="utf-8"))
    return {c["code"]: c for i in resource["compose"]["include"] for c in i.get("concept", [])}


def _sources_of(element: dict[str, Any]) -> list[str]:
    return [e["valueString"] for e in element["extension"] if e["url"] == BUILD.SOURCE_URL]


def _is_verify(element: dict[str, Any]) -> bool:
    return any(e["url"] == BUILD.VERIFY_URL for e in element["extension"])


def test_a_code_in_two_independent_sources_is_confirmed(sources: dict[str, Path], out: Path) -> None:
    _run(sources, out)
    epilepsy = _concepts(out, "seizure-disorders")["84757009"]
    assert epilepsy["display"] == "Epilepsy (disorder)"  # the VSAC display comes first
    assert len(_sources_of(epilepsy)) == 2 and not _is_verify(epilepsy)
    assert any(s.startswith("VSAC 2.16.840.1.113883.3.464.1003.105.12.1206") for s in _sources_of(epilepsy))
    assert any("Synthea module epilepsy.json in test/synthea@1" in s for s in _sources_of(epilepsy))


def test_a_code_in_one_source_is_verify(sources: dict[str, Path], out: Path) -> None:
    _run(sources, out)
    concepts = _concepts(out, "seizure-disorders")
    assert _is_verify(concepts["703151001"]) and len(_sources_of(concepts["703151001"])) == 1
    # VSAC Seizure Disorder is taken whole: a syndrome whose name says seizures only in passing is in.
    assert "1187042007" in concepts
    assert "54550000" not in concepts  # a procedure is never a condition member


def test_left_out_codes_stay_out(sources: dict[str, Path], out: Path) -> None:
    _run(sources, out)
    assert "191714002" not in _concepts(out, "seizure-disorders")  # dissociative convulsions
    liver = _concepts(out, "liver-conditions")
    assert "420054005" in liver and "50325005" not in liver  # alcoholic cirrhosis in, fatty liver out


def test_prefixes_cite_the_code_list_and_the_value_sets_that_hold_them(
    sources: dict[str, Path], out: Path
) -> None:
    _run(sources, out)
    resource = json.loads((out / "liver-conditions.valueset.json").read_text(encoding="utf-8"))
    filters = {
        (i["system"], f["value"]): f for i in resource["compose"]["include"] for f in i.get("filter", [])
    }
    encephalopathy = filters[(ICD10CM, "K76.82")]
    assert not _is_verify(encephalopathy)
    assert sorted(s.split(" ")[0] for s in _sources_of(encephalopathy)) == ["CDC", "VSAC"]
    assert _is_verify(filters[(ICD10CM, "K72")])  # only the code list has it here
    assert (ICD9CM, "571.2") in filters and (ICD9CM, "571.0") not in filters


def test_metadata_is_kept_and_a_rebuild_is_identical(sources: dict[str, Path], out: Path) -> None:
    _run(sources, out)
    path = out / "seizure-disorders.valueset.json"
    first = path.read_bytes()
    resource = json.loads(first)
    assert resource["extension"] == [{"url": MATCH_TEXT_URL, "valueString": "epilepsy"}]
    assert resource["url"] == "https://amifampridine-cds.github.io/fhir/ValueSet/seizure-disorders"
    assert "scripts/terminology/conditions.py" in resource["purpose"]
    _run(sources, out)
    assert path.read_bytes() == first


def test_a_prefix_missing_from_the_code_list_fails_the_build(sources: dict[str, Path], out: Path) -> None:
    text = sources["tabular"].read_text(encoding="utf-8")
    sources["tabular"].write_text(text.replace("<name>K76.82</name>", "<name>K76.8</name>"), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"K76\.82"):
        _run(sources, out)
