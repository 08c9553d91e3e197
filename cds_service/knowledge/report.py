"""``cds-service knowledge report``: what each value set holds and where its codes come from.

Per value set: codes by code system, filters (ICD/ATC prefixes, NDC patterns), names matched in text,
how many entries are marked verify, and per source (the SOURCE_URL extension on a concept or filter) how
many codes and filters cite it. A site's additions (CDS_SITE_KNOWLEDGE) are counted apart, marked "site".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cds_service.knowledge.loader import load_knowledge, read_json, read_yaml
from cds_service.knowledge.site import read_site
from cds_service.knowledge.valuesets import SOURCE_URL, VERIFY_URL, match_texts

NO_SOURCE = "(no source)"
SYSTEM_NAMES = {
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD-9-CM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://www.whocc.no/atc": "ATC",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://loinc.org": "LOINC",
}


def _extensions(element: Mapping[str, Any], url: str) -> list[Mapping[str, Any]]:
    return [e for e in element.get("extension") or [] if isinstance(e, Mapping) and e.get("url") == url]


def _sources(element: Mapping[str, Any]) -> list[str]:
    found = []
    for ext in _extensions(element, SOURCE_URL):
        value = ext.get("valueString") or ext.get("valueUri") or ext.get("valueUrl")
        if isinstance(value, str) and value.strip():
            found.append(" ".join(value.split()))
    return found


def _entries(resource: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]]:
    """(kind "code" or "filter", system, the concept or filter, its include) for every entry."""
    for include in (resource.get("compose") or {}).get("include") or []:
        system = str(include.get("system"))
        for concept in include.get("concept") or []:
            yield "code", system, concept, include
        for flt in include.get("filter") or []:
            yield "filter", system, flt, include


def summarise(resource: Mapping[str, Any]) -> dict[str, Any]:
    """Counts for one ValueSet file (shipped or site)."""
    by_system: Counter[str] = Counter()
    filters: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    verify = 0
    for kind, system, entry, include in _entries(resource):
        (by_system if kind == "code" else filters)[system] += 1
        verify += bool(_extensions(entry, VERIFY_URL))
        # A filter's source may sit on the filter or on its include.
        for source in _sources(entry) or _sources(include) or [NO_SOURCE]:
            sources[source] += 1
    return {
        "codes": sum(by_system.values()),
        "bySystem": dict(sorted(by_system.items())),
        "filters": sum(filters.values()),
        "filtersBySystem": dict(sorted(filters.items())),
        "names": len([name for name in match_texts(resource) if name.strip()]),
        "verify": verify,
        "sources": dict(sorted(sources.items(), key=lambda item: (-item[1], item[0]))),
    }


def build_report(cards_dir: Path, site_dir: Path | None = None) -> dict[str, Any]:
    """The report as data (``--json``). Loads the knowledge first: a broken file raises KnowledgeError."""
    knowledge = load_knowledge(cards_dir, site_dir)
    site_files = read_site(site_dir, read_yaml).valuesets if site_dir is not None else {}
    valuesets = []
    for path in sorted((cards_dir / "valuesets").glob("*.valueset.json")):
        name = path.name.removesuffix(".valueset.json")
        entry: dict[str, Any] = {"name": name, "title": knowledge.valuesets[name].title}
        entry.update(summarise(read_json(path)))
        if name in site_files:
            entry["site"] = {"file": str(site_files[name]), **summarise(read_json(site_files[name]))}
        valuesets.append(entry)
    return {
        "knowledgeVersion": knowledge.version,
        "cardsDir": str(cards_dir),
        "siteDir": str(site_dir) if site_dir is not None else None,
        "valueSets": valuesets,
    }


def _systems(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{SYSTEM_NAMES.get(system, system)} {n}" for system, n in counts.items()) or "-"


def _row(name: str, counts: Mapping[str, Any]) -> str:
    systems = _systems(counts["bySystem"])
    if counts["filters"]:
        systems += f"; filters: {_systems(counts['filtersBySystem'])}"
    return (
        f"{name:<36} {counts['codes']:>5} {counts['verify']:>6} {counts['filters']:>7} {counts['names']:>5}  "
        f"{systems}"
    )


def render_text(report: Mapping[str, Any]) -> str:
    """A plain-text table, then the sources of each value set."""
    site = f" + site {report['siteDir']}" if report["siteDir"] else ""
    lines = [
        f"Knowledge version {report['knowledgeVersion']} ({report['cardsDir']}{site})",
        "",
        f"{'value set':<36} {'codes':>5} {'verify':>6} {'filters':>7} {'names':>5}  codes by system",
    ]
    for entry in report["valueSets"]:
        lines.append(_row(entry["name"], entry))
        if "site" in entry:
            lines.append(_row("  + site additions", entry["site"]))
    lines += ["", "Sources (codes and filters citing each source)"]
    for entry in report["valueSets"]:
        lines.append(f"{entry['name']}:")
        lines += [f"  {n:>5}  {source}" for source, n in entry["sources"].items()]
        if "site" in entry:
            lines += [f"  {n:>5}  site: {source}" for source, n in entry["site"]["sources"].items()]
    return "\n".join(lines) + "\n"


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
