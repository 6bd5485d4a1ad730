"""JSON request bodies, bounded: too deep a body is a 400 naming the field, too large a body a 413.

Python's JSON decoder recurses once per level, so a body nested a few thousand levels deep raises
`RecursionError` (a 500), and one nested a few hundred levels deep parses but breaks whatever walks it
later (serializers, the audit diff, the database driver). Every JSON body therefore goes through
`loads`: the DRF parser of every API view and the gateway's hand-parsed check both call it.
"""
from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

# Deeper than any real request needs (LiteLLM's own bodies nest 3–4 levels; metadata a few more),
# shallow enough that every later walk of the value stays far from the recursion limit.
MAX_JSON_DEPTH = 32


class TooDeep(ValueError):
    """A JSON value nested deeper than MAX_JSON_DEPTH; `param` names the top-level field (or `body`)."""

    def __init__(self, field: str | None):
        self.param = field or "body"
        self.reason = f"nested deeper than {MAX_JSON_DEPTH} levels."
        super().__init__(f"{field or 'The JSON body'} is {self.reason}")


def _too_deep(data: Any) -> tuple[bool, str | None]:
    """(too deep?, the top-level field holding the deepest branch). Iterative: no recursion to exhaust."""
    stack: list[tuple[Any, int, str | None]] = [(data, 1, None)]
    while stack:
        value, depth, field = stack.pop()
        if isinstance(value, dict):
            children = value.items()
        elif isinstance(value, list):
            children = ((field, item) for item in value)
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True, field
        for name, child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, field if depth > 1 else str(name)))
    return False, None


def check_depth(data: Any, raw: bytes | str) -> None:
    """Refuse a value nested deeper than MAX_JSON_DEPTH, naming the top-level field that holds it.

    A value cannot be deeper than the number of `[` and `{` in its text: counting them is a C loop,
    so ordinary bodies are never walked.
    """
    opening = (b"[", b"{") if isinstance(raw, bytes) else ("[", "{")
    if raw.count(opening[0]) + raw.count(opening[1]) <= MAX_JSON_DEPTH:
        return
    deep, field = _too_deep(data)
    if deep:
        raise TooDeep(field)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON.")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # one decoder: the check's body is parsed per request


def loads(raw: bytes | str) -> Any:
    """Decode a JSON body (NaN and Infinity refused, as DRF does) with its depth bounded.

    Raises TooDeep, or another ValueError (UnicodeDecodeError, JSONDecodeError) for a body that is not JSON.
    """
    text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, bytes) else raw
    try:
        data = _DECODER.decode(text)
    except RecursionError:
        raise TooDeep(None) from None
    check_depth(data, raw)
    return data




def body_limit() -> int | None:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def read_bounded(stream: Any) -> bytes:
    """Read a request stream, refusing (413) more than DATA_UPLOAD_MAX_MEMORY_SIZE bytes.

    DRF's parsers read the WSGI stream directly, past the check Django applies to `request.body`.
    """
    limit = body_limit()
    raw = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(raw) > limit:
        raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
    return raw


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with the body's size and nesting bounded (the default parser of every API view)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = read_bounded(stream)
        try:
            return loads(raw.decode(encoding))
        except TooDeep as exc:  # a 400 naming the field, in the route's error shape
            raise ValidationError({exc.param: [exc.reason]}) from None
        except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
            raise ParseError(f"JSON parse error - {exc}") from None

