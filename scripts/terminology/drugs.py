"""Build the drug ValueSets in cards/valuesets from downloaded public sources.

EHRs send product codes (RxNorm SCD/SBD/GPCK/BPCK, NDC), not the ingredient codes the value sets were first
written with. This script collects, per drug class, every RxNorm code whose display names one of the class's
ingredients from published VSAC / US Core value-set files, ATC codes from a WHO-ATC-organised library, and
the codes the clinical reference and the FIRDAPSE label list. Each concept gets one ``source`` extension per
source; a concept with fewer than two independent sources is marked ``verify``. Nothing is invented: a code
is written only when a source file shows it.

Sources are read from local copies (a bare git mirror, read at HEAD, or a plain directory); see --help.
Top-level metadata of each ValueSet (title, description, purpose, match-text names...) is kept; the
``compose`` is rebuilt and brand names shown by a source's branded-drug display are added to match-text.
Output is deterministic: concepts sorted by code, 2-space JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_BASE = "https://amifampridine-cds.github.io/fhir"
MATCH_TEXT_URL = f"{PROJECT_BASE}/StructureDefinition/match-text"
VERIFY_URL = f"{PROJECT_BASE}/StructureDefinition/verify"
SOURCE_URL = f"{PROJECT_BASE}/StructureDefinition/source"

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"
NDC = "http://hl7.org/fhir/sid/ndc"
SYSTEM_ORDER = (RXNORM, NDC, ATC, SNOMED)

VALUESETS = Path(__file__).resolve().parents[2] / "cards" / "valuesets"

# Ingredients of each class, exactly as shared/clinical/amifampridine.md names them (its 'to verify' ones
# included; class members it names only by class, such as fluvoxamine for SSRIs, as the value sets already
# named them). A product belongs to a class when its display names one of these as a whole word, so
# combination products (olanzapine / fluoxetine, acetaminophen / tramadol) belong too.
CLASS_INGREDIENTS: dict[str, tuple[str, ...]] = {
    "amifampridine": ("amifampridine", "3,4-diaminopyridine"),
    "other-aminopyridines": ("dalfampridine", "fampridine", "4-aminopyridine"),
    "cholinergic-drugs": (
        "pyridostigmine", "neostigmine", "physostigmine", "edrophonium", "ambenonium", "donepezil",
        "rivastigmine", "galantamine", "bethanechol", "pilocarpine", "cevimeline",
    ),
    "seizure-threshold-lowering-drugs": (
        "bupropion", "tramadol", "clozapine", "olanzapine", "amitriptyline", "imipramine", "clomipramine",
        "desipramine", "nortriptyline", "doxepin", "trimipramine", "protriptyline", "perphenazine",
        "thioridazine", "haloperidol", "risperidone", "citalopram", "escitalopram", "fluoxetine",
        "paroxetine", "sertraline", "venlafaxine", "mefloquine", "ciprofloxacin", "levofloxacin",
        "moxifloxacin", "isoniazid", "methylphenidate", "chlorpromazine", "quetiapine", "meperidine",
        "pethidine", "theophylline", "aminophylline", "imipenem", "meropenem", "ertapenem", "cefepime",
        "maprotiline", "lithium", "flumazenil", "tapentadol", "fluvoxamine", "ofloxacin", "amphetamine",
        "dextroamphetamine", "lisdexamfetamine", "dexmethylphenidate", "fluphenazine", "trifluoperazine",
        "prochlorperazine", "droperidol",
    ),
    "aminopyridine-allergens": (),  # class names only; its codes are the ATC/SNOMED ones below
}  # fmt: skip

# WHO ATC (INN) spellings of the ingredients above, for the ATC library's folder names.
ATC_ALIASES = {"amfetamine": "amphetamine", "dexamfetamine": "dextroamphetamine", "fampridine": "fampridine"}

CLINICAL = "Clinical reference shared/clinical/amifampridine.md, section Codes"
CLINICAL_VERIFY = f"{CLINICAL} (listed there as to verify)"
DAILYMED = (
    "DailyMed SPL set id f015fe60-3128-4a43-8c31-19fc6b5def3f, FIRDAPSE (amifampridine) label 5/2024: "
    "NDC Code(s) 69616-211-03, 69616-211-04, 69616-211-06, 69616-211-08 "
    "(https://dailymed.nlm.nih.gov/dailymed/drugInfo.cfm?setid=f015fe60-3128-4a43-8c31-19fc6b5def3f)"
)
DAILYMED_TITLE = "FIRDAPSE- amifampridine phosphate tablet"


@dataclass(frozen=True)
class Source:
    label: str  # what the extension says
    key: str  # sources with the same key are not independent of each other
    confirms: bool = True  # False: the source lists the code only as something to verify


CLINICAL_SOURCE = Source(CLINICAL, "clinical")
CLINICAL_VERIFY_SOURCE = Source(CLINICAL_VERIFY, "clinical", confirms=False)
DAILYMED_SOURCE = Source(DAILYMED, "dailymed")

# Codes the clinical reference lists (class, system, code, display, listed as to verify there). These were
# the whole of the value sets before this script; they stay, each with the reference as its source.
_CURATED_BY_CODE: tuple[tuple[str, str, str, str, bool], ...] = (
    ("amifampridine", ATC, "N07XX05", "amifampridine", False),
    ("amifampridine", SNOMED, "422654000", "Amifampridine (substance)", False),
    ("other-aminopyridines", RXNORM, "897021", "dalfampridine 10 MG 12HR Extended Release Oral Tablet",
     False),
    ("other-aminopyridines", ATC, "N07XX07", "fampridine", False),
    ("aminopyridine-allergens", ATC, "N07XX05", "amifampridine", False),
    ("aminopyridine-allergens", ATC, "N07XX07", "fampridine", False),
    ("aminopyridine-allergens", SNOMED, "422654000", "Amifampridine (substance)", False),
    ("cholinergic-drugs", RXNORM, "135447", "donepezil", False),
    ("cholinergic-drugs", RXNORM, "4637", "galantamine", False),
    ("cholinergic-drugs", RXNORM, "44281", "cevimeline", False),
    ("cholinergic-drugs", RXNORM, "183379", "rivastigmine", True),
    ("cholinergic-drugs", RXNORM, "903857", "pyridostigmine 60 MG Oral Tablet", False),
    ("cholinergic-drugs", RXNORM, "903847", "pyridostigmine 180 MG Extended Release Oral Tablet", False),
    ("cholinergic-drugs", RXNORM, "903843", "pyridostigmine 12 MG/ML Oral Solution (60 mg/5 mL)", False),
    ("cholinergic-drugs", RXNORM, "7315", "neostigmine", True),
    ("cholinergic-drugs", RXNORM, "8328", "pilocarpine", True),
    ("cholinergic-drugs", ATC, "N06DA02", "donepezil", False),
    ("cholinergic-drugs", ATC, "N06DA04", "galantamine", False),
    ("cholinergic-drugs", ATC, "N07AX03", "cevimeline", False),
    ("cholinergic-drugs", ATC, "N06DA03", "rivastigmine", False),
    ("cholinergic-drugs", ATC, "N07AA02", "pyridostigmine", False),
    ("cholinergic-drugs", ATC, "N07AA01", "neostigmine", False),
    ("cholinergic-drugs", ATC, "V03AB19", "physostigmine", False),
    ("cholinergic-drugs", ATC, "N07AA30", "ambenonium", False),
    ("cholinergic-drugs", ATC, "N07AB02", "bethanechol", False),
    ("cholinergic-drugs", ATC, "N07AX01", "pilocarpine", False),
)  # fmt: skip
# The seizure-threshold list of the reference: (ingredient, RxNorm ingredient code, ATC, to verify there).
_CURATED_SEIZURE = tuple(
    ("seizure-threshold-lowering-drugs", system, code, name, verify)
    for name, rxcui, atc, verify in (
        ("bupropion", "42347", "N06AX12", False), ("tramadol", "10689", "N02AX02", False),
        ("clozapine", "2626", "N05AH02", False), ("olanzapine", "61381", "N05AH03", False),
        ("amitriptyline", "704", "N06AA09", False), ("imipramine", "5691", "N06AA02", False),
        ("clomipramine", "2597", "N06AA04", False), ("desipramine", "3247", "N06AA01", False),
        ("nortriptyline", "7531", "N06AA10", False), ("doxepin", "3638", "N06AA12", False),
        ("trimipramine", "10834", "N06AA06", False), ("protriptyline", "8886", "N06AA11", False),
        ("perphenazine", "8076", "N05AB03", False), ("thioridazine", "10502", "N05AC02", False),
        ("haloperidol", "5093", "N05AD01", False), ("risperidone", "35636", "N05AX08", False),
        ("citalopram", "2556", "N06AB04", False), ("escitalopram", "321988", "N06AB10", False),
        ("fluoxetine", "4493", "N06AB03", False), ("paroxetine", "32937", "N06AB05", False),
        ("sertraline", "36437", "N06AB06", False), ("venlafaxine", "39786", "N06AX16", False),
        ("mefloquine", "6694", "P01BC02", False), ("ciprofloxacin", "2551", "J01MA02", False),
        ("levofloxacin", "82122", "J01MA12", False), ("moxifloxacin", "139462", "J01MA14", False),
        ("isoniazid", "6038", "J04AC01", False), ("methylphenidate", "6901", "N06BA04", False),
        ("chlorpromazine", "2403", "N05AA01", True), ("quetiapine", "51272", "N05AH04", True),
        ("meperidine", "6754", "N02AB02", True), ("theophylline", "10438", "R03DA04", True),
        ("imipenem", "5690", "J01DH51", True), ("meropenem", "", "J01DH02", True),
        ("ertapenem", "", "J01DH03", True), ("cefepime", "", "J01DE01", True),
        ("maprotiline", "", "N06AA21", True), ("lithium", "", "N05AN01", True),
        ("flumazenil", "", "V03AB25", True), ("tapentadol", "", "N02AX06", True),
    )
    for system, code in ((RXNORM, rxcui), (ATC, atc))
    if code
)  # fmt: skip
CURATED = (*_CURATED_BY_CODE, *_CURATED_SEIZURE)

# Firdapse packages (FDA labeler 69616, product 211), from the label's SPL on DailyMed.
NDC_PACKAGES = ("69616-211-03", "69616-211-04", "69616-211-06", "69616-211-08")


@dataclass
class Concept:
    code: str
    displays: dict[Source, str] = field(default_factory=dict)

    @property
    def sources(self) -> list[Source]:
        return sorted(self.displays, key=lambda source: source.label)

    @property
    def confirmed(self) -> bool:
        """Two independent sources that do not merely list the code as something to check."""
        return len({source.key for source in self.displays if source.confirms}) >= 2

    @property
    def display(self) -> str:
        # A published expansion's display (the RxNorm name at its release) wins over a reference's short name.
        ranked = sorted(self.displays.items(), key=lambda item: (item[0].key == "clinical", item[0].label))
        return ranked[0][1]


# --------------------------------------------------------------------------------------------- reading


class Tree:
    """The files of a fetched repository: a bare git mirror read at HEAD, or a plain directory."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.is_git = (path / "HEAD").is_file() and (path / "objects").is_dir()

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.path), *args], check=True, capture_output=True, text=True
        ).stdout

    def files(self) -> list[str]:
        if self.is_git:
            return self._git("ls-tree", "-r", "--name-only", "HEAD").splitlines()
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())

    def read(self, name: str) -> str:
        if self.is_git:
            return self._git("show", f"HEAD:{name}")
        return (self.path / name).read_text(encoding="utf-8")


