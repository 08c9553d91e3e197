"""Load and validate the knowledge base in ``cards/`` once, at start-up.

Everything a pharmacist reviews — card texts, override reasons, code lists, dose caps — lives there as
data. A broken or missing file (every file a rule declares, see ``requirements.py``) stops the
start with one line naming the file and the problem, never a half-loaded rule set. A site directory
(``site.py``) adds codes and tunes topics on top; ``knowledge_version`` names the result.
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

from cds_service.knowledge import requirements
from cds_service.knowledge.site import (
    NOTE_SUFFIXES,
    SITE_FILE,
    SiteError,
    SiteFiles,
    describe,
    read_site,
    tune_topic,
)
from cds_service.knowledge.templates import fill
from cds_service.knowledge.textmatch import TEXT_NEGATION, CueError, compile_cues
from cds_service.knowledge.valuesets import CodeMatcher, ValueSetError, check_addition, compile_valueset

INDICATORS = ("info", "warning", "critical")
CODESYSTEM = "card-topics.codesystem.json"


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
    # Sentences a rule puts into the texts (``{advice}``, ``{direction}``...), by name.
    sentences: Mapping[str, str] = field(default_factory=dict)
    # The labels of the card's suggestions, by name.
    suggestions: Mapping[str, str] = field(default_factory=dict)

    def variant(self, name: str | None) -> CardVariant:
        if name is None:
            return CardVariant(self.indicator, self.summary, self.detail)
        return self.variants[name]

    def say(self, key: str, /, **params: Any) -> str:
        """The sentence ``key`` with ``params`` filled in (the loader checked that it exists)."""
        return fill(self.sentences[key], params)

    def label(self, key: str, /, **params: Any) -> str:
        """The suggestion label ``key`` with ``params`` filled in."""
        return fill(self.suggestions[key], params)


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
    version: str  # knowledge_version(): the one identifier of the knowledge in force
    disabled_topics: frozenset[str] = frozenset()  # topics the site turned off: findings, no card
    site: Mapping[str, Any] | None = None  # what the site directory changes (site.describe), if any

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


def _one_line(error: Exception) -> str:
    # Parser messages span lines (YAML points at the column); the operator gets one line.
    return " ".join(str(getattr(error, "strerror", None) or error).split())


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{path}: cannot read YAML: {_one_line(exc)}") from exc


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KnowledgeError(f"{path}: cannot read JSON: {_one_line(exc)}") from exc


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
    data = read_yaml(path)
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
    texts = {}
    for key in ("sentences", "suggestions"):
        block = data.get(key) or {}
        if not isinstance(block, dict) or not all(
            isinstance(text, str) and text.strip() for text in block.values()
        ):
            raise KnowledgeError(f"{path}: '{key}' must map names to non-empty texts")
        texts[key] = {str(name): " ".join(text.split()) for name, text in block.items()}
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
        sentences=texts["sentences"],
        suggestions=texts["suggestions"],
    )
    for key, text in [
        ("summary", definition.summary),
        ("detail", definition.detail),
        *((f"variants.{name}", v.summary + v.detail) for name, v in variants.items()),
        *((f"{block}.{name}", text) for block in texts for name, text in texts[block].items()),
    ]:
        _check_template(text, path, key)
    return definition


def _version_files(directory: Path, *, site: bool) -> list[Path]:
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    # Notes in a site directory are for people; the service does not read them.
    return [p for p in files if not (site and p.suffix in NOTE_SUFFIXES)]


def knowledge_version(cards_dir: Path, site_dir: Path | None = None) -> str:
    """The one identifier of the knowledge in force: a hash of the names and contents of the shipped
    files and of the site's files (value sets and tuning). Shown on /readyz, in /metrics, in the
    X-Knowledge-Version header and in every audit row."""
    digest = hashlib.sha256()
    for label, directory in (("cards", cards_dir), ("site", site_dir)):
        if directory is None or not directory.is_dir():
            continue
        for path in _version_files(directory, site=label == "site"):
            digest.update(f"{label}/{path.relative_to(directory).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:12]


_KINDS: Mapping[Any, str] = {dict: "mapping", list: "list", requirements.NUMBER: "number"}


def _check_requirements(
    cards_dir: Path,
    displays: Mapping[str, str],
    topics: Mapping[str, TopicDefinition],
    valuesets: Mapping[str, CodeMatcher],
    data: Mapping[str, Any],
) -> None:
    """Every value set, table (and key) and topic the rules declare (and the service reads) is there,
    and every topic of the CodeSystem has a definition and a rule that produces it."""
    codesystem = cards_dir / CODESYSTEM
    needed = requirements.declared()
    for name, reader in needed.valuesets.items():
        if name not in valuesets:
            raise KnowledgeError(
                f"{cards_dir / 'valuesets' / (name + '.valueset.json')}: missing (read by {reader})"
            )
    for name in needed.tables:
        path = cards_dir / f"{name}.yaml"
        table = data.get(name)
        if table is None:
            raise KnowledgeError(f"{path}: missing or empty")
        if not isinstance(table, Mapping):
            raise KnowledgeError(f"{path}: expected a mapping")
        for key, expected in requirements.TABLE_KEYS.get(name, {}).items():
            if key not in table:
                raise KnowledgeError(f"{path}: '{key}' is missing")
            if not isinstance(table[key], expected) or isinstance(table[key], bool):
                raise KnowledgeError(f"{path}: '{key}' must be a {_KINDS.get(expected, expected)}")
    for topic in needed.topics:
        if topic not in displays:
            raise KnowledgeError(f"{codesystem}: topic '{topic}' is missing (the rules produce it)")
    for topic in displays:
        if topic not in topics:
            raise KnowledgeError(
                f"{cards_dir / 'topics' / (topic + '.yaml')}: missing (topic '{topic}' of {CODESYSTEM})"
            )
        if topic not in needed.topics:
            raise KnowledgeError(f"{codesystem}: topic '{topic}' has no rule that produces it")
    for (topic, block, name), reader in needed.texts.items():
        if name not in getattr(topics[topic], block):
            raise KnowledgeError(
                f"{cards_dir / 'topics' / (topic + '.yaml')}: {block}.{name} is missing (used by {reader})"
            )


def _load_valuesets(cards_dir: Path, site: SiteFiles | None) -> dict[str, CodeMatcher]:
    shipped = {
        path.name.removesuffix(".valueset.json"): path
        for path in sorted((cards_dir / "valuesets").glob("*.valueset.json"))
    }
    additions: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    for name, path in (site.valuesets if site else {}).items():
        if name not in shipped:
            raise KnowledgeError(
                f"{path}: the service ships no value set '{name}'; a site file extends one of "
                f"{cards_dir / 'valuesets'}/*.valueset.json by its name"
            )
        resource = read_json(path)
        try:
            check_addition(resource, str(path))
        except ValueSetError as exc:
            raise KnowledgeError(str(exc)) from exc
        additions.setdefault(name, []).append((resource, str(path)))
    valuesets: dict[str, CodeMatcher] = {}
    for name, path in shipped.items():
        try:
            valuesets[name] = compile_valueset(read_json(path), str(path), additions.get(name, ()))
        except ValueSetError as exc:
            raise KnowledgeError(str(exc)) from exc
    return valuesets


def _tune(
    topics: dict[str, TopicDefinition], site: SiteFiles | None
) -> tuple[dict[str, TopicDefinition], frozenset[str]]:
    """Topics with the site's indicators, and the topics the site turned off."""
    if site is None:
        return topics, frozenset()
    path = site.directory / SITE_FILE
    tuned = dict(topics)
    for topic, tuning in site.tuning.items():
        if topic not in topics:
            raise KnowledgeError(f"{path}: topics.{topic}: no such card topic (see {CODESYSTEM})")
        try:
            tuned[topic] = tune_topic(topics[topic], tuning, path)
        except SiteError as exc:
            raise KnowledgeError(str(exc)) from exc
    return tuned, frozenset(topic for topic, tuning in site.tuning.items() if not tuning.enabled)


