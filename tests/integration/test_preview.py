"""The card preview page over HTTP (the browser test looks at it in Chromium)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from preview_app import preview_app

from cds_service.integration.preview import PREVIEW_CSP, install_preview, markdown_html


def test_off_by_default(make_service: Callable[..., Flask]) -> None:
    app = make_service()
    install_preview(app, app.extensions["cds.runtime"].settings)
    client = app.test_client()
    assert client.get("/").status_code == 404
    assert client.get("/preview").status_code == 404
    assert client.get("/preview/fixtures/seizure-epilepsy/cards").status_code == 404


def test_page_lists_the_fixtures_with_its_own_csp(make_service: Callable[..., Flask]) -> None:
    client = preview_app(make_service).test_client()
    for path in ("/", "/preview"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.mimetype == "text/html"
        assert response.headers["Content-Security-Policy"] == PREVIEW_CSP
        page = response.get_data(as_text=True)
        assert 'data-case="seizure-epilepsy"' in page
        assert "<script>" not in page and "style=" not in page  # nothing inline: the CSP forbids it
    script = client.get("/preview/static/preview.js")
    assert script.status_code == 200 and "renderCard" in script.get_data(as_text=True)
    assert client.get("/preview/static/preview.css").status_code == 200
    # The JSON API keeps its strict default policy.
    assert client.get("/cds-services").headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_fixture_cards_come_with_detail_as_html(make_service: Callable[..., Flask]) -> None:
    client = preview_app(make_service).test_client()
    response = client.get("/preview/fixtures/seizure-epilepsy/cards")
    assert response.status_code == 200
    body = response.get_json()
    assert body["actual"] == body["expected"] == ["seizure-history"]
    [card] = body["cards"]
    assert card["indicator"] == "critical"
    assert "<strong>" in card["detailHtml"] and "**" not in card["detailHtml"]


def test_unknown_fixture_is_404_and_no_path_reaches_the_disk(make_service: Callable[..., Flask]) -> None:
    client = preview_app(make_service).test_client()
    assert client.get("/preview/fixtures/nope/cards").status_code == 404
    assert client.get("/preview/fixtures/..%2Fmanifest/cards").status_code == 404


def test_markdown_escapes_raw_html_and_unsafe_links() -> None:
    html = markdown_html(
        "**bold** <script>alert(1)</script>\n\n<div onclick=x>hi</div>\n\n"
        "[bad](javascript:alert(1)) [good](https://dailymed.nlm.nih.gov/)"
    )
    assert "<strong>bold</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<div" not in html
    assert "javascript:" not in html
    assert (
        '<a href="https://dailymed.nlm.nih.gov/" rel="noopener noreferrer" target="_blank">good</a>' in html
    )
