"""Render a report (from ``report.build_report``) as JSON, CSV or a terminal table."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is in the 'tools' extra: only the table format needs it
    from rich.console import Console

COLUMNS = (
    ("topic", "Topic"),
    ("indicator", "Indicator"),
    ("cardsShown", "Cards shown"),
    ("feedbackReceived", "Feedback"),
    ("accepted", "Accepted"),
    ("overridden", "Overridden"),
    ("overrideRate", "Override rate"),
    ("suppressedAtSign", "Not repeated at sign"),
    ("topOverrideReasons", "Top override reasons"),
)


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([key for key, _ in COLUMNS])
    for row in report["rows"]:
        writer.writerow([_cell(key, row[key], csv_cell=True) for key, _ in COLUMNS])
    return out.getvalue()


def to_table(report: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    since = report["since"] or "the first record"
    table = Table(title=f"Card feedback since {since} (rules {report['ruleVersion']})")
    for key, title in COLUMNS:
        numeric = key not in ("topic", "indicator", "topOverrideReasons")
        table.add_column(title, justify="right" if numeric else "left", no_wrap=key != "topOverrideReasons")
    for row in report["rows"]:
        table.add_row(*[_cell(key, row[key]) for key, _ in COLUMNS])
    totals = report["totals"]
    table.add_row(
        "all",
        "",
        *[_cell(k, totals[k]) for k in ("cardsShown", "feedbackReceived", "accepted", "overridden")],
        _cell("overrideRate", totals["overrideRate"]),
        _cell("suppressedAtSign", totals["suppressedAtSign"]),
        "",
        style="bold",
    )
    console.print(table)
    if report["unknownCardFeedback"]:
        console.print(f"Feedback for cards this service never issued: {report['unknownCardFeedback']}")


def _cell(key: str, value: Any, *, csv_cell: bool = False) -> str:
    if value is None:
        return "" if csv_cell else "–"
    if key == "overrideRate":
        return f"{value:.4f}" if csv_cell else f"{value:.0%}"
    if key == "topOverrideReasons":
        return "; ".join(f"{r['display']} ({r['count']})" for r in value)
    return str(value)
