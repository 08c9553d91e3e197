"""Codings that name their code system by HL7 OID (or with a trailing slash) are matched like the URIs.

C-CDA-derived records and many EHR interfaces send `urn:oid:2.16.840.1.113883.6.88` for RxNorm and
`urn:oid:2.16.840.1.113883.6.90` for ICD-10-CM; a value set lists the FHIR URI. Same code system, so the
same contraindication must fire.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers.builders import (
    ORDER_SIGN,
    PATIENT_ID,
    amifampridine_order,
    empty_prefetch,
    order_sign,
    searchset,
    topics,
)

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.knowledge.valuesets import SYSTEM_ALIASES, compile_valueset


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    data = tmp_path_factory.mktemp("data")
    return create_app(Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(data)})).test_client()


def coded(resource_type: str, system: str, code: str, **extra: Any) -> dict[str, Any]:
    """A resource coded by code alone: no display, no text, so only the code can match."""
    concept = {"coding": [{"system": system, "code": code}]}
    resource: dict[str, Any] = {"resourceType": resource_type, "id": f"{resource_type}-{code}", **extra}
    resource["medicationCodeableConcept" if resource_type == "MedicationRequest" else "code"] = concept
    resource["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
    return resource


def post(client: FlaskClient, **prefetch: dict[str, Any]) -> list[str]:
    response = client.post(
        ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch={**empty_prefetch(), **prefetch})
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return topics(response.get_json())


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("urn:oid:2.16.840.1.113883.6.90", "G40.909"),  # ICD-10-CM by OID
        ("urn:oid:2.16.840.1.113883.6.103", "345.90"),  # ICD-9-CM by OID
        ("urn:oid:2.16.840.1.113883.6.96", "84757009"),  # SNOMED CT by OID: epilepsy
        ("http://snomed.info/sct/", "84757009"),  # a stray trailing slash
    ],
)
def test_a_seizure_history_coded_under_an_oid_is_a_contraindication(
    client: FlaskClient, system: str, code: str
) -> None:
    assert "seizure-history" in post(client, conditions=searchset(coded("Condition", system, code)))


def test_an_interacting_drug_coded_under_the_rxnorm_oid_interacts(client: FlaskClient) -> None:
    sertraline = coded(
        "MedicationRequest", "urn:oid:2.16.840.1.113883.6.88", "312941", status="active", intent="order"
    )
    assert "seizure-threshold-drug" in post(client, medications=searchset(sertraline))


def test_an_unknown_oid_is_not_taken_for_a_known_system(client: FlaskClient) -> None:
    # 2.16.840.1.113883.6.4 is ICD-10-PCS (procedures): its codes are not diagnoses.
    other = coded("Condition", "urn:oid:2.16.840.1.113883.6.4", "G40.909")
    assert "seizure-history" not in post(client, conditions=searchset(other))


def test_every_alias_names_a_system_the_value_sets_use() -> None:
    matcher = compile_valueset(
        {
            "resourceType": "ValueSet",
            "url": "urn:test",
            "compose": {
                "include": [{"system": "urn:oid:2.16.840.1.113883.6.88", "concept": [{"code": "1"}]}]
            },
        },
        "test",
    )
    # A site file may name a system by its OID too: it is stored under the URI.
    assert matcher.matches_code("http://www.nlm.nih.gov/research/umls/rxnorm", "1")
    assert all(target.startswith("http") and not target.endswith("/") for target in SYSTEM_ALIASES.values())
