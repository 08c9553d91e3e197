"""The prefetch plan, without Flask, a FHIR server or a database: for each advertised key, whether the
value the EHR sent is read as is, fetched again (and why), paged on, or reported unavailable."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.hooks.prefetch import MAX_MEDICATION_IDS, plan_medications, plan_prefetch
from cds_service.hooks.services import SERVICES
from cds_service.hooks.validation import HookCall, validate_call

PATIENT = "p1"
SERVER = "https://ehr.example.org/fhir"
TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "encounter": "Encounter/{{context.encounterId}}",
}


def _call(prefetch: dict[str, Any], *, server: str | None = SERVER, orders: list[Any] = ()) -> HookCall:
    draft = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order"}
    body: dict[str, Any] = {
        "hook": "order-sign",
        "hookInstance": "h1",
        "context": {
            "userId": "Practitioner/u1",
            "patientId": PATIENT,
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": r} for r in [draft, *orders]]},
        },
        "prefetch": prefetch,
    }
    if server is not None:
        body["fhirServer"] = server
    return validate_call(body, SERVICES["amifampridine-order-sign"])


def _bundle(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    bundle["entry"] = [{"resource": r} for r in resources]
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning"}, {"severity": "fatal"}]}


def _condition(reference: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "c1", "subject": {"reference": reference}}


def test_values_sent_for_this_patient_are_read_as_sent_and_absent_ones_are_fetched() -> None:
    conditions = _bundle(_condition("Patient/p1"), _condition(f"{SERVER}/Patient/p1"))
    plan = plan_prefetch(_call({"patient": None, "conditions": conditions}), TEMPLATES)
    assert plan.usable == {"patient": None, "conditions": conditions}
    assert plan.fetch == {}
    assert plan.unavailable == {"encounter": "its query needs a context value the request did not carry"}

    plan = plan_prefetch(_call({}), TEMPLATES)
    assert plan.fetch == {"patient": "Patient/p1", "conditions": "Condition?patient=p1"}
    assert plan.why == {"patient": "not in prefetch", "conditions": "not in prefetch"}


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (
            {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]},
            "the EHR reported an error for it in prefetch",
        ),
        (_bundle(_condition("Patient/p2")), "it holds data about a patient other than context.patientId"),
        (
            _bundle(_condition("Patient/p1"), _condition(f"{SERVER}/Patient/p2")),
            "it holds data about a patient other than context.patientId",
        ),
        (
            _bundle({"resourceType": "Condition", "patient": {"reference": "Patient/p1x"}}),
            "it holds data about a patient other than context.patientId",
        ),
        ({"resourceType": "Bundle", "entry": "x"}, "the Bundle's entry is not a list of objects"),
        (
            {"resourceType": "Bundle", "entry": [{"resource": {}}, 1]},
            "the Bundle's entry is not a list of objects",
        ),
        (
            {"resourceType": "Bundle", "entry": [{"resource": OUTCOME}], "link": ["x"]},
            "the Bundle's link is not a list of objects",
        ),
        (
            _bundle(_condition("Patient/p1"), OUTCOME),
            "the Bundle carries an OperationOutcome with an error",
        ),
    ],
)
def test_a_value_that_cannot_be_read_is_fetched_again_saying_why(sent: Any, why: str) -> None:
    plan = plan_prefetch(_call({"conditions": sent}), TEMPLATES)
    assert "conditions" not in plan.usable
    assert plan.fetch["conditions"] == "Condition?patient=p1"
    assert plan.why["conditions"] == why

    plan = plan_prefetch(_call({"conditions": sent}, server=None), TEMPLATES)
    assert plan.fetch == {}
    assert plan.unavailable["conditions"] == f"{why} and no fhirServer was given"


def test_a_warning_outcome_in_a_bundle_does_not_make_it_unusable() -> None:
    warning = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning"}]}
    plan = plan_prefetch(_call({"conditions": _bundle(_condition("Patient/p1"), warning)}), TEMPLATES)
    assert "conditions" in plan.usable


def test_a_reference_ending_in_the_patient_id_without_a_slash_is_another_patient() -> None:
    plan = plan_prefetch(_call({"conditions": _bundle(_condition(f"{SERVER}/Patient/xp1"))}), TEMPLATES)
    assert "conditions" in plan.fetch


def test_a_first_page_is_read_and_paged_on_or_reported_without_a_server() -> None:
    first = _bundle(_condition("Patient/p1"), next_url=f"{SERVER}/Condition?page=2")
    plan = plan_prefetch(_call({"conditions": first}), TEMPLATES)
    assert plan.usable["conditions"] == first
    assert plan.fetch["conditions"] == first
    assert plan.why["conditions"] == "only the first page of results was sent"

    plan = plan_prefetch(_call({"conditions": first}, server=None), TEMPLATES)
    assert "conditions" not in plan.usable
    assert plan.unavailable["conditions"] == (
        "only the first page of results was sent and there is no fhirServer to read the rest"
    )


def _by_reference(ident: str, reference: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": ident,
        "status": "draft",
        "intent": "order",
        "medicationReference": {"reference": reference},
    }


def test_referenced_medications_are_fetched_by_id_and_the_others_say_why_not() -> None:
    orders = [
        _by_reference("d2", "Medication/m1"),
        _by_reference("d3", "https://elsewhere.example/fhir/Medication/m2"),
        _by_reference("d4", "#contained"),
        _by_reference("d5", "Medication/m3"),
        {"resourceType": "Medication", "id": "m3"},
    ]
    plan = plan_medications(_call({}, orders=orders), None)
    assert plan.ids == {"Medication/m1": "m1"}
    assert plan.query() == "Medication?_id=m1"
    assert plan.unresolved == {
        "Medication/m2": "points outside the FHIR server (the token goes to fhirServer only)"
    }
    without_server = plan_medications(_call({}, orders=orders, server=None), None)
    assert without_server.ids == {}
    assert set(without_server.unresolved) == {"Medication/m1", "Medication/m2"}


def test_at_most_one_query_worth_of_medications_is_fetched() -> None:
    orders = [_by_reference(f"d{n}x", f"Medication/m{n}") for n in range(MAX_MEDICATION_IDS + 2)]
    call = _call({}, orders=orders)
    call = HookCall(**{**call.__dict__, "draft_orders": tuple(orders)})  # past the draft-order bound
    plan = plan_medications(call, None)
    assert len(plan.ids) == MAX_MEDICATION_IDS
    assert set(plan.unresolved.values()) == {
        f"was not fetched: more than {MAX_MEDICATION_IDS} Medications are referenced"
    }
