"""``--explain``: for each rule, what data it looked at, what it computed and why it fired or not.

Built from the pipeline's Outcome: the data each prefetch key held (or why it could not be had), the
resources by id and date, the notes the rules wrote while they ran (dose arithmetic, CrCl, NAT2
phenotype, weight used...) and the cards. Which rule fired, did not fire or did not run, and with which
findings, comes from the engine's results (``Outcome.results``): no rule runs twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from rich.console import Console
from rich.text import Text

from cds_service import pipeline
from cds_service.data_keys import MEDICATION_REFERENCES, PREFETCH_KEYS
from cds_service.integration.offline import Evaluation
from cds_service.knowledge.loader import Knowledge
from cds_service.record import (
    ConceptMatch,
    Order,
    PatientRecord,
    TextExclusion,
    bundle_resources,
    concept_text,
)
from cds_service.rules import FIRED, NOT_FIRED, NOT_RUN, RULES
from cds_service.rules.base import Options, named_check

_DATE_FIELDS = (
    "effectiveDateTime",
    "issued",
    "onsetDateTime",
    "recordedDate",
    "authoredOn",
    "dateWritten",
    "birthDate",
)


def resource_date(resource: Mapping[str, Any]) -> str | None:
    for name in _DATE_FIELDS:
        value = resource.get(name)
        if isinstance(value, str):
            return value
    period = resource.get("effectivePeriod") or resource.get("onsetPeriod")
    if isinstance(period, Mapping) and isinstance(period.get("start"), str):
        return period["start"]
    return None


def _value(resource: Mapping[str, Any]) -> str | None:
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, Mapping) and "value" in quantity:
        return f"{quantity.get('value')} {quantity.get('unit') or quantity.get('code') or ''}".strip()
    concept = resource.get("valueCodeableConcept")
    if isinstance(concept, Mapping):
        return concept_text(resource, "valueCodeableConcept")
    if isinstance(resource.get("valueString"), str):
        return resource["valueString"]
    return None


def describe_resource(resource: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(resource.get("resourceType"))
    item: dict[str, Any] = {"ref": f"{kind}/{resource.get('id', '?')}", "date": resource_date(resource)}
    if kind == "Patient":
        item["what"] = (
            f"born {resource.get('birthDate', 'unknown')}, {resource.get('gender', 'gender unknown')}"
        )
    elif kind in {"MedicationRequest", "MedicationOrder"}:
        concept = "medicationCodeableConcept" if "medicationCodeableConcept" in resource else "medication"
        item["what"] = f"{concept_text(resource, concept)} ({resource.get('status', 'no status')})"
    else:
        item["what"] = concept_text(resource)
        value = _value(resource)
        if value:
            item["what"] += f" = {value}"
    return item


def _order(order: Order, unresolved: Mapping[str, str] | None = None) -> dict[str, Any]:
    item = {"ref": order.reference, "name": order.name, "classes": sorted(order.classes)}
    if order.facts.unresolved and not order.classes:  # named, so a reader knows the drug was not checked
        why = (unresolved or {}).get(order.facts.unresolved, "is not in the request")
        item["unidentified"] = f"{order.facts.unresolved} {why}"
    return item


def _fetched(outcome: pipeline.Outcome) -> Mapping[str, Any] | None:
    return outcome.data.medications if outcome.data is not None else None


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def _match(match: ConceptMatch) -> dict[str, Any]:
    item = {"ref": _ref(match.resource), "valueSet": match.valueset, "by": match.by, "what": match.what}
    item["where"] = match.where
    if match.cue:
        item["cue"] = match.cue
    return item


def _exclusion(exclusion: TextExclusion) -> dict[str, Any]:
    cue = exclusion.hit.cue
    return {
        "ref": _ref(exclusion.resource),
        "valueSet": exclusion.valueset,
        "name": exclusion.hit.name,
        "where": exclusion.hit.field,
        "cue": cue.phrase if cue else "",
        "kind": cue.kind if cue else "",
    }


def _matching(record: PatientRecord) -> dict[str, Any]:
    """How each condition and allergy the rules looked up matched (by code or by name), and the names in
    their texts that a cue kept from counting."""
    return {
        "matches": [_match(m) for m in record.matches],
        "textExclusions": [_exclusion(e) for e in record.text_exclusions],
    }


def _data(outcome: pipeline.Outcome) -> dict[str, Any]:
    data = outcome.data
    if data is None:
        return {}
    sections: dict[str, Any] = {}
    for key in [*PREFETCH_KEYS, MEDICATION_REFERENCES]:
        if key in data.unavailable:
            sections[key] = {"source": "unavailable", "why": data.unavailable[key], "resources": []}
        elif key in data.values:
            value = data.values[key]
            sections[key] = {
                "source": "FHIR server" if key in data.fetched else "prefetch",
                "resources": [describe_resource(r) for r in bundle_resources(value)],
            }
    return sections


def explanation(
    evaluation: Evaluation, knowledge: Knowledge, *, today: date, options: Options | None = None
) -> dict[str, Any]:
    """A JSON-able account of one evaluation (what ``--explain`` prints, and ``--json --explain`` emits)."""
    outcome = evaluation.outcome
    in_question, _ = pipeline.classify_drafts(evaluation.call, knowledge, _fetched(outcome))
    unresolved = outcome.data.unresolved if outcome.data is not None else {}
    result: dict[str, Any] = {
        "service": evaluation.call.service.id,
        "today": today.isoformat(),
        "orders": [_order(o, unresolved) for o in outcome.orders],
        "ordersInQuestion": [o.reference for o in in_question],
    }
    if outcome.data is None:
        result["verdict"] = (
            "no order in question is amifampridine or a drug that interacts with it: "
            "nothing was checked and no patient data was read"
        )
        result["rules"] = []
        return result
    result["data"] = _data(outcome)
    if outcome.record is not None:
        result["currentOrders"] = [_order(o, unresolved) for o in outcome.record.current_orders]
        result["notValidR4"] = list(outcome.record.not_valid_r4)
    notes: dict[str, list[str]] = {}
    for rule, text in outcome.notes:
        notes.setdefault(rule, []).append(text)
    done = {ran.rule.name: ran for ran in outcome.results.rules} if outcome.results else {}
    rules = []
    for spec in RULES:
        ran = done.get(spec.name)
        if ran is None:
            # The pipeline stops before the rules when amifampridine is neither ordered nor taken.
            status = "not run: no amifampridine in the orders in question or the current medications"
        elif ran.status == NOT_RUN:
            status = f"not run: {', '.join(ran.missing)} unavailable"
        elif ran.status == FIRED:
            status = "fired: " + ", ".join(finding.topic for finding in ran.findings)
        else:
            status = NOT_FIRED
        rules.append(
            {
                "rule": spec.name,
                "check": named_check(knowledge, spec),
                "reads": list(spec.reads),
                "status": status,
                "notes": notes.pop(spec.name, []),
            }
        )
    result["rules"] = rules
    if outcome.record is not None:
        result.update(_matching(outcome.record))
    # Notes from the engine or from helpers that are not a rule of their own.
    result["otherNotes"] = [f"{rule}: {text}" for rule, texts in notes.items() for text in texts]
    result["cards"] = [
        {"indicator": c["indicator"], "topic": c["source"]["topic"]["code"], "summary": c["summary"]}
        for c in outcome.cards
    ]
    return result


def _lines(resources: Iterable[Mapping[str, Any]], limit: int = 12) -> list[str]:
    items = list(resources)
    lines = [f"{r['ref']}  {r['date'] or 'no date'}  {r['what']}" for r in items[:limit]]
    if len(items) > limit:
        lines.append(f"... and {len(items) - limit} more")
    return lines


def _say(console: Console, text: Text) -> None:
    console.print(text, soft_wrap=True)


def describe_match(match: Mapping[str, Any]) -> str:
    """ "by code system|code (element)" or "by name 'x' in element" (plus a kept doubt cue)."""
    if match["by"] == "code":
        return f"by code {match['what']} ({match['where']})"
    doubt = f" (doubt cue '{match['cue']}' kept: a suspicion still counts)" if match.get("cue") else ""
    return f"by name '{match['what']}' in {match['where']}{doubt}"


def _print_matching(result: Mapping[str, Any], console: Console) -> None:
    if not result.get("matches") and not result.get("textExclusions"):
        return
    _say(console, Text("Conditions and allergies matched (by code, else by name):", style="bold"))
    for match in result.get("matches") or []:
        _say(console, Text(f"    {match['ref']} in {match['valueSet']}: {describe_match(match)}"))
    for item in result.get("textExclusions") or []:
        line = (
            f"    {item['ref']}: name '{item['name']}' in {item['where']} "
            f"not counted for {item['valueSet']}: {item['kind']} cue '{item['cue']}'"
        )
        _say(console, Text(line, style="dim"))


def print_explanation(result: Mapping[str, Any], console: Console) -> None:
    """One fact per line, never wrapped, so the output can be searched (grep) as well as read."""
    _say(console, Text("Explanation", style="bold underline"))
    _say(console, Text(f"service {result['service']}, evaluated as of {result['today']}"))
    _say(console, Text("Orders in the hook context:", style="bold"))
    for order in result["orders"]:
        marker = "*" if order["ref"] in result["ordersInQuestion"] else " "
        classes = ", ".join(order["classes"]) or "unrelated to amifampridine"
        if "unidentified" in order:
            classes = f"DRUG NOT IDENTIFIED - {order['unidentified']}"
        _say(console, Text(f" {marker} {order['ref']}  {order['name']}  [{classes}]"))
    if "verdict" in result:
        _say(console, Text(result["verdict"], style="green"))
        return
    _say(console, Text("Patient data:", style="bold"))
    for key, section in result.get("data", {}).items():
        if section["source"] == "unavailable":
            _say(console, Text(f"  {key}: UNAVAILABLE - {section['why']}", style="yellow"))
            continue
        _say(console, Text(f"  {key} (from {section['source']}): {len(section['resources'])} resource(s)"))
        for line in _lines(section["resources"]):
            _say(console, Text(f"      {line}", style="dim"))
    if result.get("currentOrders"):
        _say(console, Text("Current medication orders:", style="bold"))
        for order in result["currentOrders"]:
            classes = ", ".join(order["classes"]) or "unrelated"
            if "unidentified" in order:
                classes = f"DRUG NOT IDENTIFIED - {order['unidentified']}"
            _say(console, Text(f"    {order['ref']}  {order['name']}  [{classes}]"))
    for problem in result.get("notValidR4") or []:
        _say(console, Text(f"  {problem}", style="yellow"))
    _say(console, Text("Rules:", style="bold"))
    for rule in result["rules"]:
        status = rule["status"]
        style = "red" if status.startswith("fired") else "yellow" if status.startswith("not run") else ""
        line = Text(f"  {rule['rule']}", style="bold")
        reads = ", ".join(rule["reads"]) or "the orders only"
        line.append(f" (reads {reads}): ")
        line.append(status, style=style)
        _say(console, line)
        for note in rule["notes"]:
            _say(console, Text(f"      - {note}"))
    _print_matching(result, console)
    if result.get("otherNotes"):
        _say(console, Text("Other notes (shared computations such as dose arithmetic):", style="bold"))
    for note in result.get("otherNotes") or []:
        _say(console, Text(f"  {note}", style="dim"))
