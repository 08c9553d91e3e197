"""No repeats at signing (issue 17, item 4; as the HL7 PDDI CDS implementation guide coordinates
order-select and order-sign): a card the clinician accepted or overrode at order-select is not shown again
at order-sign for the same patient and the same order while its finding is unchanged.

Kept in the shared database, so it holds across workers and replicas. The key of a finding is an HMAC,
with the patient-id key (never stored in the database), of the patient id and the card's fingerprint
(``cds_service.card_keys``: topic, words, order id, drug and dose): no patient id in clear, and a changed
dose or another patient gives another key. An answered finding expires after
``CDS_SIGN_SUPPRESSION_HOURS`` (12 h); ``CDS_SIGN_SUPPRESSION=off`` turns all of this off.

Failing open: when the database cannot be read, or feedback could not be stored, the card is shown again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select

from cds_service.storage.dialect import insert_ignore
from cds_service.storage.identity import patient_hash
from cds_service.storage.models import CardSuppression, IssuedCard
from cds_service.storage.writer import chunks

SELECT_HOOK = "order-select"


def keyed(key: str, patient_id: str | None, value: str | None) -> str | None:
    """HMAC of the patient id and ``value``: comparable for one patient and key, opaque without the key."""
    if not patient_id or not value:
        return None
    return patient_hash(key, f"{patient_id}\0{value}")


def suppressed(conn: Connection, finding_keys: Mapping[str, str], now: datetime) -> set[str]:
    """The cards (uuid → finding key) whose finding was answered at order-select and has not expired."""
    wanted = sorted(set(finding_keys.values()))
    answered: set[str] = set()
    for chunk in chunks(wanted):
        query = select(CardSuppression.finding_key).where(
            CardSuppression.finding_key.in_(chunk), CardSuppression.expires_at > now
        )
        answered.update(conn.execute(query).scalars())
    return {card for card, key in finding_keys.items() if key in answered}


def remember_answered(conn: Connection, card_uuids: Iterable[str], now: datetime, hours: float) -> int:
    """Record the findings of these cards, when they were shown at order-select, as answered until
    ``now + hours``; expired rows go at the same time. Returns the findings recorded."""
    keys: set[str] = set()
    for chunk in chunks(sorted(set(card_uuids))):
        query = select(IssuedCard.finding_key).where(
            IssuedCard.card_uuid.in_(chunk),
            IssuedCard.hook == SELECT_HOOK,
            IssuedCard.finding_key.is_not(None),
        )
        keys.update(key for key in conn.execute(query).scalars() if key)
    conn.execute(delete(CardSuppression).where(CardSuppression.expires_at <= now))
    if not keys:
        return 0
    until = now + timedelta(hours=hours)
    for chunk in chunks(sorted(keys)):
        # Answered again: the clock starts again (delete, then insert; a concurrent insert is ignored).
        conn.execute(delete(CardSuppression).where(CardSuppression.finding_key.in_(chunk)))
        rows = [{"finding_key": key, "created_at": now, "expires_at": until} for key in chunk]
        conn.execute(insert_ignore(conn, CardSuppression), rows)
    return len(keys)
