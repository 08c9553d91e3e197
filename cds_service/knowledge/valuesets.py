"""FHIR ValueSets from ``cards/valuesets`` compiled into fast matchers.

A ValueSet's ``compose.include`` entries become sets and prefixes keyed by code system, so matching a
Coding costs a dictionary lookup. Supported include shapes (all a pharmacist needs here):
- ``concept`` lists: exact codes;
- ``filter`` with ``op`` ``is-a``/``descendent-of`` on ICD-10 and ATC codes: prefix match (those code
  systems are hierarchical by prefix, so G40 covers G40.909);
- ``filter`` with ``op`` ``regex``: full match on the code (NDC package variants).
Names (the ``match-text`` extension) match whole words, case-insensitively, in display and text fields,
because EHR orders are usually coded at product level where no ingredient list holds the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROJECT_BASE = "https://amifampridine-cds.github.io/fhir"
MATCH_TEXT_URL = f"{PROJECT_BASE}/StructureDefinition/match-text"
VERIFY_URL = f"{PROJECT_BASE}/StructureDefinition/verify"
# Where a code (a concept, or an include's filter) was confirmed: one extension per public source, its
# valueString naming the source (a VSAC OID and the repository file it was read from, a Synthea module,
# the FDA NDC directory...). A code with fewer than two sources carries VERIFY_URL.
SOURCE_URL = f"{PROJECT_BASE}/StructureDefinition/source"

# The other names records give the same code systems: the HL7 OIDs (C-CDA-derived data and many EHR
# interfaces send `urn:oid:…`; FHIR's NamingSystem registry, hl7.org/fhir/R4/namingsystem-terminologies.html,
# maps each OID to its URI) and a stray trailing slash. A coding is compared under the canonical URI.
SYSTEM_ALIASES: Mapping[str, str] = {
    "urn:oid:2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "urn:oid:2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "urn:oid:2.16.840.1.113883.6.1": "http://loinc.org",
    "urn:oid:2.16.840.1.113883.6.69": "http://hl7.org/fhir/sid/ndc",
    "urn:oid:2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "urn:oid:2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
    "urn:oid:2.16.840.1.113883.6.103": "http://hl7.org/fhir/sid/icd-9-cm",
    "urn:oid:2.16.840.1.113883.6.73": "http://www.whocc.no/atc",
    "http://snomed.info/sct/": "http://snomed.info/sct",
    "http://www.nlm.nih.gov/research/umls/rxnorm/": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://loinc.org/": "http://loinc.org",
    "http://www.whocc.no/atc/": "http://www.whocc.no/atc",
}

# Systems whose hierarchy is expressed by code prefix.
_PREFIX_SYSTEMS = {
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-9-cm",
    "http://www.whocc.no/atc",
}


class ValueSetError(ValueError):
    """A ValueSet file is not usable; the service refuses to start with this message."""


def _normalise_code(system: str, code: str) -> str:
    code = code.strip()
    # ICD codes are sent with and without the dot (G40.909 / G40909, 345.10 / 34510): compare without it.
    if system in _PREFIX_SYSTEMS:
        return code.replace(".", "").upper()
    return code


def names_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive whole-word alternation for the given names (None when there are none)."""
    parts = sorted({name.strip().lower() for name in names if name.strip()}, key=len, reverse=True)
    if not parts:
        return None
    alternation = "|".join(re.escape(part) for part in parts)
    return re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class CodeMatcher:
    """Membership test for Codings and free text, compiled from one ValueSet."""

    url: str
    title: str
    codes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    patterns: Mapping[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)
    names: re.Pattern[str] | None = None
    displays: Mapping[tuple[str, str], str] = field(default_factory=dict)
    unverified: frozenset[tuple[str, str]] = frozenset()

    def matches_code(self, system: str | None, code: str | None) -> bool:
        if not system or not isinstance(code, str):
            return False
        system = SYSTEM_ALIASES.get(system, system)
        stripped = code.strip()
        if system in _PREFIX_SYSTEMS:
            normalised = stripped.replace(".", "").upper()
            prefixes = self.prefixes.get(system)
            if prefixes and normalised.startswith(prefixes):  # str.startswith takes a tuple: one C call
                return True
        else:
            normalised = stripped
        codes = self.codes.get(system)
        if codes and normalised in codes:
            return True
        patterns = self.patterns.get(system)
        return bool(patterns) and any(pattern.fullmatch(stripped) for pattern in patterns)

    def matches_coding(self, coding: Mapping[str, Any]) -> bool:
        return self.matches_code(coding.get("system"), coding.get("code"))

    def find_name(self, text: str | None) -> str | None:
        """The first name of this value set found in ``text``, as written there."""
        if not self.names or not text or not isinstance(text, str):
            return None
        found = self.names.search(text)
        return found.group(0) if found else None


