"""``cds-service knowledge check|report``: the knowledge base, checked and described without a server.

    cds-service knowledge check [DIR] [--site DIR]           exit 0 and a summary, or 1 and one line
    cds-service knowledge report [DIR] [--site DIR] [--json] value sets: codes by system, verify, sources

DIR defaults to $CDS_CARDS_DIR (else the shipped cards/), --site to $CDS_SITE_KNOWLEDGE (else none):
the same files the service would load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register_cli(subparsers: Any) -> None:
    knowledge = subparsers.add_parser(
        "knowledge",
        help="check or describe the knowledge base (cards/ and the site directory)",
        description="Check or describe the knowledge the service would load: cards/ plus the site "
        "knowledge directory (CDS_SITE_KNOWLEDGE).",
    )
    commands = knowledge.add_subparsers(dest="knowledge_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate the knowledge base as the service does at start (exit 1 and one line if broken)",
        description="Load and validate the knowledge base exactly as the service does at start, without "
        "starting it. Exit 0 with a short summary when it is usable, 1 with one line naming the file "
        "when it is not.",
    )
    report = commands.add_parser(
        "report",
        help="per value set: codes by system, how many are marked verify, and their sources",
        description="Per value set: codes by code system, filters, names, how many entries are marked "
        "verify, and how many codes cite each source. Site additions are shown apart.",
    )
    for command in (check, report):
        command.add_argument(
            "directory",
            nargs="?",
            type=Path,
            help="the knowledge base (default $CDS_CARDS_DIR, else the shipped cards/)",
        )
        command.add_argument(
            "--site", type=Path, help="site knowledge directory (default $CDS_SITE_KNOWLEDGE, else none)"
        )
    report.add_argument("--json", action="store_true", help="JSON for machines instead of a text table")
    check.set_defaults(func=run_check)
    report.set_defaults(func=run_report)


def _directories(args: argparse.Namespace) -> tuple[Path, Path | None]:
    from cds_service.config import DEFAULT_CARDS_DIR

    cards_dir = args.directory or Path(os.environ.get("CDS_CARDS_DIR") or DEFAULT_CARDS_DIR)
    site = args.site or (os.environ.get("CDS_SITE_KNOWLEDGE") or "").strip() or None
    return _shown(cards_dir), _shown(Path(site)) if site else None


def _shown(path: Path) -> Path:
    """The path relative to the working directory when it lies below it: shorter lines for people."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def _broken(error: Exception) -> int:
    print(f"cds-service: knowledge base is broken: {' '.join(str(error).split())}", file=sys.stderr)
    return 1


def run_check(args: argparse.Namespace) -> int:
    from cds_service.config import Settings
    from cds_service.knowledge.dose_table import dose_table
    from cds_service.knowledge.loader import KnowledgeError, load_knowledge

    cards_dir, site_dir = _directories(args)
    caps_version = (os.environ.get("CDS_DOSE_CAPS_VERSION") or "").strip() or Settings.dose_caps_version
    try:
        knowledge = load_knowledge(cards_dir, site_dir)
        dose_table(knowledge, caps_version)  # as the service does at start
    except KnowledgeError as exc:
        return _broken(exc)
    codes = sum(len(c) for matcher in knowledge.valuesets.values() for c in matcher.codes.values())
    tables = ", ".join(sorted(knowledge.data))
    print(f"knowledge OK: version {knowledge.version}")
    print(
        f"  {cards_dir}: {len(knowledge.topics)} topics, {len(knowledge.valuesets)} value sets "
        f"({codes} codes), tables {tables}; dose caps {caps_version}"
    )
    if knowledge.site is not None:
        site = knowledge.site
        indicators = ", ".join(f"{topic}={value}" for topic, value in site["indicators"].items())
        print(
            f"  site {site_dir}: value sets extended: {', '.join(site['valueSetsExtended']) or 'none'}; "
            f"topics off: {', '.join(site['topicsOff']) or 'none'}; indicators: {indicators or 'unchanged'}"
        )
    return 0


def run_report(args: argparse.Namespace) -> int:
    from cds_service.knowledge.loader import KnowledgeError
    from cds_service.knowledge.report import build_report, render_json, render_text

    cards_dir, site_dir = _directories(args)
    try:
        report = build_report(cards_dir, site_dir)
    except KnowledgeError as exc:
        return _broken(exc)
    sys.stdout.write(render_json(report) if args.json else render_text(report))
    return 0
