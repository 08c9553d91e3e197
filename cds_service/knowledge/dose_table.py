"""The amifampridine dose table (``cards/dose-caps.yaml``) as typed rows, checked when first read.

Two rows as in label Table 1: ``standard`` (adults of any weight, children >= 45 kg) and
``child_under_45kg``. The daily caps depend on the label version a site pins
(``Options.dose_caps_version``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.knowledge.loader import Knowledge, KnowledgeError

STANDARD = "standard"
CHILD_UNDER_45KG = "child_under_45kg"
ROWS = (STANDARD, CHILD_UNDER_45KG)
ROW_WORDS = {
    STANDARD: "adults and children of 45 kg or more",
    CHILD_UNDER_45KG: "children under 45 kg",
}
_FILE = "cards/dose-caps.yaml"


@dataclass(frozen=True)
class Regimen:
    mg_per_dose: float
    times_per_day: int

    @property
    def mg_per_day(self) -> float:
        return self.mg_per_dose * self.times_per_day


@dataclass(frozen=True)
class DoseRow:
    name: str
    max_single_mg: float
    max_daily_mg: float
    initial_low_mg: float  # the lowest initial daily dose
    initial_high_mg: float
    titration_step_mg: float
    rounding_mg: float
    lowest_start: Regimen
    initial_high: Regimen

    @property
    def words(self) -> str:
        return ROW_WORDS[self.name]


@dataclass(frozen=True)
class DoseTable:
    version: str
    label: str
    rows: Mapping[str, DoseRow]
    child_weight_split_kg: float
    child_age_below_years: int
    minimum_age_years: int
    renal_end_stage_below: float
    renal_impaired_up_to: float

    def row(self, name: str) -> DoseRow:
        return self.rows[name]


def _number(data: Any, path: str) -> float:
    if isinstance(data, bool) or not isinstance(data, int | float) or data <= 0:
        raise KnowledgeError(f"{_FILE}: {path} must be a positive number")
    return float(data)


def _get(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KnowledgeError(f"{_FILE}: {path} is missing")
        node = node[part]
    return node


def _regimen(data: Any, path: str) -> Regimen:
    times = _number(_get(data, f"{path}.times_per_day"), f"{path}.times_per_day")
    return Regimen(_number(_get(data, f"{path}.mg_per_dose"), f"{path}.mg_per_dose"), int(times))


def parse_dose_table(data: Any, version: str) -> DoseTable:
    """Build the table for ``version``; raise KnowledgeError naming the first problem."""
    if not isinstance(data, Mapping):
        raise KnowledgeError(f"{_FILE} is missing or not a mapping")
    versions = _get(data, "versions")
    if version not in versions:
        known = ", ".join(sorted(map(str, versions)))
        raise KnowledgeError(f"{_FILE}: dose caps version {version!r} is not one of {known}")
    rows = {}
    for name in ROWS:
        caps = f"versions.{version}.{name}"
        row = DoseRow(
            name=name,
            max_single_mg=_number(_get(data, f"{caps}.max_single_mg"), f"{caps}.max_single_mg"),
            max_daily_mg=_number(_get(data, f"{caps}.max_daily_mg"), f"{caps}.max_daily_mg"),
            initial_low_mg=_number(_get(data, f"initial_daily_mg.{name}.low"), "initial_daily_mg"),
            initial_high_mg=_number(_get(data, f"initial_daily_mg.{name}.high"), "initial_daily_mg"),
            titration_step_mg=_number(_get(data, f"titration_step_mg_per_day.{name}"), "titration_step"),
            rounding_mg=_number(_get(data, f"dose_rounding_mg.{name}"), "dose_rounding_mg"),
            lowest_start=_regimen(data, f"suggested_regimens.lowest_start.{name}"),
            initial_high=_regimen(data, f"suggested_regimens.initial_high.{name}"),
        )
        for regimen in (row.lowest_start, row.initial_high):
            if regimen.mg_per_dose > row.max_single_mg or regimen.mg_per_day > row.max_daily_mg:
                raise KnowledgeError(f"{_FILE}: a suggested regimen for {name} exceeds its caps")
        if not row.initial_low_mg <= row.initial_high_mg <= row.max_daily_mg:
            raise KnowledgeError(f"{_FILE}: initial_daily_mg.{name} must lie below the daily cap")
        rows[name] = row
    return DoseTable(
        version=version,
        label=str(_get(data, f"versions.{version}.label")),
        rows=rows,
        child_weight_split_kg=_number(_get(data, "child_weight_split_kg"), "child_weight_split_kg"),
        child_age_below_years=int(_number(_get(data, "child_age_below_years"), "child_age_below_years")),
        minimum_age_years=int(_number(_get(data, "minimum_age_years"), "minimum_age_years")),
        renal_end_stage_below=_number(_get(data, "renal.end_stage_below_ml_min"), "renal"),
        renal_impaired_up_to=_number(_get(data, "renal.impaired_up_to_ml_min"), "renal"),
    )


_PARSED: dict[tuple[str, str], DoseTable] = {}


def dose_table(knowledge: Knowledge, version: str) -> DoseTable:
    """The parsed table for ``version`` (parsed once per knowledge base and version)."""
    key = (knowledge.version, version)
    if key not in _PARSED:
        _PARSED[key] = parse_dose_table(knowledge.data.get("dose-caps"), version)
    return _PARSED[key]
