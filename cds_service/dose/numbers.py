"""Exact decimal arithmetic for doses, and the one exception the dose code raises internally.

FHIR decimals arrive as JSON numbers (Python floats). Converting through ``repr`` recovers the decimal the
sender wrote, so 0.02 g is exactly 20 mg and unit conversions never leave float noise in card texts.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

# Larger than any plausible dose, frequency or strength; keeps Decimal -> float conversion finite.
_LIMIT = Decimal("1e9")
# Six decimals echo any value a sender plausibly writes (0.0075 g) and hide division noise (10/3 mL).
_DISPLAY = Decimal("0.000001")


class DoseProblem(Exception):
    """Why a dose cannot be worked out: a reason code and a plain-language detail for the card."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def number(value: Any, what: str, *, allow_zero: bool = False) -> Decimal:
    """A positive finite JSON number as a Decimal, or a DoseProblem naming ``what`` was wrong."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DoseProblem("invalid-value", f"The {what} is not a number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise DoseProblem("invalid-value", f"The {what} is not a finite number.")
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if d < 0 or (d == 0 and not allow_zero):
        raise DoseProblem("invalid-value", f"The {what} is {'negative' if d < 0 else 'zero'}.")
    if d > _LIMIT:
        raise DoseProblem("invalid-value", f"The {what} is implausibly large.")
    return d


def ceil_whole(d: Decimal) -> Decimal:
    """Round up to a whole number, ignoring tiny excesses that come from division."""
    nearest = d.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if abs(d - nearest) < Decimal("1e-9"):
        return nearest
    return d.quantize(Decimal(1), rounding=ROUND_CEILING)


def fmt(d: Decimal) -> str:
    """Display form: at most six decimals, no trailing zeros, no exponent ("7.5", "60", "0.0075")."""
    s = format(d.quantize(_DISPLAY, rounding=ROUND_HALF_UP), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def to_float(d: Decimal | None) -> float | None:
    """Decimal -> float for the public result, rounded to a millionth to drop division noise."""
    if d is None:
        return None
    return float(d.quantize(_DISPLAY, rounding=ROUND_HALF_UP).normalize())
