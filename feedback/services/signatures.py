"""Error signatures. Pure: no ORM, no settings.

Detection computes the same signature inside PostgreSQL so that grouping happens in SQL;
the SQL twin of each rule sits next to its Python form below. The two agree exactly on
ASCII text. Outside ASCII, PostgreSQL's case mapping and character classes depend on the
server's locale, so the selector hands non-ASCII errors to `error_signature` instead.
"""

import re

from analytics.hashing import sha256_text_hex

ENGINE_VERSION = "1"
EMPTY_SIGNATURE = "empty_error"
SIGNATURE_LENGTH = 16

# The ASCII characters that str.strip() removes: besides the usual five, the four
# information separators \x1c-\x1f count as whitespace in Python.
ASCII_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "

# (Python pattern, PostgreSQL ARE pattern, replacement), applied in this order. PostgreSQL
# spells a word boundary \y (its \b is a backspace); [0-9] equals \d on ASCII input.
REPLACEMENTS: tuple[tuple[re.Pattern, str, str], ...] = (
    (
        re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "<uuid>",
    ),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}:\d{2}"),
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[t ][0-9]{2}:[0-9]{2}:[0-9]{2}",
        "<timestamp>",
    ),
    (re.compile(r"\b\d+\b"), r"\y[0-9]+\y", "<n>"),
)


def normalise_error(error: str) -> str:
    """Lower-case, trimmed error text with UUIDs, timestamps and standalone integers masked."""
    text = error.strip().lower()
    for pattern, _sql_pattern, replacement in REPLACEMENTS:
        text = pattern.sub(replacement, text)
    return text


def error_signature(error: str | None) -> str:
    """Return the 16-hex signature of an error, or `empty_error` for blank text."""
    if error is None or not error.strip():
        return EMPTY_SIGNATURE
    return sha256_text_hex(normalise_error(error))[:SIGNATURE_LENGTH]
