"""Findings + texts from ``cards/`` → CDS Hooks 2.0.1 cards.

Every card has a uuid, a summary under 140 characters, an indicator, a source citing the label section
with a topic Coding, markdown detail and override reasons with displays. Suggestions carry uuids and
the card then carries ``selectionBehavior``. Empty fields are left out, as the spec requires.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.templates import fill
from cds_service.rules.base import Action, Finding, Suggestion

MAX_SUMMARY = 139  # the spec says "<140-character"
# The card's extension key listing every problem topic it covers, its own first (README, "Cards").
TOPICS_EXTENSION = "amifampridine-cds.topics"


def card_topics(card: Mapping[str, Any]) -> list[str]:
    """Every problem topic a card covers (the extension), else its source topic alone."""
    listed = (card.get("extension") or {}).get(TOPICS_EXTENSION)
    if isinstance(listed, list) and listed and all(isinstance(t, str) for t in listed):
        return listed
    topic = ((card.get("source") or {}).get("topic") or {}).get("code")
    return [topic] if isinstance(topic, str) else []


# The values put into a card's detail come from the patient's record (names of conditions, drugs,
# allergies), and EHRs render detail as GitHub-flavoured markdown, some with raw HTML (the CDS Hooks
# sandbox). Escaped here: what would make HTML or a link. Emphasis characters are left alone (at worst
# cosmetic), so UCUM units such as [lb_av] and alleles such as NAT2*5/*6 read the same in plain text.
def as_markdown_text(value: Any) -> Any:
    """A text value that renders as itself in markdown: no tags, no links, no line breaks."""
    if not isinstance(value, str):
        return value
    text = " ".join(value.split("\n")).replace("\r", " ")
    # Backslashes first: the record's own "\<" must not cancel the escape added here.
    text = text.replace("\\", "\\\\")
    # Entities, not backslashes, for the angle brackets: not every markdown dialect escapes "<".
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("](", "\\](")


def _literal(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: as_markdown_text(value) for key, value in params.items()}


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1].rstrip() + "…"


def _action(action: Action) -> dict[str, Any]:
    body: dict[str, Any] = {"type": action.type, "description": action.description}
    if action.resource is not None:
        body["resource"] = dict(action.resource)
    if action.resource_id:
        body["resourceId"] = action.resource_id
    return body


def _suggestion(suggestion: Suggestion) -> dict[str, Any]:
    body: dict[str, Any] = {"label": suggestion.label, "uuid": str(uuid.uuid4())}
    if suggestion.recommended:
        body["isRecommended"] = True
    if suggestion.actions:
        body["actions"] = [_action(action) for action in suggestion.actions]
    return body


def _also(finding: Finding, knowledge: Knowledge) -> str:
    """The summaries of the other problems a card covers, as a list after its own detail."""
    if not finding.also:
        return ""
    lines = [
        "- " + _summary(fill(knowledge.topic(f.topic).variant(f.variant).summary, _literal(f.params)))
        for f in finding.also
    ]
    heading = knowledge.data.get("dose-card", {}).get("also", "")
    return "\n\n" + heading + "\n\n" + "\n".join(lines)


def render_card(finding: Finding, knowledge: Knowledge) -> dict[str, Any]:
    topic = knowledge.topic(finding.topic)
    texts = topic.variant(finding.variant)
    label = knowledge.label
    section = f" §{topic.section}" if topic.section else ""
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(fill(texts.summary, finding.params)),
        "indicator": texts.indicator,
        "detail": fill(texts.detail, _literal(finding.params)).strip() + _also(finding, knowledge),
        "source": {
            "label": f"{label.source_label}{section}",
            "url": label.url,
            "topic": {"system": label.topic_system, "code": topic.topic, "display": topic.display},
        },
        # The label the card cites, its section named (DailyMed has no documented section anchor).
        "links": [{"label": f"{label.source_label}{section}", "url": label.url, "type": "absolute"}],
        # Every problem topic the card speaks for, its own first (one card per problem per order).
        "extension": {TOPICS_EXTENSION: list(finding.topics)},
    }
    # A suggestion without an action (the draft had no id to update) is no one-click fix: left out.
    suggestions = [s for s in finding.suggestions if s.actions]
    if suggestions:
        card["suggestions"] = [_suggestion(s) for s in suggestions]
        # Each suggestion is an alternative fix of the same order: the clinician picks one.
        card["selectionBehavior"] = "at-most-one"
    if topic.override_reasons:
        card["overrideReasons"] = [
            {"system": label.override_system, "code": reason.code, "display": reason.display}
            for reason in topic.override_reasons
        ]
    return card


_INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}


def render_cards(findings: Iterable[Finding], knowledge: Knowledge) -> list[dict[str, Any]]:
    """Cards in order of urgency (critical first), stable within an indicator.

    A topic the site turned off (site.yaml) gives no card; its finding stays in the outcome, so
    ``--explain`` still shows what the rule found."""
    return [card for _, card in render_findings(findings, knowledge)]


def render_findings(
    findings: Iterable[Finding], knowledge: Knowledge
) -> list[tuple[Finding, dict[str, Any]]]:
    """``render_cards`` with the finding of each card beside it (the pipeline keys cards by finding)."""
    off = knowledge.disabled_topics
    pairs = [(finding, render_card(finding, knowledge)) for finding in findings if finding.topic not in off]
    return sorted(pairs, key=lambda pair: _INDICATOR_ORDER[pair[1]["indicator"]])
