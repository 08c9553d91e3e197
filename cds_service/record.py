"""The patient record a hook call is judged on: a typed view over the prefetched or fetched resources.

Resources stay plain JSON dicts, sorted by type. Filtering is cheap (resourceType, status, codes);
``fhir.resources`` validation runs only on the few resources a rule is about to cite (``cited``),
because validating a whole 240 KB record costs ten times more than decoding it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from cds_service.fhir_models import model_for
from cds_service.knowledge.classify import MedicationFacts, classify, medication_facts
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.textmatch import (
    TEXT_NEGATION,
    CueTable,
    NameHit,
    concept_texts,
    find_name,
    first_words,
    may_name,
    words_of,
)
from cds_service.knowledge.valuesets import CodeMatcher

ORDER_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})
# Statuses of a current prescription: what "the patient is on" means for interactions and titration.
CURRENT_STATUSES = frozenset({"active", "on-hold"})
# verificationStatus codes that mean "this is not true of the patient".
NOT_TRUE = frozenset({"refuted", "entered-in-error"})
# (system, code) -> the resources coded so
CodeIndex = dict[tuple[Any, Any], list[Mapping[str, Any]]]


@dataclass(frozen=True)
class Order:
    """A medication order with what it is: its classes and the facts that decided them."""

    resource: Mapping[str, Any]
    facts: MedicationFacts
    classes: frozenset[str]
    draft: bool  # from the hook context (draftOrders / medications), not from the record

    @property
    def reference(self) -> str:
        return f"{self.resource.get('resourceType', 'MedicationRequest')}/{self.resource.get('id', '')}"

    @property
    def name(self) -> str:
        return self.facts.display_name

    def is_(self, drug_class: str) -> bool:
        return drug_class in self.classes


def classify_order(
    resource: Mapping[str, Any],
    knowledge: Knowledge,
    *,
    draft: bool,
    medications: Mapping[str, Mapping[str, Any]] | None = None,
) -> Order:
    facts = medication_facts(resource, medications)
    return Order(resource=resource, facts=facts, classes=classify(facts, knowledge), draft=draft)


def bundle_resources(value: Any) -> list[Mapping[str, Any]]:
    """The resources in a prefetch value: a Bundle's entries, a single resource, or nothing (null)."""
    # Decoded JSON objects are dicts; isinstance(dict) is several times cheaper than the Mapping ABC
    # over the hundreds of entries of a long record.
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") != "Bundle":
        return [value] if isinstance(value.get("resourceType"), str) else []
    entries = value.get("entry")
    return [
        resource
        for entry in (entries if isinstance(entries, list) else ())
        if isinstance(entry, dict)
        and isinstance(resource := entry.get("resource"), dict)
        and isinstance(resource.get("resourceType"), str)
    ]


def coded(resource: Mapping[str, Any], element: str) -> str | None:
    """The first code of a CodeableConcept element such as clinicalStatus or verificationStatus."""
    concept = resource.get(element)
    if isinstance(concept, str):  # STU3 AllergyIntolerance and DSTU2 use plain codes
        return concept
    if isinstance(concept, Mapping):
        for coding in concept.get("coding") or []:
            if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                return coding["code"]
    return None


def codings(resource: Mapping[str, Any], element: str = "code") -> list[Mapping[str, Any]]:
    concept = resource.get(element)
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]


def concept_text(resource: Mapping[str, Any], element: str = "code") -> str:
    """A readable name for a coded element: its text, else the first display, else the first code."""
    concept = resource.get(element)
    if not isinstance(concept, Mapping):
        return "unnamed"
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return concept["text"].strip()
    for coding in codings(resource, element):
        if coding.get("display"):
            return str(coding["display"])
    for coding in codings(resource, element):
        if coding.get("code"):
            return str(coding["code"])
    return "unnamed"


def reference_to(value: Any) -> str | None:
    """ "Type/id" of a Reference element, relative or absolute ("https://…/fhir/Patient/1" -> "Patient/1")."""
    if isinstance(value, Mapping) and isinstance(value.get("reference"), str):
        return "/".join(value["reference"].rstrip("/").split("/")[-2:])
    return None


