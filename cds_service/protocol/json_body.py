"""Read a request's JSON body once, fast (orjson), with the limits a public endpoint needs.

Flask's MAX_CONTENT_LENGTH turns an oversized body into 413 before it is read; here a body that is not
JSON gets 415 (wrong media type) or 400 (malformed), and nesting deeper than the limit gets 400 before
any code walks it.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import request

from cds_service.protocol.errors import CdsError, InvalidRequest

JSON_TYPES = ("application/json", "application/fhir+json")


# Byte tables for the depth check: keep quotes and brackets (objects counted as arrays), drop the rest.
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')


def _depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether ``raw`` (JSON that orjson has accepted) nests containers deeper than ``limit``.

    Works on the bytes with C-speed bytes methods instead of walking the decoded objects: on a 260 KB
    prefetch that walk cost four times the decode itself; this costs a fifth of it. Escapes go first
    (an escaped quote must not end a string); then only quotes and brackets are kept, objects counted
    as arrays; strings are dropped (brackets inside them do not nest); then one level of empty ``[]``
    pairs is removed per pass: the number of passes is the depth.
    """
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Two adjacent quotes enclose nothing (or nothing but the gap between two strings): dropping them
    # keeps every other character inside or outside a string, and leaves few strings to split out.
    structure = raw.translate(_SQUARE, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    depth = 0
    while structure:
        depth += 1
        if depth > limit:
            return True
        shorter = structure.replace(b"[]", b"")
        if len(shorter) == len(structure):
            return True  # unbalanced: cannot happen after orjson accepted the body; refuse anyway
        structure = shorter
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
    if _depth_exceeds(raw, max_depth):
        raise InvalidRequest(f"the request body is nested deeper than {max_depth} levels")
    return body