class _Builder:
    """Collects the includes and names of one ValueSet and of the site files that extend it."""

    def __init__(self) -> None:
        self.codes: dict[str, set[str]] = {}
        self.prefixes: dict[str, list[str]] = {}
        self.patterns: dict[str, list[re.Pattern[str]]] = {}
        self.displays: dict[tuple[str, str], str] = {}
        self.unverified: set[tuple[str, str]] = set()
        self.names: list[str] = []

    def add_includes(self, includes: list[Any], origin: str) -> None:
        for index, include in enumerate(includes):
            if not isinstance(include, Mapping):
                raise ValueSetError(f"{origin}: compose.include[{index}] must be an object")
            system = include.get("system")
            if not isinstance(system, str) or not system:
                raise ValueSetError(f"{origin}: compose.include[{index}].system is required")
            system = SYSTEM_ALIASES.get(system, system)  # a site file may name a system by its OID
            if not include.get("concept") and not include.get("filter"):
                # FHIR reads such an include as the whole code system; matching that is not supported.
                raise ValueSetError(f"{origin}: compose.include[{index}] lists no concept and no filter")
            for concept in _list(include.get("concept"), f"{origin}: compose.include[{index}].concept"):
                self._add_concept(system, concept, f"{origin}: a concept in include[{index}]")
            for flt in _list(include.get("filter"), f"{origin}: compose.include[{index}].filter"):
                self._add_filter(system, flt, f"{origin}: include[{index}]")

    def _add_concept(self, system: str, concept: Any, where: str) -> None:
        code = concept.get("code") if isinstance(concept, Mapping) else None
        if not isinstance(code, str) or not code.strip():
            raise ValueSetError(f"{where} has no code")
        self.codes.setdefault(system, set()).add(_normalise_code(system, code))
        if concept.get("display"):
            self.displays.setdefault((system, code), concept["display"])
        if any(ext.get("url") == VERIFY_URL for ext in _extensions(concept)):
            self.unverified.add((system, code))

    def _add_filter(self, system: str, flt: Any, where: str) -> None:
        op, value = (flt.get("op"), flt.get("value")) if isinstance(flt, Mapping) else (None, None)
        if not isinstance(value, str) or not value:
            raise ValueSetError(f"{where} filter has no value")
        if op in {"is-a", "descendent-of"} and system in _PREFIX_SYSTEMS:
            self.prefixes.setdefault(system, []).append(_normalise_code(system, value))
        elif op == "regex":
            try:
                self.patterns.setdefault(system, []).append(re.compile(value))
            except re.error as exc:
                raise ValueSetError(f"{where} regex {value!r}: {exc}") from exc
        else:
            raise ValueSetError(f"{where}: unsupported filter op {op!r} for {system}")

    def add_names(self, resource: Mapping[str, Any]) -> None:
        self.names += match_texts(resource)

    def build(self, url: str, title: str) -> CodeMatcher:
        return CodeMatcher(
            url=url,
            title=title,
            codes={system: frozenset(values) for system, values in self.codes.items()},
            prefixes={system: tuple(values) for system, values in self.prefixes.items()},
            patterns={system: tuple(values) for system, values in self.patterns.items()},
            names=names_pattern(self.names),
            displays=self.displays,
            unverified=frozenset(self.unverified),
        )


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueSetError(f"{where} must be a list")
    return value


def _extensions(element: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [ext for ext in element.get("extension") or [] if isinstance(ext, Mapping)]


def match_texts(resource: Mapping[str, Any]) -> list[str]:
    """The names (match-text extensions) a ValueSet matches in free text."""
    return [
        str(ext.get("valueString", "")) for ext in _extensions(resource) if ext.get("url") == MATCH_TEXT_URL
    ]


def compile_valueset(
    resource: Mapping[str, Any],
    origin: str,
    additions: Sequence[tuple[Mapping[str, Any], str]] = (),
) -> CodeMatcher:
    """Compile a shipped ValueSet, extended by the site files in ``additions`` ((resource, origin) pairs,
    checked with ``check_addition``): their includes and names are added, nothing is taken away."""
    if resource.get("resourceType") != "ValueSet":
        raise ValueSetError(f"{origin}: resourceType must be ValueSet")
    url = resource.get("url")
    if not isinstance(url, str) or not url:
        raise ValueSetError(f"{origin}: ValueSet.url is required")
    includes = (resource.get("compose") or {}).get("include")
    if not isinstance(includes, list) or not includes:
        raise ValueSetError(f"{origin}: compose.include must list at least one system")
    builder = _Builder()
    builder.add_includes(includes, origin)
    builder.add_names(resource)
    for addition, addition_origin in additions:
        builder.add_includes(_site_includes(addition, addition_origin), addition_origin)
        builder.add_names(addition)
    return builder.build(url, str(resource.get("title") or resource.get("name") or url))


def _site_includes(resource: Mapping[str, Any], origin: str) -> list[Any]:
    compose = resource.get("compose") or {}
    if not isinstance(compose, Mapping):
        raise ValueSetError(f"{origin}: compose must be an object")
    return _list(compose.get("include"), f"{origin}: compose.include")


def check_addition(resource: Any, origin: str) -> None:
    """A site ValueSet only adds: codes (compose.include) and names (match-text), nothing it removes."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "ValueSet":
        raise ValueSetError(f"{origin}: resourceType must be ValueSet")
    compose = resource.get("compose") or {}
    if isinstance(compose, Mapping) and compose.get("exclude"):
        raise ValueSetError(f"{origin}: compose.exclude is not allowed: a site file only adds codes")
    builder = _Builder()
    builder.add_includes(_site_includes(resource, origin), origin)
    builder.add_names(resource)
    adds_codes = any(builder.codes.values()) or builder.prefixes or builder.patterns
    if not adds_codes and not any(name.strip() for name in builder.names):
        raise ValueSetError(f"{origin}: adds nothing (no compose.include codes, no match-text names)")