def is_refuted(resource: Mapping[str, Any]) -> bool:
    return coded(resource, "verificationStatus") in NOT_TRUE


@dataclass(frozen=True)
class ConceptMatch:
    """Why a condition or an allergy is in a value set: by a code, or by a name in one of its texts."""

    resource: Mapping[str, Any]
    valueset: str  # the value set's title
    by: str  # "code" or "name"
    what: str  # "system|code", or the name as the text writes it
    where: str  # the element it was read from: "code.coding[0]", "code.text", "reaction[0].substance.text"
    cue: str | None = None  # by name: a doubt cue that is kept, not excluded ("suspected")


@dataclass(frozen=True)
class TextExclusion:
    """A name found in a text but not counted, and the cue that excluded it (for --explain)."""

    resource: Mapping[str, Any]
    valueset: str
    hit: NameHit


@dataclass
class PatientRecord:
    """Everything the rules may read about one patient for one hook call."""

    patient: Mapping[str, Any] | None
    current_orders: list[Order]
    conditions: list[Mapping[str, Any]]
    allergies: list[Mapping[str, Any]]
    observations: list[Mapping[str, Any]]
    # prefetch key -> why it could not be had (the rules say which checks did not run)
    unavailable: dict[str, str] = field(default_factory=dict)
    # "Medication/x" -> why the Medication a medication order references could not be had
    unresolved_medications: dict[str, str] = field(default_factory=dict)
    # The resources the rules cited, checked against FHIR R4 only when --explain asks (not_valid_r4).
    _cited: dict[int, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    # Lazily built (system, code) indexes of the observations and the conditions, and what was looked up.
    _indexes: dict[str, dict[tuple[Any, Any], list[Mapping[str, Any]]]] = field(
        default_factory=dict, repr=False
    )
    _lookups: dict[tuple[str, str], list[Mapping[str, Any]]] = field(default_factory=dict, repr=False)
    # The name backstop: cues that exclude a name (cards/text-negation.yaml), and what was decided, for
    # --explain: how each condition or allergy matched a value set, and the names that did not count.
    text_cues: CueTable = field(default_factory=CueTable.empty, repr=False)
    matches: list[ConceptMatch] = field(default_factory=list)
    text_exclusions: list[TextExclusion] = field(default_factory=list)
    _match_of: dict[tuple[str, int], ConceptMatch] = field(default_factory=dict, repr=False)
    # id() -> the (field, text) pairs of a condition or allergy, and their words
    _texts: dict[int, tuple[list[tuple[str, str]], frozenset[str]]] = field(default_factory=dict, repr=False)
    _words: dict[str, dict[str, list[Mapping[str, Any]]]] = field(default_factory=dict, repr=False)

    def _coded_in(self, kind: str, matcher: CodeMatcher) -> list[Mapping[str, Any]]:
        """The resources of ``kind`` with a code in ``matcher``'s value set, in record order.

        A long record holds hundreds of observations but a handful of distinct codes: index them by
        code once, then each value set costs one membership test per distinct code, not per resource.
        """
        cached = self._lookups.get((kind, matcher.url))
        if cached is not None:
            return cached
        index = self._indexes.get(kind)
        if index is None:
            index = self._indexes[kind] = _index_by_code(getattr(self, kind))
        ids = {
            id(r) for (system, code), rs in index.items() if matcher.matches_code(system, code) for r in rs
        }
        result = [r for r in getattr(self, kind) if id(r) in ids] if ids else []
        self._lookups[(kind, matcher.url)] = result
        return result

    def observations_in(self, matcher: CodeMatcher) -> list[Mapping[str, Any]]:
        """Observations coded in ``matcher``'s value set, newest first (undated last)."""
        key = ("observations-latest", matcher.url)
        cached = self._lookups.get(key)
        if cached is None:
            cached = self._lookups[key] = latest(self._coded_in("observations", matcher))
        return cached

    def conditions_in(self, matcher: CodeMatcher) -> list[Mapping[str, Any]]:
        """Conditions in ``matcher``'s value set (any status), in record order: by code, else by a name.

        The name backstop reads ``code.text`` and the coding displays of the conditions whose code is not
        in the value set; a name counts unless a cue excludes it ("no seizures", "family history of
        epilepsy", "rule out seizure"). A code always wins: it is not second-guessed by its text.
        """
        key = ("conditions-matched", matcher.url)
        cached = self._lookups.get(key)
        if cached is not None:
            return cached
        coded = {id(r) for r in self._coded_in("conditions", matcher)}
        named = self._may_name("conditions", matcher)
        result = []
        for condition in self.conditions if coded or named else ():
            concepts = [("code", condition.get("code"))]
            if id(condition) in coded:
                match = _by_code(condition, matcher, concepts)
            elif id(condition) in named:
                match = self._by_name(condition, matcher, "conditions")
            else:
                continue
            if match is not None:
                self._record_match(matcher, match)
                result.append(condition)
        self._lookups[key] = result
        return result

    def _may_name(self, kind: str, matcher: CodeMatcher) -> set[int]:
        """id() of the resources whose texts hold the first word of one of ``matcher``'s names: the only
        ones the name backstop must read. Like the code index, a word index is built once per record, so a
        value set costs a lookup per name, not a regex per resource."""
        if matcher.names is None:
            return set()
        keys = first_words(matcher.names)
        if keys is None:  # a name that does not start with a word: read every resource
            return {id(r) for r in getattr(self, kind)}
        index = self._words.get(kind)
        if index is None:
            index = self._words[kind] = {}
            for resource in getattr(self, kind):
                for word in self._texts_of(resource, kind)[1]:
                    index.setdefault(word, []).append(resource)
        return {id(r) for word in keys.intersection(index) for r in index[word]}

    def _texts_of(
        self, resource: Mapping[str, Any], kind: str
    ) -> tuple[list[tuple[str, str]], frozenset[str]]:
        """The (field, text) pairs of a condition's code or an allergy's code and reaction substances,
        and their words; read once per resource."""
        cached = self._texts.get(id(resource))
        if cached is None:
            concepts = (
                _allergy_concepts(resource) if kind == "allergies" else [("code", resource.get("code"))]
            )
            texts = [text for where, concept in concepts for text in concept_texts(concept, where)]
            cached = self._texts[id(resource)] = (texts, words_of(text for _, text in texts))
        return cached

    def allergies_in(self, matchers: Sequence[CodeMatcher]) -> list[Mapping[str, Any]]:
        """Allergies (any status) whose code or a reaction substance is in one of the value sets, by
        code, else by a name in their texts that no cue excludes ("no known allergy to ...")."""
        key = ("allergies-matched", " ".join(matcher.url for matcher in matchers))
        cached = self._lookups.get(key)
        if cached is not None:
            return cached
        result = []
        for allergy in self.allergies:
            concepts = _allergy_concepts(allergy)
            found = next(
                ((matcher, m) for matcher in matchers if (m := _by_code(allergy, matcher, concepts))), None
            )
            for matcher in matchers if found is None else ():
                if (match := self._by_name(allergy, matcher, "allergies")) is not None:
                    found = (matcher, match)
                    break
            if found is not None:
                self._record_match(*found)
                result.append(allergy)
        self._lookups[key] = result
        return result

    def match_of(self, matcher: CodeMatcher, resource: Mapping[str, Any]) -> ConceptMatch | None:
        """How ``resource`` matched ``matcher``'s value set (after ``conditions_in``/``allergies_in``)."""
        return self._match_of.get((matcher.url, id(resource)))

    def _record_match(self, matcher: CodeMatcher, match: ConceptMatch) -> None:
        key = (matcher.url, id(match.resource))
        if key not in self._match_of:
            self._match_of[key] = match
            self.matches.append(match)

    def _by_name(self, resource: Mapping[str, Any], matcher: CodeMatcher, kind: str) -> ConceptMatch | None:
        if matcher.names is None:
            return None
        texts, words = self._texts_of(resource, kind)
        if not may_name(matcher.names, words):  # a set test spares the regex
            return None
        hit, excluded = find_name(texts, matcher.names, self.text_cues)
        self.text_exclusions.extend(TextExclusion(resource, matcher.title, e) for e in excluded if e.excluded)
        if hit is None:
            return None
        cue = hit.cue.phrase if hit.cue is not None else None
        return ConceptMatch(resource, matcher.title, "name", hit.name, hit.field, cue)

    def birth_date(self) -> date | None:
        # A partial date (2019 or 2019-03) gives the LATEST day it can mean, so the youngest age it can
        # mean: the age checks (under 6 years, the child dose row) then err towards a warning.
        return parse_date((self.patient or {}).get("birthDate"), last_day=True)

    def age_on(self, day: date) -> int | None:
        """Age in whole years on ``day`` (None without a birth date)."""
        birth = self.birth_date()
        return None if birth is None else age_in_years(birth, day)

    def gender(self) -> str | None:
        value = (self.patient or {}).get("gender")
        return value if isinstance(value, str) else None

    def cited(self, resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The resources a rule is about to cite, kept for a check against the FHIR R4 model (R4B).

        A resource that fails the check is cited all the same (``not_valid_r4`` says so for --explain).
        The rules read only codes, statuses and dates, defensively, at the dictionary level; a seizure
        history or an allergy must not vanish from the cards over one malformed field, or because the
        EHR sent an STU3 resource on the STU3 medication-prescribe hook.
        """
        kept = list(resources)
        for resource in kept:
            self._cited.setdefault(id(resource), resource)
        return kept

    @property
    def not_valid_r4(self) -> list[str]:
        """For each cited resource that is not valid FHIR R4, "Condition/x: ...", in the order cited.

        Checked here, when --explain asks, not on every hook call: the answer never changes a card."""
        problems = []
        for resource in self._cited.values():
            model = model_for(str(resource.get("resourceType")))
            if model is None:
                continue
            try:
                model.model_validate(resource)
            except (ValidationError, ValueError, TypeError):
                problems.append(
                    f"{resource.get('resourceType')}/{resource.get('id', '?')}: "
                    "not valid FHIR R4, cited for what the rule could read"
                )
        return problems


def _allergy_concepts(allergy: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The allergy's code and the substances of its reactions, with where each is."""
    concepts: list[tuple[str, Any]] = [("code", allergy.get("code"))]
    for index, reaction in enumerate(allergy.get("reaction") or ()):
        if isinstance(reaction, Mapping):
            concepts.append((f"reaction[{index}].substance", reaction.get("substance")))
    return concepts


def _by_code(
    resource: Mapping[str, Any], matcher: CodeMatcher, concepts: list[tuple[str, Any]]
) -> ConceptMatch | None:
    for where, concept in concepts:
        if not isinstance(concept, Mapping):
            continue
        for index, coding in enumerate(concept.get("coding") or ()):
            if isinstance(coding, Mapping) and matcher.matches_coding(coding):
                what = f"{coding.get('system')}|{coding.get('code')}"
                return ConceptMatch(resource, matcher.title, "code", what, f"{where}.coding[{index}]")
    return None


def _index_by_code(resources: Iterable[Mapping[str, Any]]) -> CodeIndex:
    """(system, code) -> the resources coded so. One pass over a long record, dicts only (decoded JSON)."""
    index: CodeIndex = {}
    for resource in resources:
        concept = resource.get("code")
        if not isinstance(concept, dict):
            continue
        for coding in concept.get("coding") or ():
            if isinstance(coding, dict):
                key = (coding.get("system"), coding.get("code"))
                bucket = index.get(key)
                if bucket is None:
                    index[key] = [resource]
                elif bucket[-1] is not resource:  # the same code twice in one resource
                    bucket.append(resource)
    return index


def build_record(
    data: Mapping[str, Any],
    knowledge: Knowledge,
    *,
    unavailable: Mapping[str, str] | None = None,
) -> PatientRecord:
    """Sort the resources of every prefetch value by type; classify current medication orders."""
    patient: Mapping[str, Any] | None = None
    orders: list[Mapping[str, Any]] = []
    medications: dict[str, Mapping[str, Any]] = {}
    conditions: list[Mapping[str, Any]] = []
    allergies: list[Mapping[str, Any]] = []
    observations: list[Mapping[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for value in data.values():
        for resource in bundle_resources(value):
            kind = resource["resourceType"]
            # The same resource may come through two keys (or two pages): keep it once.
            resource_id = resource.get("id")
            if resource_id:
                identity = (kind, resource_id)
                if identity in seen:
                    continue
                seen.add(identity)
            if kind == "Patient":
                patient = patient or resource
            elif kind in ORDER_TYPES:
                if resource.get("status") in CURRENT_STATUSES:
                    orders.append(resource)
            elif kind == "Medication" and resource.get("id"):
                medications[f"Medication/{resource['id']}"] = resource
            elif kind == "Condition":
                conditions.append(resource)
            elif kind == "AllergyIntolerance":
                allergies.append(resource)
            elif kind == "Observation" and resource.get("status") not in {"entered-in-error", "cancelled"}:
                observations.append(resource)
    current = [classify_order(o, knowledge, draft=False, medications=medications) for o in orders]
    return PatientRecord(
        patient=patient,
        current_orders=current,
        conditions=conditions,
        allergies=allergies,
        observations=observations,
        unavailable=dict(unavailable or {}),
        text_cues=_text_cues(knowledge),
    )


def _text_cues(knowledge: Knowledge) -> CueTable:
    cues = knowledge.data.get(TEXT_NEGATION)
    return cues if isinstance(cues, CueTable) else CueTable.empty()


# ---------------------------------------------------------------- helpers the rules share
# Cheap, dictionary-level readings of dates and quantities; no model validation here.


def parse_date(value: Any, *, last_day: bool = False) -> date | None:
    """The calendar day of a FHIR date or dateTime; a partial date (2019, 2019-03) gives its first day,
    or its last with ``last_day``."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    parts = value[:10].split("-")
    try:
        year = int(parts[0])
        if len(parts) > 2:
            return date(year, int(parts[1]), int(parts[2]))
        if len(parts) == 2:
            month = int(parts[1])
            first = date(year, month, 1)
            if not last_day:
                return first
            following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
            return following - timedelta(days=1)
        return date(year, 12, 31) if last_day else date(year, 1, 1)
    except (ValueError, IndexError):
        return None


def age_in_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def effective_date(observation: Mapping[str, Any]) -> date | None:
    """When an observation was true: effective[x] (a period's end), else issued."""
    period = observation.get("effectivePeriod")
    candidates = [
        observation.get("effectiveDateTime"),
        observation.get("effectiveInstant"),
        period.get("end") or period.get("start") if isinstance(period, Mapping) else None,
        observation.get("issued"),
    ]
    for candidate in candidates:
        day = parse_date(candidate)
        if day is not None:
            return day
    return None


def has_code(resource: Mapping[str, Any], matcher: Any, element: str = "code") -> bool:
    """Whether any coding of ``element`` is in the value set compiled into ``matcher``."""
    return any(matcher.matches_coding(coding) for coding in codings(resource, element))


def _day_text(observation: Mapping[str, Any]) -> str:
    """The day ``effective_date`` reads, as ISO text ("" when undated). ISO days sort as strings, so
    ordering hundreds of observations needs no date parsing."""
    common = observation.get("effectiveDateTime")  # nearly every observation: answer it first
    if isinstance(common, str) and common[:4].isdigit():
        return common[:10]
    period = observation.get("effectivePeriod")
    for candidate in (
        observation.get("effectiveDateTime"),
        observation.get("effectiveInstant"),
        (period.get("end") or period.get("start")) if isinstance(period, dict) else None,
        observation.get("issued"),
    ):
        if isinstance(candidate, str) and candidate[:4].isdigit():
            return candidate[:10]
    return ""


def latest(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Observations newest first (undated ones last)."""
    return sorted(resources, key=_day_text, reverse=True)


def current_condition(condition: Mapping[str, Any]) -> bool:
    """Active, recurring or relapsed (or status not recorded) and not refuted: a present problem."""
    if is_refuted(condition):
        return False
    if condition.get("abatementDateTime") or condition.get("abatementPeriod"):
        status = coded(condition, "clinicalStatus")
        return status in {"active", "recurrence", "relapse"}
    return coded(condition, "clinicalStatus") not in {"inactive", "resolved", "remission"}
