"""Hostile filter values never change a query's meaning (real Milvus Lite)."""
import numpy as np
import pytest

from ragkit.errors import InvalidInputError
from ragkit.storage.filters import asset_filter, quote_literal, validate_sha256
from ragkit.records import Asset

HOSTILE = [
    'a" or 1==1 or "',
    "back\\slash",
    'trailing\\',
    '\\" or source != "',
    "it's",
    "] or true or [",
    "tags) or (1==1",
    "ünïcødé 🦄",
    "%",
]


def _asset(i: int, tags: tuple[str, ...]) -> Asset:
    return Asset(sha256=f"{i:064x}", filename=f"f{i}.jpg", mime="image/jpeg", width=1, height=1,
                 size_bytes=1, tags=tags, created_at=i)


def test_quote_literal_escapes_and_refuses():
    assert quote_literal('say "hi"') == '"say \\"hi\\""'
    assert quote_literal("a\\b") == '"a\\\\b"'
    for bad in ("line\nbreak", "nul\x00", "tab\t"):
        with pytest.raises(InvalidInputError, match="control"):
            quote_literal(bad)
    with pytest.raises(InvalidInputError, match="limit"):
        quote_literal("x" * 5000)


def test_hostile_tags_match_only_themselves(library):
    store = library.store
    assets = [_asset(i, (tag.lower(),)) for i, tag in enumerate(HOSTILE)] + [_asset(100, ("plain",))]
    vectors = np.eye(len(assets), store.dim, dtype=np.float32)
    store.upsert(assets, vectors)
    for i, tag in enumerate(HOSTILE):
        page = store.page(0, 50, tags=[tag])
        assert [a.sha256 for a in page.assets] == [f"{i:064x}"], tag
        hits = store.search(vectors[i], k=50, tags=[tag])
        assert [h.asset.sha256 for h in hits] == [f"{i:064x}"], tag
    assert store.count(tags=["plain"]) == 1
    assert store.count(tags=['x" or 1==1 or "']) == 0


def test_bad_source_and_ids_are_refused():
    with pytest.raises(InvalidInputError, match="source"):
        asset_filter(source='upload" or 1==1 or "')
    for bad in ("../../etc/passwd", "A" * 64 + "x", "", "0" * 63):
        with pytest.raises(InvalidInputError):
            validate_sha256(bad)
    assert validate_sha256("AB" * 32) == "ab" * 32
