"""WSGI entry point for gunicorn: ``cds_service.wsgi:app``."""

import gc

from cds_service.app import create_app

app = create_app()
# What the start loaded (modules, knowledge, clients) lives as long as the worker: frozen, the collector
# no longer walks it at each full collection, which a heavy call's decoding (tens of thousands of new
# containers) triggers. Here, not in create_app: tests build many apps in one process.
gc.freeze()
