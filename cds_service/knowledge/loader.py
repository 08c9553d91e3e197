"""Load and validate the knowledge base in ``cards/`` once, at start-up.

Everything a pharmacist reviews — card texts, override reasons, code lists, dose caps — lives there as
data. A broken file stops the start with a message naming the file and the problem, never a half-loaded
rule set.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cds_service.knowledge.textmatch import TEXT_NEGATION, CueError, compile_cues
from cds_service.knowledge.valuesets import CodeMatcher, ValueSetError, compile_valueset

INDICATORS = ("info", "warning", "critical")


class KnowledgeError(ValueError):
    """The knowledge base is unusable; the message names the file."""


@dataclass(frozen=True)
class OverrideReason:
    code: str
    display: str


@dataclass(frozen=True)
class CardVariant:
    indicator: str
    summary: str
    detail: str


@dataclass(frozen=True)
class TopicDefinition:
    """One card topic as a pharmacist wrote it in ``cards/topics/<topic>.yaml``."""

    topic: str
    display: str
    indicator: str
    section: str
    trigger: str
    summary: str
    detail: str
    override_reasons: tuple[OverrideReason, ...]
    variants: Mapping[str, CardVariant] = field(default_factory=dict)
    suggestions: Mapping[str, str] = field(default_factory=dict)

    def variant(self, name: str | None) -> CardVariant:
        if name is None:
            return CardVariant(self.indicator, self.summary, self.detail)
        return self.variants[name]


@dataclass(frozen=True)
class Label:
    label: str
    revised: str
    url: str
    source_label: str
    topic_system: str
    override_system: str


@dataclass(frozen=True)
class Knowledge:
    label: Label
    topics: Mapping[str, TopicDefinition]
    valuesets: Mapping[str, CodeMatcher]
    data: Mapping[str, Any]  # other YAML tables by file stem (e.g. "dose-caps")
    version: str  # hash of every file under cards/: the rule version recorded with each card

    def valueset(self, name: str) -> CodeMatcher:
        try:
            return self.valuesets[name]
        except KeyError as exc:
            raise KnowledgeError(f"cards/valuesets/{name}.valueset.json is missing") from exc

    def topic(self, name: str) -> TopicDefinition:
        try:
            return self.topics[name]
        except KeyError as exc:
            raise KnowledgeError(f"cards/topics/{name}.yaml is missing") from exc


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path}: cannot read YAML: {exc}") from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KnowledgeError(f"{path}: cannot read JSON: {exc}") from exc


def _require_str(data: Mapping[str, Any], key: str, origin: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeError(f"{origin}: '{key}' must be a non-empty string")
    return value


def _check_template(text: str, origin: Path, key: str) -> None:
    try:
        list(string.Formatter().parse(text))
    except ValueError as exc:
        raise KnowledgeError(f"{origin}: '{key}' is not a valid template: {exc}") from exc


def _load_topic(path: Path, displays: Mapping[str, str]) -> TopicDefinition:
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise KnowledgeError(f"{path}: expected a mapping")
    topic = _require_str(data, "topic", path)
    if topic != path.stem:
        raise KnowledgeError(f"{path}: topic '{topic}' must match the file name")
    if topic not in displays:
        raise KnowledgeError(f"{path}: topic '{topic}' is not in card-topics.codesystem.json")
    indicator = _require_str(data, "indicator", path)
    if indicator not in INDICATORS:
        raise KnowledgeError(f"{path}: indicator must be one of {', '.join(INDICATORS)}")
    reasons = []
    for reason in data.get("override_reasons") or []:
        if not isinstance(reason, dict) or not reason.get("code") or not reason.get("display"):
            raise KnowledgeError(f"{path}: every override reason needs a code and a display")
        reasons.append(OverrideReason(str(reason["code"]), str(reason["display"])))
    if indicator != "info" and not reasons:
        raise KnowledgeError(f"{path}: warning and critical cards need override_reasons")
    variants: dict[str, CardVariant] = {}
    for name, spec in (data.get("variants") or {}).items():
        if not isinstance(spec, dict):
            raise KnowledgeError(f"{path}: variant '{name}' must be a mapping")
        variant_indicator = spec.get("indicator", indicator)
        if variant_indicator not in INDICATORS:
            raise KnowledgeError(f"{path}: variant '{name}' has an unknown indicator")
        variants[name] = CardVariant(
            variant_indicator,
            spec.get("summary", data.get("summary", "")),
            spec.get("detail", data.get("detail", "")),
        )
    definition = TopicDefinition(
        topic=topic,
        display=displays[topic],
        indicator=indicator,
        section=str(data.get("section", "")).strip(),
        trigger=" ".join(_require_str(data, "trigger", path).split()),
        summary=_require_str(data, "summary", path),
        detail=_require_str(data, "detail", path),
        override_reasons=tuple(reasons),
        variants=variants,
        suggestions={str(k): str(v) for k, v in (data.get("suggestions") or {}).items()},
    )
    for key, text in [("summary", definition.summary), ("detail", definition.detail)] + [
        (f"variants.{name}", v.summary + v.detail) for name, v in variants.items()
    ]:
        _check_template(text, path, key)
    return definition


def _fingerprint(cards_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in cards_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(cards_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load_knowledge(cards_dir: Path) -> Knowledge:
    """Read every file under ``cards_dir``; raise KnowledgeError naming the first broken one."""
    if not cards_dir.is_dir():
        raise KnowledgeError(f"{cards_dir}: knowledge directory not found")
    label_data = _read_yaml(cards_dir / "label.yaml")
    if not isinstance(label_data, dict):
        raise KnowledgeError(f"{cards_dir / 'label.yaml'}: expected a mapping")
    label_path = cards_dir / "label.yaml"
    label = Label(
        label=_require_str(label_data, "label", label_path),
        revised=_require_str(label_data, "revised", label_path),
        url=_require_str(label_data, "url", label_path),
        source_label=_require_str(label_data, "source_label", label_path),
        topic_system=_require_str(label_data, "topic_system", label_path),
        override_system=_require_str(label_data, "override_system", label_path),
    )
    codesystem = _read_json(cards_dir / "card-topics.codesystem.json")
    if codesystem.get("url") != label.topic_system:
        raise KnowledgeError("card-topics.codesystem.json: url must equal label.yaml topic_system")
    displays = {c["code"]: c.get("display", c["code"]) for c in codesystem.get("concept", [])}

    topics = {
        path.stem: _load_topic(path, displays) for path in sorted((cards_dir / "topics").glob("*.yaml"))
    }
    valuesets: dict[str, CodeMatcher] = {}
    for path in sorted((cards_dir / "valuesets").glob("*.valueset.json")):
        try:
            valuesets[path.name.removesuffix(".valueset.json")] = compile_valueset(
                _read_json(path), str(path)
            )
        except ValueSetError as exc:
            raise KnowledgeError(str(exc)) from exc
    data = {
        path.stem: _read_yaml(path) for path in sorted(cards_dir.glob("*.yaml")) if path.name != "label.yaml"
    }
    if TEXT_NEGATION in data:  # the name backstop's cues, compiled once (cds_service.knowledge.textmatch)
        try:
            data[TEXT_NEGATION] = compile_cues(data[TEXT_NEGATION], str(cards_dir / f"{TEXT_NEGATION}.yaml"))
        except CueError as exc:
            raise KnowledgeError(str(exc)) from exc
    return Knowledge(
        label=label, topics=topics, valuesets=valuesets, data=data, version=_fingerprint(cards_dir)
    )
