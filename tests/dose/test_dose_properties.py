"""Property-based tests of dose arithmetic (Hypothesis)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.dose import REASONS, DoseResult, compute_dose

UCUM = "http://unitsofmeasure.org"
ORDERABLE = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"

# (how a sender writes the unit as a Quantity, mg in one of that unit)
MASS_SPELLINGS: list[tuple[dict[str, Any], Decimal]] = [
    ({"code": "mg", "system": UCUM}, Decimal(1)),
    ({"unit": "mg"}, Decimal(1)),
    ({"unit": "MG"}, Decimal(1)),
    ({"unit": "milligrams"}, Decimal(1)),
    ({"code": "mg", "unit": "milligram", "system": UCUM}, Decimal(1)),
    ({"code": "g", "system": UCUM}, Decimal(1000)),
    ({"unit": "gram"}, Decimal(1000)),
    ({"code": "ug", "system": UCUM}, Decimal("0.001")),
    ({"unit": "mcg"}, Decimal("0.001")),
    ({"unit": "µg"}, Decimal("0.001")),
    ({"unit": "μg"}, Decimal("0.001")),
    ({"unit": "microgram"}, Decimal("0.001")),
]
TABLET_SPELLINGS: list[dict[str, Any]] = [
    {"code": "{tbl}", "system": UCUM},
    {"code": "{pill}", "system": UCUM},
    {"code": "{tablet}", "system": UCUM, "unit": "tablet"},
    {"code": "TAB", "system": ORDERABLE},
    {"unit": "tablet(s)"},
    {"unit": "Tablets"},
    {"unit": "tab"},
]


def _timing_strategy() -> st.SearchStrategy[dict[str, Any]]:
    per_day = st.integers(min_value=1, max_value=8)
    hours = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 12, 24, 48])
    return st.one_of(
        per_day.map(lambda n: {"repeat": {"frequency": n, "period": 1, "periodUnit": "d"}}),
        hours.map(lambda h: {"repeat": {"frequency": 1, "period": h, "periodUnit": "h"}}),
        st.sampled_from(["BID", "TID", "QID", "QD", "Q4H", "Q6H", "Q8H", "Q12H", "QOD", "AM", "PM"]).map(
            lambda c: {"code": {"coding": [{"code": c}]}}
        ),
        st.lists(
            st.sampled_from(["08:00:00", "12:00:00", "16:00:00", "20:00:00"]), min_size=1, unique=True
        ).map(lambda t: {"repeat": {"timeOfDay": t}}),
        st.lists(st.sampled_from(["MORN", "NOON", "EVE", "HS", "C"]), min_size=1, unique=True).map(
            lambda w: {"repeat": {"when": w}}
        ),
    )


def _request(dose: dict[str, Any], timing: dict[str, Any], stu3: bool) -> dict[str, Any]:
    dosage: dict[str, Any] = {"timing": timing}
    if stu3:
        dosage["doseQuantity"] = dose
    else:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    return {"resourceType": "MedicationRequest", "dosageInstruction": [dosage]}


# mg amounts a prescriber might write: multiples of 0.25 mg up to 100 mg
MG = st.integers(min_value=1, max_value=400).map(lambda n: Decimal(n) / 4)


@given(mg=MG, spelling=st.sampled_from(MASS_SPELLINGS), timing=_timing_strategy(), stu3=st.booleans())
def test_daily_is_single_times_doses_whatever_the_spelling(
    mg: Decimal, spelling: tuple[dict[str, Any], Decimal], timing: dict[str, Any], stu3: bool
) -> None:
    unit, mg_per_unit = spelling
    value = float(mg / mg_per_unit)
    result = compute_dose(_request({"value": value, **unit}, timing, stu3))
    assert result.ok, (result.reason, result.reason_text)
    assert result.mg_per_dose == float(mg)
    assert result.doses_per_day is not None and result.doses_per_day >= 1
    assert math.isclose(result.mg_per_day or 0, result.mg_per_dose * result.doses_per_day, rel_tol=1e-12)


@given(mg=MG, timing=_timing_strategy(), tablet=st.sampled_from(TABLET_SPELLINGS), stu3=st.booleans())
def test_converting_units_never_changes_the_result(
    mg: Decimal, timing: dict[str, Any], tablet: dict[str, Any], stu3: bool
) -> None:
    encodings = [
        {"value": float(mg), "code": "mg", "system": UCUM},
        {"value": float(mg / 1000), "code": "g", "system": UCUM},
        {"value": float(mg * 1000), "code": "ug", "system": UCUM},
        {"value": float(mg / 10), **tablet},  # default 10 mg tablets
        {"value": float(mg), "code": "mL", "system": UCUM},  # default 1 mg/mL suspension
    ]
    results = [compute_dose(_request(q, timing, stu3)) for q in encodings]
    assert all(r.ok for r in results), [(r.reason, r.reason_text) for r in results]
    assert {r.mg_per_dose for r in results} == {float(mg)}
    assert len({r.mg_per_day for r in results}) == 1
    assert len({r.doses_per_day for r in results}) == 1


@given(mg=MG, n=st.integers(min_value=1, max_value=6))
def test_medication_strength_scales_tablet_doses(mg: Decimal, n: int) -> None:
    medication = {
        "resourceType": "Medication",
        "ingredient": [
            {
                "strength": {
                    "numerator": {"value": float(mg), "code": "mg", "system": UCUM},
                    "denominator": {"value": 1, "code": "TAB", "system": ORDERABLE},
                }
            }
        ],
    }
    request = _request(
        {"value": 2, "code": "{tbl}"}, {"repeat": {"frequency": n, "period": 1, "periodUnit": "d"}}, False
    )
    result = compute_dose(request, medication=medication)
    assert result.ok
    assert result.mg_per_dose == float(mg * 2)
    assert math.isclose(result.mg_per_day or 0, float(mg * 2 * n), rel_tol=1e-12)


def _check_never_raises(result: Any) -> None:
    assert isinstance(result, DoseResult)
    if result.ok:
        assert result.mg_per_dose is not None and result.mg_per_dose > 0
        assert result.mg_per_day is not None and result.mg_per_day > 0
        assert math.isfinite(result.mg_per_day)
    else:
        assert result.reason in REASONS
        assert result.reason != "internal-error", "an input reached the safety net"
        assert result.reason_text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "doseQuantity", "doseRange", "doseAndRate", "timing", "text", "patientInstruction", "sequence",
        "maxDosePerPeriod", "maxDosePerAdministration", "asNeededBoolean", "asNeededCodeableConcept",
    ]
)  # fmt: skip
QUANTITY_KEYS = st.sampled_from(["value", "code", "unit", "system", "comparator"])
REPEAT_KEYS = st.sampled_from(
    ["frequency", "frequencyMax", "period", "periodMax", "periodUnit", "periodUnits", "timeOfDay", "when"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(request=JSON)
def test_arbitrary_json_never_raises(request: Any) -> None:
    _check_never_raises(compute_dose(request))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=FIELDS,
    junk=JSON,
    qkey=QUANTITY_KEYS,
    qjunk=JSON,
    rkey=REPEAT_KEYS,
    rjunk=JSON,
    medication=st.none() | JSON,
)
def test_malformed_fields_never_raise(
    field: str, junk: Any, qkey: str, qjunk: Any, rkey: str, rjunk: Any, medication: Any
) -> None:
    """Start from a valid order and break one field at each level (dosage, quantity, timing.repeat)."""
    dose = {"value": 2, "code": "{tbl}", "system": UCUM, qkey: qjunk}
    repeat = {"frequency": 3, "period": 1, "periodUnit": "d", rkey: rjunk}
    dosage = {"doseAndRate": [{"doseQuantity": dose}], "timing": {"repeat": repeat}, field: junk}
    request = {"resourceType": "MedicationRequest", "dosageInstruction": [dosage]}
    _check_never_raises(compute_dose(request, medication=medication))


@settings(max_examples=300)
@given(text=st.text(max_size=80) | st.from_regex(r"[0-9 ]{0,4}(mg|tab|g|ml|x|q|h|times|daily|bid|/|-|½| )*"))
def test_free_text_never_raises(text: str) -> None:
    result = compute_dose({"resourceType": "MedicationRequest", "dosageInstruction": [{"text": text}]})
    _check_never_raises(result)
    if result.ok:
        assert result.source == "text"
        assert any("instruction text" in a for a in result.assumptions)


@given(
    value=st.one_of(
        st.floats(max_value=0), st.text(max_size=5), st.none(), st.booleans(), st.just(float("nan"))
    )
)
def test_bad_dose_values_give_invalid_value(value: Any) -> None:
    result = compute_dose(
        _request({"value": value, "code": "mg"}, {"code": {"coding": [{"code": "TID"}]}}, False)
    )
    assert not result.ok
    assert result.reason == "invalid-value"