def _pattern(names: Iterable[str]) -> re.Pattern[str]:
    alternation = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])", re.IGNORECASE)


CLASS_PATTERNS = {name: _pattern(names) for name, names in CLASS_INGREDIENTS.items() if names}


def classes_named(display: str) -> set[str]:
    return {name for name, pattern in CLASS_PATTERNS.items() if pattern.search(display)}


def _valueset_id(resource: dict) -> str:
    """A ValueSet's identity across releases: its VSAC OID, or its canonical URL."""
    url = str(resource.get("url") or resource.get("id") or "")
    if url.startswith("http://cts.nlm.nih.gov/fhir/ValueSet/"):
        return f"VSAC {url.rsplit('/', 1)[-1]}"
    return url


def valueset_rxnorm_codes(tree: Tree) -> Iterator[tuple[str, str, str, str, str]]:
    """(value set id, title, file, code, display) for every RxNorm code of every ValueSet file."""
    for path in tree.files():
        if "vocabulary/valueset" not in path or not path.endswith(".json"):
            continue
        try:
            resource = json.loads(tree.read(path))
        except (ValueError, subprocess.CalledProcessError):
            continue
        if not isinstance(resource, dict) or resource.get("resourceType") != "ValueSet":
            continue
        ident, where = _valueset_id(resource), f"{tree.name} {path}"
        title = str(resource.get("title") or resource.get("name") or ident)
        for coding in (resource.get("expansion") or {}).get("contains") or []:
            if coding.get("system") == RXNORM and coding.get("code"):
                yield ident, title, where, coding["code"], coding.get("display", "")
        for include in (resource.get("compose") or {}).get("include") or []:
            if include.get("system") == RXNORM:
                for concept in include.get("concept") or []:
                    if concept.get("code"):
                        yield ident, title, where, concept["code"], concept.get("display", "")


