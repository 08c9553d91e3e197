"""Every file of ``cards/`` the code reads, and what it reads from it: checked at start-up.

A knowledge base missing one of these starts "ready" and then fails on the first order that needs it
(a 500, or a check that disappears in silence). The loader refuses it instead, naming the file.

One table, kept next to nothing else on purpose: when a rule starts reading a new value set, table key
or topic, it is declared here (``tests/test_knowledge_check.py`` greps ``cds_service/`` for readers
that are not). Issue 16 will move these declarations onto the rules themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

# ValueSet file stem (cards/valuesets/<name>.valueset.json) -> who reads it, in the words of the message.
VALUESETS: Mapping[str, str] = {
    "amifampridine": "drug classification and the allergy check",
    "other-aminopyridines": "drug classification and the allergy check",
    "aminopyridine-allergens": "the allergy check",
    "cholinergic-drugs": "the cholinergic co-medication check",
    "seizure-threshold-lowering-drugs": "the seizure-threshold co-medication check",
    "seizure-disorders": "the seizure-history check",
    "febrile-seizures": "the seizure-history check",
    "liver-conditions": "the hepatic-impairment check",
    "kidney-conditions": "the renal-impairment check",
    "end-stage-renal-disease": "the renal-impairment check",
    "renal-function-observations": "the renal-impairment check and the renal prefetch query",
    "body-weight-observations": "the weight-based dose caps and the weight prefetch query",
    "nat2-observations": "the NAT2 check and the nat2 prefetch query",
}

# YAML table (cards/<name>.yaml, read through ``Knowledge.data``) -> key -> the type the code expects.
# dose-caps.yaml is parsed in full at start-up (rules/dose_table.py); its top-level keys are listed so
# that ``knowledge check`` names the missing one the same way.
NUMBER = (int, float)
TABLES: Mapping[str, Mapping[str, type | tuple[type, ...]]] = {
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
    # The cues that stop a name in a condition's or allergy's text from counting (the name backstop).
    "text-negation": {"cues": dict},
}

# Card topics the rules produce (cards/topics/<topic>.yaml and a concept of card-topics.codesystem.json).
TOPICS: tuple[str, ...] = (
    "seizure-history",
    "aminopyridine-hypersensitivity",
    "age-not-established",
    "seizure-threshold-drug",
    "cholinergic-drug",
    "aminopyridine-duplicate",
    "nat2-poor-metabolizer",
    "renal-impairment",
    "hepatic-impairment",
    "dose-unverifiable",
    "dose-single-max",
    "dose-daily-max",
    "starting-dose",
    "titration-step",
    "weight-needed",
    "data-unavailable",
)

# The topic that says a check could not run: a site can never turn it off.
DATA_UNAVAILABLE = "data-unavailable"
# Contraindications (label §4): turning one off needs an explicit second setting in site.yaml.
CONTRAINDICATIONS: tuple[str, ...] = ("seizure-history", "aminopyridine-hypersensitivity")
