"""Canonical JSON and the digests derived from it.

Every hash in the project (provenance input and output hashes, error signatures, golden
files) is computed here, so that one value always produces one digest whoever computes it.
"""

import hashlib
import json
import uuid
from typing import Any


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of ``value``.

    Keys are sorted and no whitespace is emitted, so dicts that differ only in key order
    serialise identically. Floats keep Python's shortest round-trip form (``500.0``,
    ``3.56``) and integers have no decimal point, so ``500`` and ``500.0`` hash differently.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(value: Any) -> str:
    """Return the lowercase hex SHA-256 (64 characters) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def short_hash(value: Any, length: int = 16) -> str:
    """Return the first ``length`` hex characters of ``sha256_hex(value)``."""
    return sha256_hex(value)[:length]


def random_hex12() -> str:
    """Return a random 12-hex-character identifier (breaker incidents, canary run ids)."""
    return uuid.uuid4().hex[:12]


def sha256_text_hex(text: str) -> str:
    """Return the lowercase hex SHA-256 of ``text`` encoded as UTF-8, with no JSON quoting.

    Error signatures hash the normalised error text itself; PostgreSQL's
    ``encode(sha256(convert_to(text, 'UTF8')), 'hex')`` gives the same digest.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