def independence_keys(titles: dict[str, set[str]]) -> dict[str, str]:
    """Value set id -> key; value sets sharing a title, directly or through a chain, share a key.

    VSAC republishes a value set under a new OID with the same title (Antidepressant Medication 196.12.1213
    and 196.11.1530) and retitles an OID between releases (196.12.1523 'Antipsychotic', later 'Potentially
    Harmful Antipsychotics for Older Adults'): either way it is one steward's list, one source.
    """
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for ident, names in titles.items():
        for title in names:
            normalised = "title:" + re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()
            parent[root(normalised)] = root(ident)
    return {ident: min(n for n in parent if root(n) == root(ident)) for ident in titles}


_ATC_FOLDER = re.compile(r"Drugs/[A-Z]_[^/]+/[A-Z]\d\d[A-Z]_[^/]+/([A-Z]\d\d[A-Z]{2}\d\d)_([A-Za-z]+)/")


def atc_codes(tree: Tree) -> Iterator[tuple[Source, str, str]]:
    """(source, ATC code, ingredient) from a library whose folders are named <ATC code>_<WHO name>."""
    seen: set[tuple[str, str]] = set()
    for path in tree.files():
        found = _ATC_FOLDER.search(path)
        if not found or found.groups() in seen:
            continue
        seen.add(found.groups())
        code, camel = found.groups()
        words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", camel).lower()
        label = f"WHO ATC {code} {words} (folder name in {tree.name} {path[: found.end() - 1]})"
        yield Source(label, tree.name), code, ATC_ALIASES.get(words, words)


