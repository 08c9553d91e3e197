"""The README's card catalogue is generated from cards/ and must not drift from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cds_service.knowledge.catalogue import END, START, readme_block, render

ROOT = Path(__file__).resolve().parents[2]


def test_catalogue_lists_every_topic_once_in_codesystem_order() -> None:
    table = render(ROOT / "cards")
    codes = [
        c["code"] for c in json.loads((ROOT / "cards" / "card-topics.codesystem.json").read_text())["concept"]
    ]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == codes
    assert "| `renal-impairment` | warning, critical (end-stage) |" in table
    assert all("FIRDAPSE prescribing information (5/2024) §" in row for row in rows)


def test_readme_block_matches_the_generated_catalogue() -> None:
    readme = ROOT / "README.md"
    if not readme.exists() or START not in readme.read_text(encoding="utf-8"):
        pytest.skip("README.md has no card-catalogue markers yet (the lead places them)")
    assert readme_block(readme.read_text(encoding="utf-8")) == render(ROOT / "cards"), (
        "README card catalogue is stale: paste the output of `python -m cds_service.knowledge.catalogue` "
        "between the card-catalogue markers"
    )


def test_readme_block_extraction_detects_drift() -> None:
    table = render(ROOT / "cards")
    assert readme_block(f"intro\n{START}\n{table}{END}\nrest") == table
    assert readme_block(f"{START}\n{table.replace('critical', 'warning', 1)}{END}") != table
    assert readme_block("no markers") is None


def test_module_prints_the_catalogue() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cds_service.knowledge.catalogue"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout == render(ROOT / "cards")
