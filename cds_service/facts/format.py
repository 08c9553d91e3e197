"""Numbers as card texts show them."""

from __future__ import annotations


def fmt_mg(value: float) -> str:
    """10.0 -> "10", 2.5 -> "2.5" (no trailing zeros in card texts)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