# --------------------------------------------------------------------------------------------- building


def collect(vsac: list[Tree], atc: list[Tree]) -> dict[str, dict[str, dict[str, Concept]]]:
    """class -> system -> code -> Concept, merged over every source."""
    result: dict[str, dict[str, dict[str, Concept]]] = {name: {} for name in CLASS_INGREDIENTS}

    def add(drug_class: str, system: str, code: str, source: Source, display: str) -> None:
        concept = result[drug_class].setdefault(system, {}).setdefault(code, Concept(code))
        concept.displays.setdefault(source, display)

    for drug_class, system, code, display, to_verify in CURATED:
        add(drug_class, system, code, CLINICAL_VERIFY_SOURCE if to_verify else CLINICAL_SOURCE, display)
    for package in NDC_PACKAGES:
        add("amifampridine", NDC, package, DAILYMED_SOURCE, DAILYMED_TITLE)
    # One source per value set and code, naming every file (of every repository) that lists the code.
    found: dict[tuple[str, str, str], tuple[set[str], str]] = {}
    titles: dict[str, set[str]] = {}
    for tree in vsac:
        for ident, title, where, code, display in valueset_rxnorm_codes(tree):
            titles.setdefault(ident, set()).add(title)
            for drug_class in classes_named(display):
                wheres, _ = found.setdefault((drug_class, code, ident), (set(), display))
                wheres.add(where)
    keys = independence_keys(titles)
    for (drug_class, code, ident), (wheres, display) in found.items():
        name = f"{ident} {' / '.join(sorted(titles[ident]))}"
        add(drug_class, RXNORM, code, Source(f"{name} ({'; '.join(sorted(wheres))})", keys[ident]), display)
    for tree in atc:
        for source, code, name in atc_codes(tree):
            # Single-ingredient ATC codes only: a combination code's folder name is often truncated.
            for drug_class, ingredients in CLASS_INGREDIENTS.items():
                if name in ingredients:
                    add(drug_class, ATC, code, source, name)
            # The allergen class names the aminopyridines themselves.
            if name in ("amifampridine", "fampridine"):
                add("aminopyridine-allergens", ATC, code, source, name)
    return result


