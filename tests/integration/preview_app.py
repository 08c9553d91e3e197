"""The service with the preview page on (registered here until the app factory does it itself)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from cds_service.integration.preview import install_preview


def preview_app(make_service: Callable[..., Flask], **env: str) -> Flask:
    app = make_service(CDS_PREVIEW_ENABLED="true", **env)
    if "preview" not in app.blueprints:
        install_preview(app, app.extensions["cds.runtime"].settings)
    return app
