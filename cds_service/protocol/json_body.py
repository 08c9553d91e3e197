"""Read a request's JSON body once, fast, with the limits a public endpoint needs.

Flask's MAX_CONTENT_LENGTH turns an oversized body into 413 before it is read (a chunked one, without
Content-Length, once it is read past the limit: ``_more_unframed_body``); here a body that is not
JSON gets 415 (wrong media type) or 400 (malformed), and nesting deeper than the limit (outside the
prefetch records, see ``_NOT_WALKED``) gets 400 before any code walks it.

A hook call's prefetch records (hundreds of KB for a long record) are checked for JSON syntax but left
as raw bytes (``msgspec.Raw``) until the pipeline needs them: most orders are not amifampridine, and
for those no patient data is ever turned into Python objects (``raw_json.decoded`` reads one).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from flask import request

from cds_service.hooks.errors import CdsError, InvalidRequest
from cds_service.hooks.raw_json import RawJson, decoded

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


def _raw_body() -> bytes:
    mimetype = request.mimetype or ""
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise CdsError(415, "the request body must be JSON (Content-Type: application/json)")
    raw = request.get_data(cache=False)
    if not raw:
        raise InvalidRequest("the request body is empty")
    limit = request.max_content_length
    if limit is not None and len(raw) >= limit and _more_unframed_body():
        raise CdsError(413, f"request body larger than {limit} bytes (CDS_MAX_BODY_BYTES)")
    return raw


def _more_unframed_body() -> bool:
    """Whether a body sent without Content-Length (chunked) goes on past what was read.

    Flask refuses an oversized Content-Length up front (413), but a chunked body is read only up to the
    limit and would then fail as truncated JSON (400). One more byte from the server's stream tells.
    """
    if request.content_length is not None:
        return False
    return bool(request.environ["wsgi.input"].read(1))


def _check_depth(body: Any, max_depth: int) -> Any:
    if _depth_exceeds(body, max_depth):
        raise InvalidRequest(f"the request body is nested deeper than {max_depth} levels")
    return body


def read_json(max_depth: int) -> Any:
    """The whole body, decoded (feedback and other small bodies)."""
    raw = _raw_body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON (at character {exc.pos})") from exc
    return _check_depth(body, max_depth)


class _HookRequest(msgspec.Struct):
    """The members of a CDS Hooks request the service reads; any other member is skipped unread.

    UNSET tells an absent member from an explicit null (prefetch semantics depend on it).
    """

    hook: Any = msgspec.UNSET
    hookInstance: Any = msgspec.UNSET
    fhirServer: Any = msgspec.UNSET
    fhirAuthorization: Any = msgspec.UNSET
    context: Any = msgspec.UNSET
    prefetch: dict[str, RawJson] | msgspec.UnsetType | None = msgspec.UNSET


_HOOK_REQUEST = msgspec.json.Decoder(_HookRequest)
_MEMBERS = _HookRequest.__struct_fields__


def _prefetch_value(key: str, raw: RawJson) -> Any:
    """A JSON object left raw; ``null`` as None and any other value decoded (validation refuses those)."""
    if bytes(memoryview(raw)[:1]) == b"{":
        return raw
    return decoded(raw, f"prefetch.{key}")


def read_hook_request(max_depth: int) -> dict[str, Any]:
    """A hook call's body as a dict of its members, the prefetch objects still raw (``RawJson``)."""
    raw = _raw_body()
    try:
        parsed = _HOOK_REQUEST.decode(raw)
    except msgspec.ValidationError as exc:  # a wrong type at the root or for prefetch, or a huge number
        message = str(exc)
        where = message.rpartition(" - at `")[2].rstrip("`") if " - at `" in message else "$"
        if where == "$":
            raise InvalidRequest("the request body must be a JSON object") from exc
        if where == "$.prefetch":
            raise InvalidRequest("prefetch must be a JSON object", "prefetch") from exc
        raise InvalidRequest(f"the request body is not valid JSON ({message})") from exc
    except msgspec.DecodeError as exc:  # msgspec names the byte offset, never the content
        raise InvalidRequest(f"the request body is not valid JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the request body is not valid UTF-8") from exc
    except RecursionError as exc:
        raise InvalidRequest(f"the request body is nested deeper than {max_depth} levels") from exc
    body = {name: value for name in _MEMBERS if (value := getattr(parsed, name)) is not msgspec.UNSET}
    if isinstance(parsed.prefetch, dict):
        body["prefetch"] = {key: _prefetch_value(key, value) for key, value in parsed.prefetch.items()}
    return _check_depth(body, max_depth)