def concept_json(concept: Concept) -> dict:
    extensions = [{"url": SOURCE_URL, "valueString": source.label} for source in concept.sources]
    if not concept.confirmed:
        extensions.append({"url": VERIFY_URL, "valueBoolean": True})
    return {"code": concept.code, "display": concept.display, "extension": extensions}


def _sort_key(code: str) -> tuple[int, str]:
    return (0, f"{int(code):012d}") if code.isdigit() else (1, code)


BRAND = re.compile(r"\[([^\]]+)\]")


def brand_names(concepts: dict[str, dict[str, Concept]]) -> dict[str, str]:
    """Brand name -> the RxNorm code whose display shows it ('sertraline 50 MG Oral Tablet [Zoloft]').

    That concept carries the sources, so the brand's evidence is one lookup away.
    """
    brands: dict[str, str] = {}
    for concept in sorted(concepts.get(RXNORM, {}).values(), key=lambda c: _sort_key(c.code)):
        for display in concept.displays.values():
            for brand in BRAND.findall(display):
                brands.setdefault(brand.strip(), concept.code)
    return brands


BRANDS_MARK = " Brand names added from the branded-drug displays of these RxNorm codes (see their sources):"


def build(resource: dict, concepts: dict[str, dict[str, Concept]]) -> dict:
    """The ValueSet with its metadata kept and its compose rebuilt from ``concepts``."""
    includes = []
    for system in sorted(concepts, key=lambda s: SYSTEM_ORDER.index(s) if s in SYSTEM_ORDER else 99):
        codes = concepts[system]
        if codes:
            ordered = sorted(codes.values(), key=lambda c: _sort_key(c.code))
            includes.append({"system": system, "concept": [concept_json(c) for c in ordered]})
    # Filters (ATC classes, the NDC product pattern) are kept as the pharmacist wrote them.
    includes += [include for include in resource["compose"]["include"] if "filter" in include]
    updated = dict(resource)
    updated["compose"] = {"include": includes}

    names = [ext for ext in resource.get("extension", []) if ext.get("url") == MATCH_TEXT_URL]
    known = _pattern(ext["valueString"] for ext in names)
    # A brand the names already find ('Seroquel XR 14-Day Sample Kit' has 'Seroquel') adds nothing.
    added = {b: s for b, s in brand_names(concepts).items() if len(b) > 2 and not known.search(b)}
    others = [ext for ext in resource.get("extension", []) if ext.get("url") != MATCH_TEXT_URL]
    updated["extension"] = (
        others
        + names
        + [{"url": MATCH_TEXT_URL, "valueString": brand} for brand in sorted(added, key=str.lower)]
    )
    purpose = str(resource.get("purpose", "")).split(BRANDS_MARK)[0]
    if added:
        shown = "; ".join(f"{brand} (RxNorm {added[brand]})" for brand in sorted(added, key=str.lower))
        purpose += f"{BRANDS_MARK} {shown}."
    updated["purpose"] = purpose
    return updated


