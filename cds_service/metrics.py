"""Prometheus metrics shared by every subsystem.

Defined once here so the protocol layer, the FHIR client, security and storage increment the same
objects. Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` makes prometheus-client aggregate across workers
(see ``cds_service.observability``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from cds_service import __version__

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The endpoint's label is "service_id", never "service": the Prometheus Operator sets its own "service"
# target label (the Kubernetes Service scraped), which would overwrite ours or be renamed exported_service.
REQUESTS = Counter(
    "cds_requests_total",
    "HTTP requests answered, by endpoint service id and status",
    ["service_id", "status"],
)
REQUEST_LATENCY = Histogram(
    "cds_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service_id", "status"],
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
# Always 1; the labels say what is running. "livemax": one series across workers, gone with its worker.
# (No label is named "service": the Prometheus Operator adds its own target label of that name.)
BUILD_INFO = Gauge(
    "cds_build_info",
    "The service version and the knowledge version in force (value always 1)",
    ["version", "knowledge_version"],
    multiprocess_mode="livemax",
)


def record_build_info(knowledge_version: str) -> None:
    BUILD_INFO.labels(version=__version__, knowledge_version=knowledge_version).set(1)
