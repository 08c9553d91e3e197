"""Dose units (mass, tablets, capsules, volume) and the strength of the ordered product.

Unit spellings come from UCUM (mg, ug, {tbl}), v3-orderableDrugForm (TAB, CAP), SNOMED CT units of
presentation, the CDS Hooks sandbox ({pill}) and what people type ("tablet(s)", "mcg").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .numbers import DoseProblem, fmt, number

SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class Unit:
    kind: str  # "mass" (factor = mg per unit), "volume" (factor = mL per unit), "tablet", "capsule"
    factor: Decimal
    label: str  # how the arithmetic text names it


_ONE = Decimal(1)
_MG = Unit("mass", _ONE, "mg")
_G = Unit("mass", Decimal(1000), "g")
_MCG = Unit("mass", Decimal("0.001"), "mcg")
_ML = Unit("volume", _ONE, "mL")
_L = Unit("volume", Decimal(1000), "L")
_TAB = Unit("tablet", _ONE, "tablet")
_CAP = Unit("capsule", _ONE, "capsule")

_UNITS: dict[str, Unit] = {}
for _unit, _names in (
    (_MG, "mg milligram milligrams milligramme milligrammes"),
    (_G, "g gm gram grams gramme grammes"),
    (_MCG, "ug µg μg mcg microgram micrograms microgramme microgrammes"),
    (_ML, "ml milliliter milliliters millilitre millilitres cc cm3"),
    (_L, "l liter liters litre litres"),
    (
        _TAB,
        "{tbl} {tab} {tabs} {tablet} {tablets} {pill} {pills}"
        " tab tabs tbl tablet tablets tablet(s) pill pills",
    ),
    (_CAP, "{cap} {caps} {capsule} {capsules} cap caps capsule capsules capsule(s)"),
):
    for _name in _names.split():
        _UNITS[_name] = _unit

# SNOMED CT "unit of presentation" / dose form codes seen as dose units; only trusted with the SNOMED system.
_SNOMED_UNITS = {"732936001": _TAB, "385055001": _TAB, "732937005": _CAP, "385049006": _CAP}

_SPACES = re.compile(r"\s+")


def _norm(s: str) -> str:
    return _SPACES.sub(" ", s.strip().lower())


def classify(quantity: Mapping[str, Any]) -> Unit | None:
    """The unit of a FHIR Quantity: its code when recognised, else its human-readable unit."""
    code, unit, system = quantity.get("code"), quantity.get("unit"), quantity.get("system")
    if isinstance(code, str):
        if system == SNOMED and code.strip() in _SNOMED_UNITS:
            return _SNOMED_UNITS[code.strip()]
        found = _UNITS.get(_norm(code))
        if found:
            return found
    if isinstance(unit, str):
        return _UNITS.get(_norm(unit))
    return None


def unit_named(name: str) -> Unit | None:
    """The unit a free-text token names ("tabs", "mg", "mL"), or None."""
    return _UNITS.get(_norm(name))


def unit_label(quantity: Mapping[str, Any]) -> str:
    """What the sender wrote as the unit, shortened and in words (no UCUM syntax), for a reason text."""
    for key in ("unit", "code"):
        v = quantity.get(key)
        if isinstance(v, str) and v.strip():
            return unit_words(v.strip()[:40])
    return "(none)"


# ---------------------------------------------------------------- unit words

# UCUM codes (and common spellings) as card texts name them: never a raw code such as "[lb_av]" or
# "mL/min/{1.73_m2}" in front of a prescriber. Keys are lower case with spaces removed.
_UNIT_WORDS = {
    "[lb_av]": "lb",
    "lb": "lb",
    "lbs": "lb",
    "[oz_av]": "oz",
    "kg": "kg",
    "g": "g",
    "mg": "mg",
    "ug": "mcg",
    "mcg": "mcg",
    "ml": "mL",
    "l": "L",
    "ml/min": "mL/min",
    "ml/s": "mL/s",
    "ml/min/{1.73_m2}": "mL/min/1.73 m²",
    "ml/min/1.73m2": "mL/min/1.73 m²",
    "ml/min/1.73m²": "mL/min/1.73 m²",
    "ml/min/1.73/m2": "mL/min/1.73 m²",
    "ml/min/{1.73m2}": "mL/min/1.73 m²",
    "mg/dl": "mg/dL",
    "umol/l": "µmol/L",
    "µmol/l": "µmol/L",
    "mg/ml": "mg/mL",
    "a": "years",
    "mo": "months",
    "wk": "weeks",
    "d": "days",
}
_ANNOTATION = re.compile(r"\{([^{}]*)\}")
_BRACKETED = re.compile(r"\[([a-z]+)_[a-z]+\]", re.IGNORECASE)  # [lb_av], [in_i]: the customary unit


def unit_words(unit: str) -> str:
    """A unit as a person writes it: "[lb_av]" -> "lb", "mL/min/{1.73_m2}" -> "mL/min/1.73 m²".

    Known codes come from the table; any other UCUM annotation loses its braces ("{tbl}" -> "tbl") and
    a bracketed customary unit keeps its name ("[in_i]" -> "in"), so no code syntax reaches a card."""
    text = unit.strip()
    known = _UNIT_WORDS.get(text.lower().replace(" ", ""))
    if known:
        return known
    text = _ANNOTATION.sub(lambda m: m.group(1).replace("_", " ").replace("m2", "m²"), text)
    return _BRACKETED.sub(lambda m: m.group(1), text).replace("[", "").replace("]", "")


# ---------------------------------------------------------------- product strength


@dataclass(frozen=True)
class Strength:
    mg: Decimal  # mg per tablet/capsule (per_ml False) or per mL (per_ml True)
    per_ml: bool
    note: str  # where it came from, for the assumptions list


@dataclass(frozen=True)
class ProductStrength:
    per_unit: Strength | None  # applies to tablet and capsule counts
    per_ml: Strength | None  # applies to volumes


_MASS_WORDS = r"mg|mcg|ug|µg|μg|g|milligrams?|micrograms?|grams?"
# "10 MG Oral Tablet", "amifampridine 10 mg tablet", "1 MG/ML Oral Suspension", "10 mg in 10 mL", "5 MG/5ML"
_STRENGTH_TEXT = re.compile(
    rf"(?<![\w.])(\d+(?:\.\d+)?)\s*({_MASS_WORDS})(?![\w])"
    r"(?:\s*(?:/|per|in)\s*(?:(\d+(?:\.\d+)?)\s*)?(ml|milliliters?|millilitres?)(?![\w]))?",
    re.IGNORECASE,
)
# Product names read for a strength (code text, coding displays, reference display): a handful in practice.
_MAX_PRODUCT_TEXTS = 10
_AMIFAMPRIDINE = re.compile(r"amifampridine|diaminopyridine|3,4-dap|firdapse|ruzurgi", re.IGNORECASE)


def _has_str(obj: Any, key: str) -> bool:
    return isinstance(obj, Mapping) and isinstance(obj.get(key), str)


def _codeable_texts(cc: Any) -> list[str]:
    if not isinstance(cc, Mapping):
        return []
    texts = [cc["text"]] if isinstance(cc.get("text"), str) else []
    codings = cc.get("coding")
    if isinstance(codings, list):
        texts += [c["display"] for c in codings if _has_str(c, "display")]
    return texts


def _strengths_in_text(text: str, form: str) -> list[Strength]:
    found = []
    for m in _STRENGTH_TEXT.finditer(text):
        unit = unit_named(m.group(2))
        if unit is None:
            continue
        mg = Decimal(m.group(1)) * unit.factor
        per_ml = m.group(4) is not None
        if per_ml:
            ml = Decimal(m.group(3)) if m.group(3) else Decimal(1)
            if ml == 0:
                continue
            mg = mg / ml
        if mg > 0:
            quoted = text.strip()[:80]
            what = (
                f"concentration {fmt(mg)} mg/mL"
                if per_ml
                else f"strength {fmt(mg)} mg per {_form_in(text) or form}"
            )
            found.append(Strength(mg, per_ml, f'{what} (read from the product name "{quoted}")'))
    return found


def _ratio_strength(ratio: Any, source: str, form: str) -> Strength | None:
    """mg per unit or per mL from a Medication ingredient Ratio (R4 strength, STU3/DSTU2 amount)."""
    if not isinstance(ratio, Mapping):
        return None
    num, den = ratio.get("numerator"), ratio.get("denominator")
    if not isinstance(num, Mapping):
        return None
    unit = classify(num)
    if unit is None or unit.kind != "mass":
        return None
    try:
        mg = number(num.get("value"), "ingredient strength") * unit.factor
        den_value = Decimal(1)
        den_unit = None
        if isinstance(den, Mapping):
            if den.get("value") is not None:
                den_value = number(den.get("value"), "ingredient strength denominator")
            den_unit = classify(den)
    except DoseProblem:
        return None
    if den_unit is not None and den_unit.kind == "volume":
        per = mg / (den_value * den_unit.factor)
        return Strength(per, True, f"concentration {fmt(per)} mg/mL ({source})")
    if den_unit is not None and den_unit.kind == "mass":
        return None  # a mass fraction (mg/g) says nothing per tablet
    per = mg / den_value
    if den_unit is not None and den_unit.kind in {"tablet", "capsule"}:
        form = den_unit.label  # "per 1 {capsule}" says it outright
    return Strength(per, False, f"strength {fmt(per)} mg per {form} ({source})")


def _ingredient_strengths(medication: Mapping[str, Any], form: str) -> list[Strength]:
    ingredients = medication.get("ingredient")
    if not isinstance(ingredients, list):  # DSTU2 keeps them under product
        product = medication.get("product")
        ingredients = product.get("ingredient") if isinstance(product, Mapping) else None
    if not isinstance(ingredients, list):
        return []
    preferred: list[Strength] = []
    others: list[Strength] = []
    for ing in ingredients:
        if not isinstance(ing, Mapping) or ing.get("isActive") is False:
            continue
        item_texts = _codeable_texts(ing.get("itemCodeableConcept"))
        item_ref = ing.get("itemReference") or ing.get("item")
        if isinstance(item_ref, Mapping):
            if isinstance(item_ref.get("display"), str):
                item_texts.append(item_ref["display"])
            item_texts += _codeable_texts(item_ref.get("concept"))  # R5 CodeableReference
        ratio = ing.get("strength") or ing.get("strengthRatio") or ing.get("amount")
        strength = _ratio_strength(ratio, "from the Medication's ingredient strength", form)
        if strength is None:
            continue
        is_amifampridine = any(_AMIFAMPRIDINE.search(t) for t in item_texts)
        (preferred if is_amifampridine else others).append(strength)
    return preferred + others


def contained_medication(request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Medication a ``#id`` medicationReference points to inside ``request.contained``."""
    ref = request.get("medicationReference")
    med = request.get("medication")
    if ref is None and isinstance(med, Mapping):  # R5: medication is a CodeableReference
        ref = med.get("reference")
    if not isinstance(ref, Mapping) or not isinstance(ref.get("reference"), str):
        return None
    target = ref["reference"]
    if not target.startswith("#"):
        return None
    contained = request.get("contained")
    if not isinstance(contained, list):
        return None
    for res in contained:
        if _has_str(res, "id") and res["id"] == target[1:] and res.get("resourceType") == "Medication":
            return res
    return None


