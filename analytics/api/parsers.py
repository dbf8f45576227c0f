"""The project's JSON parser (DEFAULT_PARSER_CLASSES): bounded nesting, no NaN/Infinity.

DRF's JSONParser lets two kinds of body reach the code as a 500: one nested past the
interpreter's recursion limit (`[` × 100 000) raises RecursionError inside the decoder, and
one nested just below it parses but overflows whatever walks it next (the renderer, psycopg's
JSON dumper, PostgreSQL's jsonb input). Both are a 400 `parse_error` here. No endpoint takes
documents anywhere near MAX_JSON_DEPTH levels deep.
"""

import json

from django.conf import settings
from rest_framework import exceptions, parsers

# Nesting levels, the outermost object or list being level 1.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels"


def reject_constant(name: str):
    """`parse_constant` for json.loads: NaN and Infinity are not JSON numbers."""
    raise ValueError(f"{name} is not a valid JSON number")


def nested_deeper_than(data, limit: int) -> bool:
    """True if `data` (parsed JSON) has containers nested more than `limit` levels deep.

    Iterative, so it cannot overflow the stack it is protecting.
    """
    if type(data) is not dict and type(data) is not list:
        return False
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        for child in value.values() if type(value) is dict else value:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def parse_json_bytes(raw: bytes, *, encoding: str = "utf-8", **loads_kwargs):
    """Decode and parse a JSON body; raise ParseError for bad JSON or nesting too deep."""
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise exceptions.ParseError(f"JSON parse error - {exc}") from None
    try:
        data = json.loads(text, parse_constant=reject_constant, **loads_kwargs)
    except RecursionError:
        raise exceptions.ParseError(TOO_DEEP) from None
    except ValueError as exc:
        raise exceptions.ParseError(f"JSON parse error - {exc}") from None
    # A document cannot be deeper than its number of opening brackets; counting them is C
    # speed, so most bodies never need the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and nested_deeper_than(
        data, MAX_JSON_DEPTH
    ):
        raise exceptions.ParseError(TOO_DEEP)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser with the nesting bound; NaN and Infinity are refused as before."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        return parse_json_bytes(stream.read(), encoding=encoding)
