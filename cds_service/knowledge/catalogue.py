"""The card catalogue for the README, generated from ``cards/`` so it cannot drift from the rules.

``python -m cds_service.knowledge.catalogue`` prints the markdown table (topic | indicator | trigger |
source); ``tests/knowledge/test_knowledge_catalogue.py`` fails when the README block differs from it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from cds_service.config import DEFAULT_CARDS_DIR
from cds_service.knowledge.loader import Knowledge, load_knowledge

START = "<!-- card-catalogue:start -->"
END = "<!-- card-catalogue:end -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def catalogue(knowledge: Knowledge) -> str:
    """A markdown table with one row per card topic, in the CodeSystem's order."""
    lines = [
        "| topic | indicator | trigger | source |",
        "|---|---|---|---|",
    ]
    for topic in knowledge.topics.values():
        indicators = [topic.indicator] + [
            f"{v.indicator} ({name})" for name, v in topic.variants.items() if v.indicator != topic.indicator
        ]
        section = f" §{topic.section}" if topic.section else ""
        lines.append(
            f"| `{topic.topic}` | {', '.join(indicators)} | {_cell(topic.trigger)} | "
            f"{_cell(knowledge.label.source_label)}{section} |"
        )
    return "\n".join(lines) + "\n"


def _ordered(knowledge: Knowledge, cards_dir: Path) -> Knowledge:
    codes = [
        c["code"] for c in json.loads((cards_dir / "card-topics.codesystem.json").read_text())["concept"]
    ]
    topics = {code: knowledge.topics[code] for code in codes if code in knowledge.topics}
    return replace(knowledge, topics=topics)


def render(cards_dir: Path = DEFAULT_CARDS_DIR) -> str:
    return catalogue(_ordered(load_knowledge(cards_dir), cards_dir))


def readme_block(readme: str) -> str | None:
    """The text between the catalogue markers of a README, or None when the markers are absent."""
    if START not in readme or END not in readme:
        return None
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
