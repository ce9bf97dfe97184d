"""The Library page's listing (newest first, filters, tag counts) from the store's catalog: it
agrees with what Milvus itself filters, follows the store's own writes without rescanning, and
rebuilds when someone else changed the collection."""
import threading

import numpy as np

from ragkit.records import Asset
from ragkit.storage.store import AssetStore

TAG_POOL = ["red", "blue", "summer", "hero", "shoe", 'a"quote', 'back\\slash', "ünïcode tag"]


def _assets(library, n: int, seed: int = 0, start: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, library.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assets = []
    for i in range(start, start + n):
        tags = tuple(sorted({TAG_POOL[j] for j in rng.choice(len(TAG_POOL), size=int(rng.integers(0, 4)))}))
        assets.append(Asset(sha256=f"{i:064x}", filename=f"img{i}.jpg", mime="image/jpeg", width=10, height=10,
                            size_bytes=100, tags=tags, source="generated" if rng.random() < 0.3 else "upload",
                            created_at=int(rng.integers(1_000, 1_000_000))))
    return assets, vectors


def _from_milvus(store, tags=(), source=None):
    """The same listing computed by Milvus' own filter and sorted here: the reference."""
    from ragkit.storage.filters import asset_filter
    from ragkit.tags import normalise_tags
    rows = AssetStore.scan(store, asset_filter(normalise_tags(tags), source), ["created_at"])
    return [r["sha256"] for r in sorted(rows, key=lambda r: (-int(r["created_at"]), r["sha256"]))]


FILTERS = [((), None), (("red",), None), (("red", "summer"), None), ((), "generated"), (("hero",), "upload"),
           (('a"quote',), None), (("ÜNÏCODE  tag",), None), (("nobody-has-this",), None)]


def _count_scans(store, monkeypatch) -> list[str]:
    """The listing's full scans (the ones reading every asset's date, source and tags)."""
    calls: list[str] = []
    real = store.scan

    def counting(expr="", fields=("created_at",)):
        if "source" in fields:
            calls.append(expr)
        return real(expr, fields)
    monkeypatch.setattr(store, "scan", counting)
    return calls


def test_listing_agrees_with_milvus_filters_and_follows_own_writes_without_rescanning(library, monkeypatch):
    store = library.store
    assets, vectors = _assets(library, 300)
    store.upsert(assets, vectors)
    scans = _count_scans(store, monkeypatch)
    for tags, source in FILTERS:
        page = store.page(0, 500, tags=tags, source=source)
        assert [a.sha256 for a in page.assets] == _from_milvus(store, tags, source), (tags, source)
        assert store.count(tags=tags, source=source) == page.total
    expected_tags: dict[str, int] = {}
    for asset in assets:
        for tag in asset.tags:
            expected_tags[tag] = expected_tags.get(tag, 0) + 1
    assert dict(store.all_tags()) == expected_tags
    listing_scans = list(scans)
    assert len(listing_scans) == 1  # one scan built the listing; every filter came from it

    # Own writes: new assets, a tag edit, a delete. The listing follows without a rescan.
    scans.clear()
    more, more_vectors = _assets(library, 40, seed=1, start=1000)
    store.upsert(more, more_vectors)
    store.update_tags(assets[0].sha256, add=["hero"], remove=list(assets[0].tags))
    store.delete([assets[1].sha256, more[0].sha256])
    own_scans = list(scans)
    for tags, source in FILTERS:
        assert [a.sha256 for a in store.page(0, 500, tags=tags, source=source).assets] == \
            _from_milvus(store, tags, source), (tags, source)
    assert scans == own_scans == []  # still no listing rescan
    assert store.count() == 300 + 40 - 2 == store.page(0, 1).total
    reference: dict[str, int] = {}
    for row in AssetStore.scan(store, "", ["tags"]):
        for tag in row["tags"]:
            reference[tag] = reference.get(tag, 0) + 1
    assert dict(store.all_tags()) == reference and "hero" in reference


def test_a_write_by_another_store_is_noticed(library, settings, tiny_embedder):
    """Another AssetStore (another Library in this process, or another process on a server)
    changes the row count: the listing is rebuilt and shows its assets."""
    from ragkit.library import Library
    assets, vectors = _assets(library, 50)
    library.store.upsert(assets, vectors)
    assert library.page(0, 100).total == 50
    other = Library.open(settings, embedder=tiny_embedder)
    try:
        theirs, their_vectors = _assets(library, 5, seed=2, start=500)
        other.store.upsert(theirs, their_vectors)
    finally:
        other.close()
    page = library.page(0, 100)
    assert page.total == 55 and {a.sha256 for a in theirs} <= {a.sha256 for a in page.assets}


def test_writes_during_the_listing_scan_are_not_lost(library, monkeypatch):
    """An upload that lands while the listing's scan runs is in the listing, whichever side of
    the scan it fell on."""
    store = library.store
    assets, vectors = _assets(library, 60)
    store.upsert(assets[:50], vectors[:50])
    store.drop_listing()
    real_scan = store.scan
    raced = threading.Event()

    def scan_with_a_concurrent_upload(expr="", fields=("created_at",)):
        rows = real_scan(expr, fields)
        if "source" in fields and not raced.is_set():  # the listing's scan; the upload lands after it read
            raced.set()
            writer = threading.Thread(target=store.upsert, args=(assets[50:], vectors[50:]))
            writer.start()
            writer.join()
        return rows

    monkeypatch.setattr(store, "scan", scan_with_a_concurrent_upload)
    page = store.page(0, 100)
    assert raced.is_set()
    assert {a.sha256 for a in page.assets} == {a.sha256 for a in assets}
    assert page.total == 60
