"""What the service loads once at start-up and shares across requests, and its accessor.

``install_runtime(app, settings)`` puts it on the app; ``get_runtime()`` reads it in a request
(as the Flask tutorial's ``init_app``/``get_db``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from cds_service.config import Settings
from cds_service.fhir_client import ClientSettings, FhirClient
from cds_service.hooks.services import discovery_document, prefetch_templates
from cds_service.knowledge.dose_table import dose_table
from cds_service.knowledge.loader import Knowledge, load_knowledge
from cds_service.rules.base import Options


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    knowledge: Knowledge
    templates: Mapping[str, str]
    discovery: Mapping[str, Any]
    fhir_client: FhirClient
    options: Options

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        knowledge = load_knowledge(settings.cards_dir, settings.site_knowledge_dir)
        # Parse the dose table for the configured label version now: a broken dose-caps.yaml or an
        # unknown CDS_DOSE_CAPS_VERSION must stop the start, not the first amifampridine order.
        dose_table(knowledge, settings.dose_caps_version)
        client = FhirClient(
            ClientSettings(
                connect_timeout=settings.fhir_connect_timeout,
                read_timeout=settings.fhir_read_timeout,
                deadline=settings.fhir_deadline,
                max_pages=settings.fhir_max_pages,
                max_response_bytes=settings.fhir_max_response_bytes,
                max_workers=settings.fhir_max_workers,
                max_call_bytes=settings.fhir_max_call_bytes,
                max_per_origin=settings.fhir_max_per_origin,
                calls_in_flight=settings.request_threads,
            )
        )
        return cls(
            settings=settings,
            knowledge=knowledge,
            templates=prefetch_templates(knowledge),
            discovery=discovery_document(knowledge),
            fhir_client=client,
            options=Options(
                weight_max_age_days=settings.weight_max_age_days,
                renal_max_age_days=settings.renal_max_age_days,
                dose_caps_version=settings.dose_caps_version,
                dose_max_lines=settings.dose_max_lines,
                dose_text_max_chars=settings.dose_text_max_chars,
                dose_order_text_max_chars=settings.dose_order_text_max_chars,
            ),
        )


_KEY = "cds.runtime"


def install_runtime(app: Flask, settings: Settings) -> Runtime:
    """Load the knowledge and build the shared clients; raises KnowledgeError on a damaged ``cards/``."""
    runtime = app.extensions[_KEY] = Runtime.start(settings)
    return runtime


def get_runtime() -> Runtime:
    """The current app's runtime (in a request or an app context)."""
    runtime: Runtime = current_app.extensions[_KEY]
    return runtime
