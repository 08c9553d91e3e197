"""Client authentication (CDS Hooks JWT), FHIR server allow-list and response hygiene.

Interface used by the app factory and the protocol layer (implementation: the security issue):
- ``install_security(app, settings)``: registers request hooks that authenticate every call to
  ``/cds-services*`` and ``/admin/*`` (not OPTIONS preflights), put the caller on ``flask.g.cds_client``
  (an object with ``iss`` and ``tenant``, or None when auth is off), and add security headers to every
  response. Raises ``ConfigError`` when the configuration is unusable.
- ``authorize_fhir_server(fhir_server)``: called before any outbound FHIR request; raises ``CdsError(403)``
  when the calling client may not send that server.
"""

from __future__ import annotations

from flask import Flask

from cds_service.config import Settings


def install_security(app: Flask, settings: Settings) -> None:  # placeholder until the security issue lands
    return None


def authorize_fhir_server(fhir_server: str) -> None:
    return None
