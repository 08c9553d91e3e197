"""Read a request's JSON body once, fast (orjson), with the limits a public endpoint needs.

Flask's MAX_CONTENT_LENGTH turns an oversized body into 413 before it is read; here a body that is not
JSON gets 415 (wrong media type) or 400 (malformed), and nesting deeper than the limit (outside the
prefetch records, see ``_NOT_WALKED``) gets 400 before any code walks it.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import request

from cds_service.protocol.errors import CdsError, InvalidRequest

JSON_TYPES = ("application/json", "application/fhir+json")


# Top-level members whose contents are never walked recursively: prefetch holds whole FHIR records
# (hundreds of KB) that the service reads only at fixed paths, so their nesting is bounded by the
# parser's own limit (orjson refuses more than 1024 levels) and checking it here would cost more than
# decoding it.
_NOT_WALKED = frozenset({"prefetch"})


def _depth_exceeds(body: Any, limit: int) -> bool:
    """Whether the walked part of ``body`` nests containers deeper than ``limit``."""
    if isinstance(body, dict):
        stack = [(child, 2) for key, child in body.items() if key not in _NOT_WALKED]
    else:
        stack = [(body, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def read_json(max_depth: int) -> Any:
    mimetype = request.mimetype or ""
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise CdsError(415, "the request body must be JSON (Content-Type: application/json)")
    raw = request.get_data(cache=False)
    if not raw:
        raise InvalidRequest("the request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON (at character {exc.pos})") from exc
    if _depth_exceeds(body, max_depth):
        raise InvalidRequest(f"the request body is nested deeper than {max_depth} levels")
    return body
