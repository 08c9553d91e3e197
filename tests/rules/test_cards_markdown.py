"""Text from the patient's record cannot make HTML or links in a card's markdown detail.

EHRs render ``detail`` as markdown, some with raw HTML allowed (the CDS Hooks sandbox). The record's free
text (condition and drug names) goes into the detail; it must come out as text. Rendered here with
Python-Markdown, which passes raw HTML through as such renderers do.
"""

from __future__ import annotations

from pathlib import Path

import markdown
from helpers.fixture_calls import cards_for, first_draft, make_client, request_for

HOSTILE_CONDITION = "Epilepsy <img src=x onerror=alert(1)> [x](javascript:alert(1)) \\<b>bold</b>"
HOSTILE_DRUG = "Firdapse <script>alert(2)</script>"


def test_record_text_renders_as_text_in_the_detail(tmp_path: Path) -> None:
    request = request_for("seizure-epilepsy")
    request["prefetch"]["conditions"]["entry"][0]["resource"]["code"]["text"] = HOSTILE_CONDITION
    first_draft(request)["medicationCodeableConcept"]["text"] = HOSTILE_DRUG
    (card,) = cards_for(make_client(tmp_path), request)
    assert card["source"]["topic"]["code"] == "seizure-history"
    html = markdown.markdown(card["detail"])
    for markup in ("<img", "<script", "<b>", 'href="javascript'):
        assert markup not in html
    # ... and the words are still there for the clinician to read.
    assert "Epilepsy &lt;img src=x onerror=alert(1)&gt;" in html
    assert "Firdapse &lt;script&gt;" in html


def test_ordinary_names_and_units_are_unchanged(tmp_path: Path) -> None:
    request = request_for("weight-grams-child")
    quantity = request["prefetch"]["weight"]["entry"][0]["resource"]["valueQuantity"]
    quantity.update({"value": 88, "unit": "[lb_av]", "code": "[lb_av]"})
    client = make_client(tmp_path)
    (card,) = cards_for(client, request)
    assert "39.9 kg (recorded as 88 lb)" in card["detail"]  # the UCUM code in words (issue 17)
    # Brackets in an ordinary name are not escaped either.
    (card,) = cards_for(client, request_for("seizure-epilepsy"))
    assert "amifampridine 10 MG Oral Tablet [Firdapse]" in card["detail"]
