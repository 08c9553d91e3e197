"""Prefetch semantics of CDS Hooks 2.0.1, with the EHR's FHIR server mocked by ``responses``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from helpers.builders import (
    ORDER_SIGN,
    PATIENT_ID,
    amifampridine_order,
    empty_prefetch,
    epilepsy,
    ibuprofen_order,
    order_sign,
    patient,
    searchset,
    topics,
)

FHIR = "https://ehr.example.org/fhir"
TOKEN = "secret-ehr-access-token"
AUTH = {
    "access_token": TOKEN,
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "amifampridine-cds",
}


def _with_server(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "fhirServer": FHIR, "fhirAuthorization": AUTH}


def _serve_record(mocked: responses.RequestsMock, conditions: dict[str, Any] | None = None) -> None:
    """Answer every query the service may make for the test patient."""
    mocked.get(f"{FHIR}/Patient/{PATIENT_ID}", json=patient())
    for resource in ("MedicationRequest", "AllergyIntolerance", "Observation"):
        mocked.get(re.compile(rf"{re.escape(FHIR)}/{resource}\?.*"), json=searchset())
    mocked.get(re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), json=conditions or searchset())


def _queried(mocked: responses.RequestsMock, resource: str) -> list[Any]:
    return [call for call in mocked.calls if urlsplit(call.request.url).path.endswith(f"/{resource}")]


def test_absent_keys_are_fetched_with_the_ehr_token(client: FlaskClient) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        _serve_record(mocked, conditions=searchset(epilepsy()))
        response = client.post(ORDER_SIGN, json=_with_server(order_sign(amifampridine_order())))
        assert response.status_code == 200
        assert topics(response.get_json()) == ["seizure-history"]
        condition_calls = _queried(mocked, "Condition")
        assert len(condition_calls) == 1
        assert parse_qs(urlsplit(condition_calls[0].request.url).query) == {"patient": [PATIENT_ID]}
        assert all(call.request.headers["Authorization"] == f"Bearer {TOKEN}" for call in mocked.calls)
        # All seven keys were absent: seven queries, run in parallel.
        assert len(mocked.calls) == 7


def test_null_prefetch_means_no_data_and_is_not_fetched(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"] = None
    with responses.RequestsMock() as mocked:  # any outbound request would fail the test
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
        assert response.status_code == 200
        assert response.get_json() == {"cards": []}
        assert len(mocked.calls) == 0


EHR_TIMEOUT = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "EHR prefetch timed out"}],
}
ERROR_OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}


@pytest.mark.parametrize(
    "sent",
    # The whole value, or an entry of a searchset (a server's search.mode=outcome; CDS Hooks 2.4).
    [EHR_TIMEOUT, searchset(ERROR_OUTCOME)],
    ids=["operation-outcome", "bundle-with-error-outcome"],
)
def test_an_operation_outcome_in_prefetch_is_fetched_again(client: FlaskClient, sent: dict[str, Any]) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"] = sent
    with responses.RequestsMock() as mocked:
        mocked.get(re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), json=searchset(epilepsy()))
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
        assert topics(response.get_json()) == ["seizure-history"]
        assert len(mocked.calls) == 1


def test_paginated_prefetch_is_completed_from_the_server(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    page2 = f"{FHIR}/Condition?patient={PATIENT_ID}&_page=2"
    prefetch["conditions"] = searchset(epilepsy("c-first", code={"text": "asthma"}), next_url=page2)
    with responses.RequestsMock() as mocked:
        mocked.get(page2, json=searchset(epilepsy("c-second")))
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
        assert topics(response.get_json()) == ["seizure-history"]
        assert [call.request.url for call in mocked.calls] == [page2]


def test_fallback_search_follows_next_links(client: FlaskClient) -> None:
    page2 = f"{FHIR}/Condition?patient={PATIENT_ID}&_getpages=abc&_page=2"
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    with responses.RequestsMock() as mocked:
        mocked.get(page2, json=searchset(epilepsy("c-second")))
        mocked.get(
            f"{FHIR}/Condition?patient={PATIENT_ID}",
            json=searchset(epilepsy("c-first", code={"text": "asthma"}), next_url=page2),
        )
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
        assert topics(response.get_json()) == ["seizure-history"]
        assert len(mocked.calls) == 2


def test_pagination_is_capped(make_app: Any) -> None:
    client = make_app(CDS_FHIR_MAX_PAGES="3").test_client()
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(
            re.compile(rf"{re.escape(FHIR)}/Condition\?.*"),
            json=searchset(next_url=f"{FHIR}/Condition?patient={PATIENT_ID}&_page=next"),
        )
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
        assert topics(response.get_json()) == ["data-unavailable"]
        assert "more than 3 pages" in response.get_json()["cards"][0]["detail"]
        assert len(mocked.calls) == 3


def test_an_answer_over_the_size_limit_is_a_check_not_run(make_app: Any) -> None:
    client = make_app(CDS_FHIR_MAX_RESPONSE_BYTES="4096").test_client()
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    with responses.RequestsMock() as mocked:
        mocked.get(re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), json=searchset(*[epilepsy()] * 40))
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
    assert topics(response.get_json()) == ["data-unavailable"]
    assert "larger than 4096 bytes" in response.get_json()["cards"][0]["detail"]


def test_next_link_to_another_host_is_not_followed(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(next_url="https://attacker.example.net/steal")
    with responses.RequestsMock() as mocked:
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
        assert topics(response.get_json()) == ["data-unavailable"]
        assert len(mocked.calls) == 0


def test_server_down_for_everything_gives_412_when_the_site_asks_for_it(
    make_app: Callable[..., Flask],
) -> None:
    # The default is 200 with a card (tests/test_protocol_no_data_card.py); 412 is the spec's answer.
    client = make_app(CDS_NO_DATA_STATUS="412").test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(re.compile(rf"{re.escape(FHIR)}/.*"), body=requests.ConnectionError("refused"))
        response = client.post(ORDER_SIGN, json=_with_server(order_sign(amifampridine_order())))
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "prefetch.conditions" in outcome["issue"][0]["expression"]
    assert TOKEN not in response.get_data(as_text=True)


def test_no_prefetch_and_no_fhir_server_gives_412_when_the_site_asks_for_it(
    make_app: Callable[..., Flask],
) -> None:
    client = make_app(CDS_NO_DATA_STATUS="412").test_client()
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order()))
    assert response.status_code == 412
    assert "no fhirServer" in response.get_json()["issue"][0]["diagnostics"]


def test_one_failed_query_still_evaluates_the_rest_and_says_what_was_not_checked(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy())
    del prefetch["renal"]
    with responses.RequestsMock() as mocked:
        mocked.get(re.compile(rf"{re.escape(FHIR)}/Observation\?.*"), status=503)
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
    assert response.status_code == 200
    body = response.get_json()
    assert "seizure-history" in topics(body)
    assert TOKEN not in response.get_data(as_text=True)


def test_missing_conditions_key_is_reported_in_a_data_unavailable_card(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    with responses.RequestsMock() as mocked:
        mocked.get(re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), body=requests.ReadTimeout("slow"))
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
    body = response.get_json()
    assert topics(body) == ["data-unavailable"]
    card = body["cards"][0]
    assert card["indicator"] == "warning"
    assert "history of seizures" in card["detail"]
    assert "timed out" in card["detail"]


@pytest.mark.parametrize("status", [401, 403, 500])
def test_server_errors_are_named_without_the_token(client: FlaskClient, status: int) -> None:
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    with responses.RequestsMock() as mocked:
        mocked.get(re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), status=status, json={"token": TOKEN})
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
    assert f"HTTP {status}" in response.get_json()["cards"][0]["detail"]
    assert TOKEN not in response.get_data(as_text=True)


def test_unrelated_order_never_reads_patient_data(client: FlaskClient) -> None:
    with responses.RequestsMock() as mocked:
        response = client.post(ORDER_SIGN, json=_with_server(order_sign(ibuprofen_order())))
        assert response.get_json() == {"cards": []}
        assert len(mocked.calls) == 0


def test_draft_orders_are_never_read_back_from_the_server(client: FlaskClient) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        _serve_record(mocked)
        client.post(ORDER_SIGN, json=_with_server(order_sign(amifampridine_order())))
        assert not [c for c in mocked.calls if "draft-amf" in c.request.url]


def test_a_netrc_entry_for_the_fhir_host_does_not_replace_the_ehr_token(
    client: FlaskClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests, left to read the environment, would send ~/.netrc credentials instead of our header.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine ehr.example.org login intruder password not-the-ehr-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        _serve_record(mocked, conditions=searchset(epilepsy()))
        response = client.post(ORDER_SIGN, json=_with_server(order_sign(amifampridine_order())))
        assert topics(response.get_json()) == ["seizure-history"]
        assert len(mocked.calls) == 7
        assert all(call.request.headers["Authorization"] == f"Bearer {TOKEN}" for call in mocked.calls)


def test_proxy_variables_are_honoured_per_fhir_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from cds_service.fhir_client import _proxies_for

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.hospital.example:3128")
    monkeypatch.setenv("NO_PROXY", "fhir.internal.example")
    _proxies_for.cache_clear()
    try:
        assert _proxies_for("https://ehr.example.org")["https"] == "http://proxy.hospital.example:3128"
        assert _proxies_for("https://fhir.internal.example") == {}
    finally:
        _proxies_for.cache_clear()


def test_cookies_a_fhir_server_sets_are_not_sent_on_later_queries(client: FlaskClient) -> None:
    # One HTTP session serves every hook call of the process: a cookie set in answer to one EHR user's
    # token must not ride along with the next call's queries (another user, perhaps another EHR).
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(
            f"{FHIR}/Patient/{PATIENT_ID}",
            json=patient(),
            headers={"Set-Cookie": "JSESSIONID=first-users-session; Path=/; Secure"},
        )
        for resource in ("MedicationRequest", "AllergyIntolerance", "Observation", "Condition"):
            mocked.get(re.compile(rf"{re.escape(FHIR)}/{resource}\?.*"), json=searchset())
        for _ in range(2):
            response = client.post(ORDER_SIGN, json=_with_server(order_sign(amifampridine_order())))
            assert response.status_code == 200
        assert len(mocked.calls) == 14
        assert not [call for call in mocked.calls if "Cookie" in call.request.headers]


def test_an_error_outcome_inside_a_bundle_without_a_server_is_a_check_not_run(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy(), ERROR_OUTCOME)
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch=prefetch))
    assert topics(response.get_json()) == ["data-unavailable"]
    assert "OperationOutcome with an error" in response.get_json()["cards"][0]["detail"]


def test_a_warning_outcome_inside_a_bundle_is_not_an_error(client: FlaskClient) -> None:
    warning = {**ERROR_OUTCOME, "issue": [{"severity": "warning", "code": "informational"}]}
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy(), warning)
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch=prefetch))
    assert topics(response.get_json()) == ["seizure-history"]


MALFORMED = [("link", 5), ("entry", 5), ("entry", {"a": 1}), ("entry", [None])]


@pytest.mark.parametrize(("element", "value"), MALFORMED)
def test_a_malformed_prefetch_bundle_is_a_check_not_run_not_a_500(
    client: FlaskClient, element: str, value: Any
) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"][element] = value
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch=prefetch))
    assert response.status_code == 200
    assert topics(response.get_json()) == ["data-unavailable"]
    assert f"{element} is not a list of objects" in response.get_json()["cards"][0]["detail"]


def test_a_malformed_answer_from_the_fhir_server_costs_only_its_key(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    with responses.RequestsMock() as mocked:
        answer = {"resourceType": "Bundle", "link": 5}
        mocked.get(re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), json=answer)
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
    assert response.status_code == 200
    assert topics(response.get_json()) == ["data-unavailable"]
    # The operator's log line says which data and why, and nothing about the patient or the token.
    (line,) = [r.getMessage() for r in caplog.records if "fallback query" in r.getMessage()]
    assert line == (
        "fallback query for prefetch key conditions failed: the Bundle's link is not a list of objects"
    )


def test_prefetch_about_another_patient_is_not_judged(client: FlaskClient) -> None:
    # The EHR's prefetch must be about context.patientId; a seizure card from someone else's record
    # would be wrong, and so would silence: the checks are reported as not run.
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy(subject={"reference": "Patient/someone-else"}))
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch=prefetch))
    assert topics(response.get_json()) == ["data-unavailable"]
    assert "a patient other than context.patientId" in response.get_json()["cards"][0]["detail"]


def test_prefetch_about_another_patient_is_fetched_again_when_it_can_be(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    prefetch["patient"] = {**patient(), "id": "someone-else"}
    prefetch["conditions"] = searchset(epilepsy(subject={"reference": f"{FHIR}/Patient/someone-else"}))
    with responses.RequestsMock() as mocked:
        mocked.get(f"{FHIR}/Patient/{PATIENT_ID}", json=patient())
        mocked.get(re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), json=searchset(epilepsy()))
        response = client.post(
            ORDER_SIGN, json=_with_server(order_sign(amifampridine_order(), prefetch=prefetch))
        )
        assert topics(response.get_json()) == ["seizure-history"]
        assert len(mocked.calls) == 2
