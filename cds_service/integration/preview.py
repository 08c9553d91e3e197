"""The card preview page: pick a fixture, see its cards the way an EHR shows them.

On only when ``CDS_PREVIEW_ENABLED`` is true (``make run`` sets it). ``GET /`` and ``GET /preview`` serve
the page; ``GET /preview/fixtures/<case>/cards`` runs the fixture's request through the pipeline (offline:
its prefetch is complete) and returns the cards with their detail already rendered to HTML. Plain HTML and
a small script, no build step. Card details are markdown from ``cards/``; raw HTML in them is escaped and
links may only be http(s) or mailto, so the page never runs markup it did not write itself.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import markdown
from flask import Blueprint, Flask, Response, jsonify, render_template
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from cds_service.config import PACKAGE_DIR, Settings
from cds_service.hooks.errors import CdsError
from cds_service.integration.fixtures import FixtureError, fixtures_dir, load_manifest, load_request
from cds_service.integration.offline import evaluate_request
from cds_service.runtime import get_runtime

PREVIEW_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SAFE_SCHEMES = ("http://", "https://", "mailto:", "#")

blueprint = Blueprint(
    "preview",
    __name__,
    template_folder=str(PACKAGE_DIR / "templates"),
    static_folder=str(PACKAGE_DIR / "static" / "preview"),
    static_url_path="/preview/static",
)


class _SafeLinks(Treeprocessor):
    def run(self, root: ET.Element) -> None:
        for element in root.iter():
            for attribute in ("href", "src"):
                value = element.get(attribute)
                if value is not None and not value.strip().lower().startswith(_SAFE_SCHEMES):
                    del element.attrib[attribute]
            if element.tag == "a" and element.get("href", "").startswith("http"):
                element.set("rel", "noopener noreferrer")
                element.set("target", "_blank")


class _NoRawHtml(Extension):
    """Markdown without its raw-HTML pass-through: ``<script>`` in a card detail shows as text."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_SafeLinks(md), "safe_links", 0)


def markdown_html(text: str) -> str:
    return markdown.markdown(text, extensions=[_NoRawHtml()], output_format="html")


def _settings() -> Settings:
    return get_runtime().settings


@blueprint.after_request
def _content_security_policy(response: Response) -> Response:
    # The security headers keep a CSP a view has set; this page needs its own script and stylesheet.
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    return response


@blueprint.get("/")
@blueprint.get("/preview")
def page() -> str:
    root = fixtures_dir(_settings().env)
    try:
        cases = load_manifest(root)
        problem = None
    except FixtureError as exc:
        cases, problem = [], str(exc)
    return render_template("preview.html", cases=cases, problem=problem, root=root)


@blueprint.get("/preview/fixtures/<case_id>/cards")
def fixture_cards(case_id: str) -> tuple[Response, int]:
    root = fixtures_dir(_settings().env)
    try:
        cases = {case.id: case for case in load_manifest(root)}
        if case_id not in cases:  # only ids from the manifest: no path from the URL reaches the disk
            return jsonify({"error": f"no fixture {case_id!r}"}), 404
        body = load_request(root, case_id)
    except FixtureError as exc:
        return jsonify({"error": str(exc)}), 500
    rt = get_runtime()
    try:
        evaluation = evaluate_request(body, rt.knowledge, rt.templates, options=rt.options)
    except CdsError as exc:
        return jsonify({"error": exc.diagnostics, "status": exc.status}), 422
    cards: list[dict[str, Any]] = []
    for card in evaluation.outcome.cards:
        shown = dict(card)
        shown["detailHtml"] = markdown_html(str(card.get("detail", "")))
        cards.append(shown)
    case = cases[case_id]
    return (
        jsonify(
            {
                "case": case_id,
                "situation": case.situation,
                "service": evaluation.call.service.id,
                "expected": sorted(case.expected),
                "actual": sorted(card["source"]["topic"]["code"] for card in cards),
                "cards": cards,
            }
        ),
        200,
    )


def install_preview(app: Flask, settings: Settings) -> None:
    """Register the preview page when ``settings.preview_enabled``; otherwise ``/`` stays a 404."""
    if settings.preview_enabled:
        app.register_blueprint(blueprint)
