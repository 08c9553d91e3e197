"""Structured request logs and the Prometheus /metrics endpoint (implementation: the operations issue).

``install_observability(app, settings)`` registers request hooks that log one JSON line per request
(reading ``flask.g.cds_log``, which the protocol layer fills with service, hook, hookInstance and card
counts by indicator — never patient data or tokens) and serves ``/metrics``.
"""

from __future__ import annotations

from flask import Flask

from cds_service.config import Settings


def install_observability(app: Flask, settings: Settings) -> None:  # placeholder
    return None
