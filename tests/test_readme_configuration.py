"""The README's configuration table documents every variable the service reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIABLE = re.compile(r"\bCDS_[A-Z0-9_]+\b")


def _table() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- config-table:start -->")
    end = readme.index("<!-- config-table:end -->")
    return readme[start:end]


def _variables_in_code() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "cds_service").rglob("*.py"):
        found.update(VARIABLE.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_variable_the_service_reads_is_in_the_readme_table() -> None:
    documented = set(VARIABLE.findall(_table()))
    missing = sorted(_variables_in_code() - documented)
    assert not missing, f"add these to the README configuration table: {missing}"


def test_the_readme_table_lists_no_variable_the_service_does_not_read() -> None:
    # Variables used only by tooling (make targets, scripts) are listed under their own heading.
    rows = [line for line in _table().splitlines() if line.startswith("| `CDS_")]
    documented = {VARIABLE.search(row).group(0) for row in rows}  # type: ignore[union-attr]
    stale = sorted(documented - _variables_in_code())
    assert not stale, f"the README documents variables nothing reads: {stale}"
