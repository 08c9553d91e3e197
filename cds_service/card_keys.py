"""What makes two cards the same finding, and which order a card is about (issue 17, items 4 and 6).

A draft id alone is not identity: the CDS Hooks sandbox gives every draft the same id (``request-123``).
A card's finding is its topic, its indicator, its words, and the order it is about: that order's id, its
drug (codes or name) and its dose. Two cards with the same fingerprint for the same patient say the same
thing about the same order; a changed dose, a new condition in the record or another patient gives
another one. The fingerprint is an unkeyed digest of these: the storage layer keys it with the patient id
and the patient-id key before it is stored (``storage/suppression.py``), so nothing in the database can
be traced back to a patient without that key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.rules.base import Finding

# The parts of an order that say what is ordered and how much: the drug and its dose.
_ORDER_CONTENT = ("medicationCodeableConcept", "medicationReference", "dosageInstruction")


@dataclass(frozen=True)
class CardKeys:
    finding: str  # sha256 hex of topic, indicator, words, order id, drug and dose
    order: str | None  # the reference of the order the card is about, when there is one


def card_keys(card: Mapping[str, Any], finding: Finding) -> CardKeys:
    order = finding.order
    content = {name: order.resource.get(name) for name in _ORDER_CONTENT} if order is not None else {}
    identity = {
        "topic": card["source"]["topic"]["code"],
        "indicator": card["indicator"],
        "summary": card["summary"],
        "detail": card.get("detail", ""),
        "order": order.reference if order is not None else None,
        "content": content,
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return CardKeys(
        finding=hashlib.sha256(canonical.encode()).hexdigest(),
        order=order.reference if order is not None else None,
    )
