"""Prefetch values kept as raw JSON bytes until something reads them (see ``json_body``).

``RawJson`` is ``msgspec.Raw``: a slice of the request body whose JSON syntax the decoder has checked.
It is turned into Python objects only where the pipeline needs the patient data, and only once.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from cds_service.hooks.errors import InvalidRequest

RawJson = msgspec.Raw


def decoded(value: Any, path: str) -> Any:
    """A prefetch value as Python objects: decodes a raw one (400 naming ``path`` if it is not JSON)."""
    if not isinstance(value, RawJson):
        return value
    try:
        return orjson.loads(memoryview(value))  # orjson reads buffers, not Raw itself
    except orjson.JSONDecodeError as exc:  # bad UTF-8 or an out-of-range number: msgspec skips over those
        raise InvalidRequest(f"{path} is not valid JSON (at character {exc.pos})", path) from exc


def is_json_object(value: Any) -> bool:
    """A decoded object, or a raw one left for later."""
    return isinstance(value, dict | RawJson)
