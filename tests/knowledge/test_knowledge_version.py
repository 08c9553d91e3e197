"""One knowledge version: /readyz, the X-Knowledge-Version header, cds_build_info and the audit rows agree,
and a site file changes it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from helpers.builders import ORDER_SIGN, amifampridine_order, empty_prefetch, epilepsy, order_sign, searchset
from helpers.site_knowledge import LOCAL_FORMULARY, site_valueset, write_site
from prometheus_client import REGISTRY
from sqlalchemy import select

from cds_service import __version__
from cds_service.storage.models import IssuedCard


def _call(app: Flask) -> tuple[str, str, set[str]]:
    """(X-Knowledge-Version of a hook call that issues cards, /readyz knowledgeVersion, the card uuids)."""
    client = app.test_client()
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy())
    answer = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch=prefetch))
    assert answer.status_code == 200 and answer.get_json()["cards"]
    uuids = {card["uuid"] for card in answer.get_json()["cards"]}
    return answer.headers["X-Knowledge-Version"], client.get("/readyz").get_json()["knowledgeVersion"], uuids


def _audited_versions(app: Flask, uuids: set[str]) -> set[str]:
    """The versions stored with these cards (the apps of one test share a database)."""
    store = app.extensions["cds.audit"]
    assert store.flush(timeout=10)
    with store.engine.connect() as conn:
        rows = conn.execute(select(IssuedCard.card_uuid, IssuedCard.rule_version)).all()
    stored = {uuid: version for uuid, version in rows if uuid in uuids}
    assert set(stored) == uuids
    return set(stored.values())


def test_readyz_header_metrics_and_audit_show_the_same_version(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    header, ready, uuids = _call(app)
    assert re.fullmatch(r"[0-9a-f]{12}", header)
    assert header == ready
    assert _audited_versions(app, uuids) == {ready}
    labels = {"version": __version__, "knowledge_version": ready}
    assert REGISTRY.get_sample_value("cds_build_info", labels) == 1.0
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert f'cds_build_info{{knowledge_version="{ready}",version="{__version__}"}} 1.0' in metrics
    assert 'service="' not in metrics.split("cds_build_info", 1)[1].split("\n# ", 1)[0]


def test_a_site_file_changes_the_version_everywhere(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    shipped, _, _ = _call(make_app())
    site = write_site(tmp_path / "site", {"amifampridine": site_valueset(LOCAL_FORMULARY, "FIRD-10")})
    app = make_app(CDS_SITE_KNOWLEDGE=str(site))
    with_site, ready, uuids = _call(app)
    assert with_site == ready != shipped
    assert _audited_versions(app, uuids) == {with_site}

    write_site(site, site_yaml="topics:\n  cholinergic-drug:\n    indicator: info\n")  # tuning counts too
    tuned, _, _ = _call(make_app(CDS_SITE_KNOWLEDGE=str(site)))
    assert tuned not in {shipped, with_site}


def test_an_error_answer_to_a_hook_call_names_the_version_too(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    answer = client.post(ORDER_SIGN, json={"hook": "order-sign"})
    assert answer.status_code == 400
    assert answer.headers["X-Knowledge-Version"] == client.get("/readyz").get_json()["knowledgeVersion"]
    assert "X-Knowledge-Version" not in client.get("/cds-services").headers
