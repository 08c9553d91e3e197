"""Amifampridine safety checks as a CDS Hooks 2.0.1 service."""

__version__ = "0.1.0"
