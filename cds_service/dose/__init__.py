"""Dose arithmetic: how many mg per dose and per day a medication order asks for, or why that is unknown.

Pure and cheap: works on plain JSON dicts (R4, STU3, DSTU2 shapes), no I/O, regexes compiled at import.
"""

from .compute import compute_dose
from .result import REASONS, DosePhase, DoseResult

__all__ = ["REASONS", "DosePhase", "DoseResult", "compute_dose"]