def _product_texts(request: Mapping[str, Any], medication: Mapping[str, Any] | None) -> list[str]:
    texts = _codeable_texts(request.get("medicationCodeableConcept"))
    med = request.get("medication")
    if isinstance(med, Mapping):  # R5
        texts += _codeable_texts(med.get("concept"))
    for key in ("medicationReference", "medication"):
        ref = request.get(key)
        if isinstance(ref, Mapping):
            inner = ref.get("reference") if isinstance(ref.get("reference"), Mapping) else ref
            if isinstance(inner, Mapping) and isinstance(inner.get("display"), str):
                texts.append(inner["display"])
    if medication is not None:
        texts = _codeable_texts(medication.get("code")) + texts
    return texts


# The dose form as a card names it, from a product name or a Medication.form: "10 MG Oral Capsule" ->
# "capsule". A strength per unit is "per capsule" or "per tablet", never "per tablet" for a capsule.
_FORM_WORDS = re.compile(
    r"\b(tablet|tab|capsule|cap|suspension|solution|syrup|granules|powder)s?\b", re.IGNORECASE
)
_FORM_NAMES = {"tab": "tablet", "cap": "capsule"}
UNKNOWN_FORM = "tablet or capsule"  # no product name, form or dose unit says which


def _form_in(text: str) -> str | None:
    match = _FORM_WORDS.search(text)
    if match is None:
        return None
    word = match.group(1).lower()
    return _FORM_NAMES.get(word, word)


