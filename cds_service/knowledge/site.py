"""A site's own knowledge (``CDS_SITE_KNOWLEDGE``): codes added to the shipped value sets, and tuning.

The directory holds
- ``valuesets/<name>.valueset.json``: a FHIR ValueSet extending the shipped value set ``<name>``: its
  ``compose.include`` codes and its match-text names are added. It never replaces the shipped file, so
  upstream fixes still arrive; a value set the service does not ship is refused (nothing would read it).
- ``site.yaml``: per card topic, ``enabled: false`` (no card) or ``indicator:`` (info, warning, critical;
  ``variants:`` for one variant). A contraindication topic is turned off only with
  ``acknowledge_contraindication_off: true`` beside it; the data-unavailable topic is never turned off.
- notes for people (``*.md``, ``*.txt``), which the service does not read.
Anything else is refused, so a file that looks like it changes something always does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cds_service.knowledge.requirements import CONTRAINDICATIONS, DATA_UNAVAILABLE

if TYPE_CHECKING:
    from cds_service.knowledge.loader import TopicDefinition

SITE_FILE = "site.yaml"
VALUESET_SUFFIX = ".valueset.json"
NOTE_SUFFIXES = (".md", ".txt")
INDICATORS = ("info", "warning", "critical")
_TOPIC_KEYS = {"enabled", "indicator", "variants", "acknowledge_contraindication_off"}


class SiteError(ValueError):
    """The site directory is unusable; the message names the file."""


@dataclass(frozen=True)
class TopicTuning:
    enabled: bool = True
    indicator: str | None = None  # the topic's and its variants' indicator
    variants: Mapping[str, str] = field(default_factory=dict)  # variant name -> indicator


@dataclass(frozen=True)
class SiteFiles:
    """What the site directory holds, read and checked for shape (not yet against the shipped files)."""

    directory: Path
    valuesets: Mapping[str, Path]  # shipped value set name -> the site file extending it
    tuning: Mapping[str, TopicTuning]


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def read_site(directory: Path, read_yaml: Any) -> SiteFiles:
    """List and shape-check the site directory; ``read_yaml(path)`` parses YAML (raising its own error)."""
    if not directory.is_dir():
        raise SiteError(f"{directory}: site knowledge directory not found")
    valuesets: dict[str, Path] = {}
    tuning: Mapping[str, TopicTuning] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not _is_hidden(p, directory)):
        relative = path.relative_to(directory)
        if relative.as_posix() == SITE_FILE:
            tuning = _tuning(read_yaml(path), path)
        elif (
            len(relative.parts) == 2
            and relative.parts[0] == "valuesets"
            and path.name.endswith(VALUESET_SUFFIX)
        ):
            valuesets[path.name.removesuffix(VALUESET_SUFFIX)] = path
        elif path.suffix not in NOTE_SUFFIXES:
            raise SiteError(
                f"{path}: not a site knowledge file (the service reads {SITE_FILE} and "
                f"valuesets/<name>{VALUESET_SUFFIX}; notes end in .md or .txt)"
            )
    return SiteFiles(directory, valuesets, tuning)


def _tuning(data: Any, path: Path) -> Mapping[str, TopicTuning]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SiteError(f"{path}: expected a mapping with a 'topics' key")
    unknown = sorted(set(map(str, data)) - {"topics"})
    if unknown:
        raise SiteError(f"{path}: unknown key {unknown[0]!r} (only 'topics' is read)")
    topics = data.get("topics") or {}
    if not isinstance(topics, Mapping):
        raise SiteError(f"{path}: 'topics' must map topic codes to settings")
    return {str(topic): _topic_tuning(str(topic), spec, path) for topic, spec in topics.items()}


def _indicator(value: Any, path: Path, where: str) -> str:
    if value not in INDICATORS:
        raise SiteError(f"{path}: {where} must be one of {', '.join(INDICATORS)}, got {value!r}")
    return str(value)


def _topic_tuning(topic: str, spec: Any, path: Path) -> TopicTuning:
    where = f"topics.{topic}"
    if not isinstance(spec, Mapping) or not spec:
        raise SiteError(f"{path}: {where} must set enabled, indicator or variants")
    unknown = sorted(set(map(str, spec)) - _TOPIC_KEYS)
    if unknown:
        raise SiteError(
            f"{path}: {where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOPIC_KEYS))})"
        )
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SiteError(f"{path}: {where}.enabled must be true or false")
    acknowledged = spec.get("acknowledge_contraindication_off", False)
    if not isinstance(acknowledged, bool):
        raise SiteError(f"{path}: {where}.acknowledge_contraindication_off must be true or false")
    if not enabled:
        if topic == DATA_UNAVAILABLE:
            raise SiteError(
                f"{path}: {where} cannot be turned off: the service never goes quiet about a check it "
                "could not run"
            )
        if topic in CONTRAINDICATIONS and not acknowledged:
            raise SiteError(
                f"{path}: {where} is a contraindication: turning it off also needs "
                "acknowledge_contraindication_off: true"
            )
        if "indicator" in spec or "variants" in spec:
            raise SiteError(f"{path}: {where} is turned off: an indicator for it would never show")
    if acknowledged and (enabled or topic not in CONTRAINDICATIONS):
        raise SiteError(
            f"{path}: {where}.acknowledge_contraindication_off only goes with enabled: false on "
            f"{' or '.join(CONTRAINDICATIONS)}"
        )
    indicator = _indicator(spec["indicator"], path, f"{where}.indicator") if "indicator" in spec else None
    variants = spec.get("variants") or {}
    if not isinstance(variants, Mapping):
        raise SiteError(f"{path}: {where}.variants must map variant names to indicators")
    return TopicTuning(
        enabled=enabled,
        indicator=indicator,
        variants={
            str(name): _indicator(value, path, f"{where}.variants.{name}") for name, value in variants.items()
        },
    )


def tune_topic(definition: TopicDefinition, tuning: TopicTuning, path: Path) -> TopicDefinition:
    """The topic definition with the site's indicators; checked against it."""
    unknown = sorted(set(tuning.variants) - set(definition.variants))
    if unknown:
        known = ", ".join(sorted(definition.variants)) or "none"
        raise SiteError(
            f"{path}: topics.{definition.topic} has no variant {unknown[0]!r} (variants: {known})"
        )
    indicator = tuning.indicator or definition.indicator
    variants = {
        name: replace(variant, indicator=tuning.variants.get(name, tuning.indicator or variant.indicator))
        for name, variant in definition.variants.items()
    }
    if not definition.override_reasons and {indicator, *(v.indicator for v in variants.values())} - {"info"}:
        raise SiteError(
            f"{path}: topics.{definition.topic} has no override_reasons, so it can only be info "
            "(warning and critical cards need override reasons)"
        )
    return replace(definition, indicator=indicator, variants=variants)


def describe(site: SiteFiles | None) -> dict[str, Any] | None:
    """What the site changes, for /readyz and ``knowledge check``: value sets extended, topics off,
    indicators set (``topic`` or ``topic.variant`` -> indicator)."""
    if site is None:
        return None
    indicators: dict[str, str] = {}
    for topic, tuning in site.tuning.items():
        if tuning.indicator:
            indicators[topic] = tuning.indicator
        for name, value in tuning.variants.items():
            indicators[f"{topic}.{name}"] = value
    return {
        "valueSetsExtended": sorted(site.valuesets),
        "topicsOff": sorted(topic for topic, tuning in site.tuning.items() if not tuning.enabled),
        "indicators": dict(sorted(indicators.items())),
    }
