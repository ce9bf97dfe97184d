"""Tags: case-insensitive words, normalised the same way when stored and when filtered on."""
from __future__ import annotations

from typing import Iterable

MAX_TAGS = 32        # per asset (the Milvus ARRAY field's capacity)
MAX_TAG_CHARS = 64   # bytes of UTF-8 per tag


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never in the middle of a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def normalise_tag(tag: str) -> str:
    """Trimmed, single-spaced, lower-case, printable, at most MAX_TAG_CHARS bytes ('' = no tag)."""
    cleaned = " ".join(str(tag).split()).lower()
    cleaned = "".join(ch for ch in cleaned if ch.isprintable())
    return truncate_utf8(cleaned, MAX_TAG_CHARS).strip()


def parse_tag_list(text: str) -> tuple[str, ...]:
    """Tags typed as one comma-separated line ("summer, campaign"), normalised."""
    return normalise_tags(text.split(","))


def normalise_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Each tag normalised, empties and repeats dropped, first MAX_TAGS kept, in order."""
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = normalise_tag(tag)
        if cleaned:
            seen.setdefault(cleaned)
    return tuple(list(seen)[:MAX_TAGS])
