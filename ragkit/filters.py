"""Safe Milvus filter expressions.

Milvus Lite 3.2 rejects pymilvus filter templating (``{name}`` placeholders with
``filter_params``), so user values become string literals here, and only here:
backslashes and double quotes are escaped, control characters are refused, and
every expression is built from these literals and fixed field names.
"""
from __future__ import annotations

import re
from typing import Iterable

from .errors import InvalidInputError
from .records import SOURCES

MAX_LITERAL_CHARS = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def quote_literal(value: str) -> str:
    """Turn any user string into a Milvus string literal that means exactly that string."""
    if not isinstance(value, str):
        raise InvalidInputError(f"expected text, got {type(value).__name__}")
    if len(value) > MAX_LITERAL_CHARS:
        raise InvalidInputError(f"value is {len(value)} characters long; the limit is {MAX_LITERAL_CHARS}")
    if _CONTROL.search(value):
        raise InvalidInputError("value contains control characters (newlines, tabs, NUL); remove them")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def validate_sha256(value: str) -> str:
    """Asset ids are lower-case hex SHA-256; anything else is refused before it reaches a path or a query."""
    candidate = value.strip().lower()
    if not _SHA256.match(candidate):
        raise InvalidInputError(f"{value[:80]!r} is not an asset id (64 hex characters)")
    return candidate


LIVE = "trashed_at == 0"       # schema 2: in the library, not in the trash
IN_TRASH = "trashed_at > 0"


def asset_filter(tags: Iterable[str] = (), source: str | None = None, live: bool = False) -> str:
    """Expression for 'has all these tags and comes from this source' ('' = everything); with
    `live`, only assets that are not in the trash (collections of schema 2 and later)."""
    clauses: list[str] = [LIVE] if live else []
    tag_list = [t for t in tags if t]
    if tag_list:
        clauses.append(f"array_contains_all(tags, [{', '.join(quote_literal(t) for t in tag_list)}])")
    if source:
        if source not in SOURCES:
            raise InvalidInputError(f"source must be one of {', '.join(SOURCES)}, not {source[:40]!r}")
        clauses.append(f"source == {quote_literal(source)}")
    return " and ".join(clauses)


def ids_filter(ids: Iterable[str]) -> str:
    return f"sha256 in [{', '.join(quote_literal(validate_sha256(i)) for i in ids)}]"


def rights_filter(usable_at: int | None = None, for_reference: bool = False) -> str:
    """Assets within their usage rights at `usable_at` (epoch ms; None: any), and with
    `for_reference` only those that may be sent as references (schema 2 and later)."""
    clauses = []
    if usable_at is not None:
        clauses.append(f"(usable_until == 0 or usable_until > {int(usable_at)})")
    if for_reference:
        clauses.append("no_reference == false")
    return " and ".join(clauses)
