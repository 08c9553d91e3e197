"""Every file of ``cards/`` the code reads, and what it reads from it: checked at start-up.

A knowledge base missing one of these starts "ready" and then fails on the first order that needs it
(a 500, or a check that disappears in silence). The loader refuses it instead, naming the file.

The rules declare what they read on their functions (``cds_service.rules.base.rule``); ``declared()``
gathers those declarations, plus the few readers that are not rules (drug classification, the prefetch
queries, the name backstop of condition and allergy matching), listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Value sets read by code that is not a rule -> who reads it, in the words of the message.
SERVICE_VALUESETS: Mapping[str, str] = {
    "amifampridine": "drug classification",
    "other-aminopyridines": "drug classification",
    "cholinergic-drugs": "drug classification",
    "seizure-threshold-lowering-drugs": "drug classification",
    "renal-function-observations": "the renal prefetch query",
    "body-weight-observations": "the weight prefetch query",
    "nat2-observations": "the nat2 prefetch query",
}
# Tables read by code that is not a rule -> who reads it.
SERVICE_TABLES: Mapping[str, str] = {
    # The cues that stop a name in a condition's or allergy's text from counting (record.py).
    "text-negation": "condition and allergy matching by name",
    # Which dose problem leads the one dose card of an order, and its words (rules/dose_card.py).
    "dose-card": "the dose card of an order",
}

# The shape of each YAML table (cards/<name>.yaml, read through ``Knowledge.data``): key -> the type the
# code expects. dose-caps.yaml is parsed in full at start-up (knowledge/dose_table.py); its top-level
# keys are listed so that ``knowledge check`` names the missing one the same way.
NUMBER = (int, float)
TABLE_KEYS: Mapping[str, Mapping[str, type | tuple[type, ...]]] = {
    "nat2": {
        "gene": dict,
        "phenotype_answers": dict,
        "poor_text": list,
        "allele_function": dict,
    },
    "dose-caps": {
        "versions": dict,
        "initial_daily_mg": dict,
        "titration_step_mg_per_day": dict,
        "suggested_regimens": dict,
        "dose_rounding_mg": dict,
        "child_weight_split_kg": NUMBER,
        "child_age_below_years": NUMBER,
        "minimum_age_years": NUMBER,
        "renal": dict,
    },
    "text-negation": {"cues": dict},
    "dose-card": {"lead_order": list, "also": str},
}

# The topic that says a check could not run (the engine's own): a site can never turn it off.
DATA_UNAVAILABLE = "data-unavailable"
# Contraindications (label §4): turning one off needs an explicit second setting in site.yaml.
CONTRAINDICATIONS: tuple[str, ...] = ("seizure-history", "aminopyridine-hypersensitivity")


@dataclass(frozen=True)
class Requirements:
    valuesets: Mapping[str, str]  # value set -> who reads it
    tables: Mapping[str, str]  # table -> who reads it
    topics: Mapping[str, str]  # card topic -> the rule that produces it
    # (topic, "variants" | "sentences" | "suggestions", name) -> the rule that uses it
    texts: Mapping[tuple[str, str, str], str]


def _add(readers: dict[str, list[str]], name: str, reader: str) -> None:
    if reader not in readers.setdefault(name, []):
        readers[name].append(reader)


def declared() -> Requirements:
    """What the rules declare they read, and what the service reads besides them."""
    from cds_service.rules import RULES  # the rules import the loader: read their declarations late

    valuesets: dict[str, list[str]] = {}
    tables: dict[str, list[str]] = {}
    topics: dict[str, str] = {DATA_UNAVAILABLE: "the engine"}
    texts: dict[tuple[str, str, str], str] = {}
    for spec in RULES:
        reader = f"the {spec.name} rule"
        for block in ("variants", "sentences", "suggestions"):
            for name in getattr(spec, block):
                texts.setdefault((spec.topic, block, name), reader)
        for name in spec.valuesets:
            _add(valuesets, name, reader)
        for name in spec.tables:
            _add(tables, name, reader)
        for topic in spec.topics:
            topics.setdefault(topic, reader)
    for name, reader in SERVICE_VALUESETS.items():
        _add(valuesets, name, reader)
    for name, reader in SERVICE_TABLES.items():
        _add(tables, name, reader)
    return Requirements(
        valuesets={name: _words(readers) for name, readers in valuesets.items()},
        tables={name: _words(readers) for name, readers in tables.items()},
        topics=topics,
        texts=texts,
    )


def _words(readers: list[str]) -> str:
    return readers[0] if len(readers) == 1 else ", ".join(readers[:-1]) + " and " + readers[-1]
