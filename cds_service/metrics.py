"""Prometheus metrics shared by every subsystem.

Defined once here so the protocol layer, the FHIR client, security and storage increment the same
objects. Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` makes prometheus-client aggregate across workers
(see ``cds_service.observability``).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "cds_requests_total", "HTTP requests answered, by endpoint service id and status", ["service", "status"]
)
REQUEST_LATENCY = Histogram(
    "cds_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "status"],
    buckets=_LATENCY_BUCKETS,
)
CARDS = Counter("cds_cards_total", "Cards returned, by topic and indicator", ["topic", "indicator"])
FHIR_QUERIES = Counter(
    "cds_fhir_queries_total",
    "Fallback queries to the EHR's FHIR server, by prefetch key and outcome",
    ["key", "outcome"],
)
FHIR_QUERY_LATENCY = Histogram(
    "cds_fhir_query_duration_seconds", "Fallback query latency (all pages)", ["key"], buckets=_LATENCY_BUCKETS
)
JWT_FAILURES = Counter("cds_jwt_failures_total", "Rejected client JWTs, by failed check", ["reason"])
AUDIT_WRITE_FAILURES = Counter("cds_audit_write_failures_total", "Audit/feedback writes that failed")
JWT_REPLAY_FALLBACK = Counter(
    "cds_jwt_replay_fallback_total",
    "JWT replay checks made in the process-local cache because the replay database was unreachable",
)
