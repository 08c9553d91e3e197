"""Inputs and checks for scripts/container-test.sh (run on the host, with the project's virtualenv).

    container_request.py prepare DIR BASE_URL   # trusted-clients.json, request.json, token.txt in DIR
    container_request.py has-card RESPONSE TOPIC INDICATOR   # exit 0 if the response has that card
    container_request.py free-port              # a free TCP port on 127.0.0.1

The test key is generated here and never leaves DIR; the container only sees the public JWK.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISS = "https://ehr.container-test.invalid"
SERVICE_ID = "amifampridine-order-sign"
PATIENT_ID = "container-test-seizure"
_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
_EMPTY_PREFETCH = ("medications", "allergies", "weight", "renal", "nat2")


def _searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": resource} for resource in resources],
    }


def order_sign_request() -> dict[str, Any]:
    """An order-sign call: amifampridine 10 mg TID for an adult with active epilepsy (SNOMED 84757009)."""
    subject = {"reference": f"Patient/{PATIENT_ID}"}
    order = {
        "resourceType": "MedicationRequest",
        "id": "container-test-order",
        "status": "draft",
        "intent": "order",
        "subject": subject,
        "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"},
        "dosageInstruction": [
            {
                "text": "10 mg by mouth three times daily",
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": 10,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }
    patient = {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female", "birthDate": "1975-04-12"}
    epilepsy = {
        "resourceType": "Condition",
        "id": "container-test-epilepsy",
        "clinicalStatus": {"coding": [{"system": f"{_TERMINOLOGY}/condition-clinical", "code": "active"}]},
        "verificationStatus": {
            "coding": [{"system": f"{_TERMINOLOGY}/condition-ver-status", "code": "confirmed"}]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "84757009", "display": "Epilepsy"}]},
        "subject": subject,
    }
    prefetch: dict[str, Any] = {"patient": patient, "conditions": _searchset(epilepsy)}
    prefetch.update({key: _searchset() for key in _EMPTY_PREFETCH})
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/container-test",
            "patientId": PATIENT_ID,
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]},
        },
        "prefetch": prefetch,
    }


def prepare(directory: Path, base_url: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    kid = f"container-test-{uuid.uuid4().hex[:8]}"
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "ES384"})
    client = {"iss": ISS, "name": "container test", "jwks": {"keys": [jwk]}, "fhir_servers": []}
    now = int(time.time())
    claims = {
        "iss": ISS,
        "aud": f"{base_url.rstrip('/')}/cds-services/{SERVICE_ID}",
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    token = jwt.encode(claims, key, algorithm="ES384", headers={"typ": "JWT", "kid": kid})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trusted-clients.json").write_text(json.dumps({"clients": [client]}, indent=2))
    (directory / "request.json").write_text(json.dumps(order_sign_request()))
    (directory / "token.txt").write_text(token)


def has_card(response_path: Path, topic: str, indicator: str) -> bool:
    body = json.loads(response_path.read_text())
    for card in body.get("cards", []):
        card_topic = card.get("source", {}).get("topic", {}).get("code")
        if card_topic == topic and card.get("indicator") == indicator:
            return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "prepare":
        prepare(Path(argv[1]), argv[2])
        return 0
    if len(argv) == 4 and argv[0] == "has-card":
        return 0 if has_card(Path(argv[1]), argv[2], argv[3]) else 1
    if argv == ["free-port"]:
        print(free_port())
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
