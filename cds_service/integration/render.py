"""Cards in a terminal, the way an EHR would show them: indicator in colour, summary, detail rendered
from markdown, suggestions, override reasons and source. ``--json`` prints the raw response instead.

Card texts come from the service; they are shown as plain ``Text``/``Markdown`` (never as rich markup),
so a bracket or escape sequence in a card cannot restyle or control the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

INDICATOR_STYLES = {"critical": "bold red", "warning": "bold yellow", "info": "bold blue"}


def make_console(file: TextIO | None = None, *, color: bool | None = None) -> Console:
    """A console for card output; colour follows the terminal (and NO_COLOR) unless forced."""
    if color is None:
        return Console(file=file, highlight=False, soft_wrap=False)
    return Console(file=file, highlight=False, force_terminal=color, no_color=not color, width=100)


def print_json(value: Any, file: TextIO) -> None:
    file.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _suggestions(card: Mapping[str, Any]) -> list[RenderableType]:
    items: list[RenderableType] = []
    for suggestion in card.get("suggestions") or []:
        line = Text("  [ ", style="cyan")
        line.append(str(suggestion.get("label", "")), style="bold cyan")
        line.append(" ]", style="cyan")
        if suggestion.get("isRecommended"):
            line.append("  recommended", style="green")
        items.append(line)
        for action in suggestion.get("actions") or []:
            target = action.get("resourceId") or (action.get("resource") or {}).get("resourceType", "")
            text = Text(f"      {action.get('type', '?')} {target}: ", style="dim")
            text.append(str(action.get("description", "")))
            items.append(text)
    if items:
        items.insert(0, Text("Suggestions", style="bold"))
    return items


def _override_reasons(card: Mapping[str, Any]) -> list[RenderableType]:
    reasons = card.get("overrideReasons") or []
    if not reasons:
        return []
    lines: list[RenderableType] = [Text("Override reasons", style="bold")]
    for reason in reasons:
        lines.append(Text(f"  ( ) {reason.get('display') or reason.get('code')}  [{reason.get('code')}]"))
    return lines


def _source(card: Mapping[str, Any]) -> Text:
    source = card.get("source") or {}
    topic = source.get("topic") or {}
    text = Text("Source: ", style="dim")
    text.append(str(source.get("label", "")))
    if source.get("url"):
        text.append(f"  {source['url']}", style="dim underline")
    if topic.get("code"):
        text.append(f"\nTopic: {topic.get('code')}", style="dim")
        if topic.get("display"):
            text.append(f" ({topic['display']})", style="dim")
    return text


def card_renderable(card: Mapping[str, Any]) -> Panel:
    indicator = str(card.get("indicator", "info"))
    style = INDICATOR_STYLES.get(indicator, "bold")
    title = Text(f" {indicator.upper()} ", style=f"reverse {style}")
    # The summary goes in the body, where a long one wraps instead of being cut off like a title.
    parts: list[RenderableType] = [Text(str(card.get("summary", "")), style="bold")]
    if card.get("detail"):
        parts.append(Text(""))
        parts.append(Markdown(str(card["detail"])))
    for section in (_suggestions(card), _override_reasons(card)):
        if section:
            parts.append(Text(""))
            parts.extend(section)
    parts.append(Text(""))
    parts.append(_source(card))
    return Panel(Group(*parts), title=title, title_align="left", border_style=style.split()[-1])


def print_cards(cards: Sequence[Mapping[str, Any]], console: Console) -> None:
    if not cards:
        console.print(Text("No cards: nothing to warn about for this order.", style="green"))
        return
    counts: dict[str, int] = {}
    for card in cards:
        counts[str(card.get("indicator"))] = counts.get(str(card.get("indicator")), 0) + 1
    summary = ", ".join(f"{n} {indicator}" for indicator, n in counts.items())
    console.print(Text(f"{len(cards)} card(s): {summary}", style="bold"))
    for card in cards:
        console.print(card_renderable(card))


def print_problem(status: int, body: Any, console: Console) -> None:
    """A non-200 answer: the OperationOutcome's diagnostics, or the body as it came."""
    console.print(Text(f"HTTP {status}", style="bold red"))
    issues = body.get("issue") if isinstance(body, Mapping) else None
    if isinstance(issues, list) and issues:
        for issue in issues:
            where = ", ".join(issue.get("expression") or [])
            line = Text(f"  {issue.get('severity', 'error')}: {issue.get('diagnostics', issue.get('code'))}")
            if where:
                line.append(f"  ({where})", style="dim")
            console.print(line)
    else:
        console.print(Text(json.dumps(body, indent=2)[:2000]))