def without_added_brands(resource: dict) -> dict:
    """The ValueSet as a pharmacist wrote it: brand names this script added (on a previous run) removed."""
    purpose = str(resource.get("purpose", ""))
    if BRANDS_MARK not in purpose:
        return resource
    listed = purpose.split(BRANDS_MARK, 1)[1]
    added = {name.strip().lower() for name in re.findall(r"([^;]+?) \(RxNorm \d+\)", listed)}
    cleaned = dict(resource)
    cleaned["extension"] = [
        ext
        for ext in resource.get("extension", [])
        if not (ext.get("url") == MATCH_TEXT_URL and ext.get("valueString", "").lower() in added)
    ]
    return cleaned


def dump(resource: dict) -> str:
    return json.dumps(resource, indent=2, ensure_ascii=False) + "\n"


def _tree(spec: str) -> Tree:
    name, sep, path = spec.partition("=")
    if not sep or not Path(path).is_dir():
        raise SystemExit(f"expected owner/name=PATH with an existing directory, got {spec!r}")
    return Tree(name, Path(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Sources used for the committed files (fetch them, then pass their paths), at HEAD commit:\n"
            "  --vsac cqframework/ecqm-content-r4-2021=PATH      0be9c6864640478209add3b5c99178291986a0e0\n"
            "  --vsac cqframework/ecqm-content-r4=PATH           04f5c4919ee8a56e24484c3269f74d47b03e3d75\n"
            "  --vsac cqframework/ecqm-content-qicore-2024=PATH  9ebd48ffebf2ed2489f3904cc8393ebf8979bfc9\n"
            "  --vsac cqframework/ecqm-content-qicore-2022=PATH  66154a37228290a0da13a08f08caf7778cdc74dd\n"
            "  --vsac cqframework/ecqm-content-qicore-2023=PATH  df021518fe507ea2bcd79b2f3c05ed7eb69ff058\n"
            "  --vsac cqframework/ecqm-content-qicore-2025=PATH  db5a7e143304b19b70cbf6a89e5ebeab9e40df61\n"
            "  --vsac cqframework/ecqm-content-cms-2025=PATH     d80fd0ae5cae13780a0132c10192e2613cebb559\n"
            "  --vsac cqframework/opioid-cds-r4=PATH             b29bdcbf6db6f3de26486dbc3820572ee9a78b89\n"
            "  --atc digital-biosystems/Pharmacolibrary=PATH     e46b97f5b43bf936d5ac575b281aba0913a9d679\n"
            "Read: each repository's ValueSet JSON under */vocabulary/valueset/ (VSAC expansions, US Core\n"
            "us-core-allergy-substance, the CDC opioid guideline's value sets) and the ATC folders\n"
            "Pharmacolibrary/Drugs/<group>/<class>/<code>_<Name>/. The clinical reference codes and the\n"
            "FIRDAPSE NDC packages (DailyMed) are listed in this script."
        ),
    )
    parser.add_argument("--vsac", action="append", default=[], metavar="OWNER/NAME=PATH")
    parser.add_argument("--atc", action="append", default=[], metavar="OWNER/NAME=PATH")
    parser.add_argument("--out", type=Path, default=VALUESETS, help="folder of the *.valueset.json files")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file would change; write nothing")
    args = parser.parse_args(argv)

    concepts = collect([_tree(s) for s in args.vsac], [_tree(s) for s in args.atc])
    changed = []
    for drug_class in sorted(CLASS_INGREDIENTS):
        path = args.out / f"{drug_class}.valueset.json"
        current = path.read_text(encoding="utf-8")
        text = dump(build(without_added_brands(json.loads(current)), concepts[drug_class]))
        if text != current:
            changed.append(path.name)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    print(("would change: " if args.check else "changed: ") + (", ".join(changed) or "nothing"))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
