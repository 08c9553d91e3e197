"""The baseline: a Flask app that only decodes the JSON body and answers ``{"cards": []}``.

Run under the service's own gunicorn configuration (``python:cds_service.gunicorn_conf``), so the ratio
service/baseline measures what the service adds on top of HTTP, gunicorn, Flask and one orjson decode.
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    body = orjson.loads(request.get_data(cache=False))
    if not isinstance(body, dict):
        return Response(b'{"error": "not an object"}', status=400, mimetype="application/json")
    return Response(orjson.dumps({"cards": []}), mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status": "ok"}', mimetype="application/json")
