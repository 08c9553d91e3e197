"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask

from cds_service.config import ConfigError, Settings
from cds_service.fhir_models import preload
from cds_service.integration.tools import require_tools
from cds_service.knowledge.loader import KnowledgeError
from cds_service.observability import install_observability
from cds_service.protocol.cors import install_cors
from cds_service.protocol.json_provider import OrjsonProvider
from cds_service.protocol.routes import blueprint, register_error_handlers
from cds_service.runtime import Runtime
from cds_service.security import install_security
from cds_service.storage import install_storage

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the service. Raises ConfigError (one line, for the operator) when it cannot start."""
    settings = settings or Settings.from_env()
    if settings.preview_enabled:  # before anything starts or logs: the start stops with this one line
        require_tools("the card preview page (CDS_PREVIEW_ENABLED=true)", ("markdown",))
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    try:
        app.extensions["cds.runtime"] = Runtime.start(settings)
    except KnowledgeError as exc:
        raise ConfigError(f"knowledge base in {settings.cards_dir} is broken: {exc}") from exc
    preload()
    install_observability(app, settings)
    from cds_service import metrics  # after install_observability: under gunicorn, metrics load late

    metrics.record_build_info(app.extensions["cds.runtime"].knowledge.version)
    install_security(app, settings)
    install_storage(app, settings)
    install_cors(app, settings)
    if settings.preview_enabled:
        # Imported only when on: the page renders card details with markdown, from the tools extra.
        from cds_service.integration.preview import install_preview

        install_preview(app, settings)
    app.register_blueprint(blueprint)
    register_error_handlers(app)
    return app