def load_knowledge(cards_dir: Path, site_dir: Path | None = None) -> Knowledge:
    """Read every file under ``cards_dir`` (and the site directory, if any), check that everything the
    code reads is there, and raise KnowledgeError naming the first broken file."""
    if not cards_dir.is_dir():
        raise KnowledgeError(f"{cards_dir}: knowledge directory not found")
    label_data = read_yaml(cards_dir / "label.yaml")
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
    codesystem = read_json(cards_dir / CODESYSTEM)
    if not isinstance(codesystem, dict) or codesystem.get("url") != label.topic_system:
        raise KnowledgeError(f"{cards_dir / CODESYSTEM}: url must equal label.yaml topic_system")
    concepts = codesystem.get("concept")
    if not isinstance(concepts, list) or not all(isinstance(c, dict) and c.get("code") for c in concepts):
        raise KnowledgeError(f"{cards_dir / CODESYSTEM}: every concept needs a code")
    displays = {c["code"]: c.get("display", c["code"]) for c in concepts}

    topics = {
        path.stem: _load_topic(path, displays) for path in sorted((cards_dir / "topics").glob("*.yaml"))
    }
    try:
        site = read_site(site_dir, read_yaml) if site_dir is not None else None
    except SiteError as exc:
        raise KnowledgeError(str(exc)) from exc
    valuesets = _load_valuesets(cards_dir, site)
    data = {
        path.stem: read_yaml(path) for path in sorted(cards_dir.glob("*.yaml")) if path.name != "label.yaml"
    }
    _check_requirements(cards_dir, displays, topics, valuesets, data)
    topics, disabled = _tune(topics, site)
    # The name backstop's cues, compiled once (cds_service.knowledge.textmatch).
    try:
        data[TEXT_NEGATION] = compile_cues(data[TEXT_NEGATION], str(cards_dir / f"{TEXT_NEGATION}.yaml"))
    except CueError as exc:
        raise KnowledgeError(str(exc)) from exc
    return Knowledge(
        label=label,
        topics=topics,
        valuesets=valuesets,
        data=data,
        version=knowledge_version(cards_dir, site_dir),
        disabled_topics=disabled,
        site=describe(site),
    )
