"""Serve a Flask app on 127.0.0.1 in a background thread (a real HTTP server, for clients that are not
Flask's test client: the simulator, a browser)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from flask import Flask
from werkzeug.serving import make_server


@contextlib.contextmanager
def serving(app: Flask, port: int = 0) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) while the app is served; stop it afterwards."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