def _dose_units(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The dose quantities of the order's first few dosage lines (R4 doseAndRate, STU3/DSTU2 doseQuantity)."""
    found: list[Mapping[str, Any]] = []
    dosages = request.get("dosageInstruction")
    for dosage in dosages[:_MAX_PRODUCT_TEXTS] if isinstance(dosages, list) else ():
        if not isinstance(dosage, Mapping):
            continue
        entries = dosage.get("doseAndRate")
        candidates = [dosage.get("doseQuantity")]
        candidates += (
            [e.get("doseQuantity") for e in entries[:5] if isinstance(e, Mapping)]
            if isinstance(entries, list)
            else []
        )
        found += [q for q in candidates if isinstance(q, Mapping)]
    return found


def dose_form(request: Mapping[str, Any], medication: Mapping[str, Any] | None, max_chars: int = 1000) -> str:
    """The product's dose form in words: from the Medication's form, the product names, else the unit the
    dose is counted in ("2 capsules"); ``UNKNOWN_FORM`` when nothing says."""
    texts = _codeable_texts(medication.get("form")) if medication is not None else []
    texts += _product_texts(request, medication)
    for text in texts[:_MAX_PRODUCT_TEXTS]:
        form = _form_in(text[:max_chars])
        if form:
            return form
    for quantity in _dose_units(request):
        unit = classify(quantity)
        if unit is not None and unit.kind in {"tablet", "capsule"}:
            return unit.label
    return UNKNOWN_FORM


def product_strength(
    request: Mapping[str, Any], medication: Mapping[str, Any] | None, max_chars: int = 1000
) -> ProductStrength:
    """Strengths by precedence: Medication ingredient ratio > strength in a product name > none.

    Only the first ``max_chars`` of the first few product names are read, with whitespace runs folded, so the
    scan is linear (the pattern's ``\\s*`` then never meets a long run).
    """
    found: list[Strength] = []
    form = dose_form(request, medication, max_chars)
    if medication is not None:
        found += _ingredient_strengths(medication, form)
    for text in _product_texts(request, medication)[:_MAX_PRODUCT_TEXTS]:
        found += _strengths_in_text(_SPACES.sub(" ", text[:max_chars]), form)
    per_unit = next((s for s in found if not s.per_ml), None)
    per_ml = next((s for s in found if s.per_ml), None)
    return ProductStrength(per_unit, per_ml)
