"""Filtered search and full scans on an embedded Milvus Lite library (ragkit.storage.lite_reads).

Milvus Lite evaluates tag filters row by row in Python (seconds at 100k assets) and loses
recall on selective filters; ragkit routes filtered searches around both. These tests hold the
routes to what a person expects from "only with these tags": the exact filtered top k (numpy brute
force over the same rows), hostile tags included, whichever route is taken."""
import numpy as np
import pytest

from ragkit.storage import lite_reads
from ragkit.storage.filters import LIVE
from ragkit.library import Library
from ragkit.records import Asset
from ragkit.storage.store import AssetStore
from ragkit.tags import normalise_tags

COMMON, RARE, SLASH, UNICODE = "common", 'a" or 1==1 or "', "back\\slash", "ünïcødé 🦄"
FAR = "cluster zero"  # on every asset of the one cluster no query comes from, and on nothing else
FILTERS = [((COMMON,), None), ((RARE,), None), ((SLASH, COMMON), None), ((), "generated"), ((), "upload"),
           ((UNICODE,), "generated"), (("ÜNÏCØDÉ  🦄",), None), ((FAR,), None), (("nobody has this",), None)]
N, K = 3000, 10


def _clustered_library(dim: int, seed: int = 0) -> tuple[list[Asset], np.ndarray, np.ndarray]:
    """N assets in 30 clusters (like image embeddings) with tags of very different selectivity,
    and query vectors near the cluster centres, so filtered queries have real neighbours."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, dim))
    cluster = rng.integers(0, 30, N)
    vectors = centres[cluster] + 0.8 * rng.standard_normal((N, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    queries = centres[1:9] + 0.8 * rng.standard_normal((8, dim))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    shares = {COMMON: 0.4, RARE: 0.012, SLASH: 0.1, UNICODE: 0.05}
    assets = []
    for i in range(N):
        tags = tuple(tag for tag, share in shares.items() if rng.random() < share) + (FAR,) * int(cluster[i] == 0)
        assets.append(Asset(sha256=f"{i:064x}", filename=f"img{i}.jpg", mime="image/jpeg", width=10, height=10,
                            size_bytes=100, tags=tags, source="generated" if rng.random() < 0.2 else "upload",
                            created_at=1_000 + i))
    return assets, vectors, queries


def _brute_force(assets, vectors, query, tags, source, k=K) -> list[str]:
    wanted = set(normalise_tags(tags))
    rows = [i for i, a in enumerate(assets)
            if wanted.issubset(normalise_tags(a.tags)) and (source is None or a.source == source)]
    order = np.argsort(-(vectors[rows] @ query))[:k]
    return [assets[rows[j]].sha256 for j in order]


def _indexed_library(library: Library, settings, tiny_embedder, assets, vectors) -> Library:
    """The assets written and flushed, then the library reopened: every segment has its HNSW index
    (right after a flush Milvus Lite may still search the new segment by brute force)."""
    library.store.upsert(assets, vectors)
    library.store.flush()
    library.close()
    return Library.open(settings, embedder=tiny_embedder)


def _spy_filters(store: AssetStore, monkeypatch) -> list[str]:
    """Every filter expression the store sends with a search."""
    sent: list[str] = []
    real = store._client.search

    def search(*args, **kwargs):  # recorded without the clause every read has (not in the trash)
        expr = kwargs.get("filter", "")
        if expr.startswith(f"({LIVE}) and ("):
            expr = expr[len(f"({LIVE}) and ("):-1]
        sent.append("" if expr == f"({LIVE})" else expr)
        return real(*args, **kwargs)
    monkeypatch.setattr(store._client, "search", search)
    return sent


@pytest.fixture
def clustered(library, settings, tiny_embedder):
    assets, vectors, queries = _clustered_library(library.dim)
    reopened = _indexed_library(library, settings, tiny_embedder, assets, vectors)
    yield reopened, assets, vectors, queries
    reopened.close()


@pytest.mark.parametrize("route", ["chosen by cost", "over-fetch", "by ids", "over-fetch too short, then ids", "exact"])
def test_filtered_search_is_the_exact_filtered_top_k_on_every_route(clustered, route, monkeypatch):
    library, assets, vectors, queries = clustered
    store = library.store
    if route != "chosen by cost":  # the exact route only where asked for (then for every filter)
        monkeypatch.setattr(lite_reads, "COST_PER_EXACT_ROW_US", 0.0 if route == "exact" else float("inf"))
        monkeypatch.setattr(lite_reads, "EXACT_MAX_IDS", N)
    if route.startswith("over-fetch"):  # as if hits cost nothing: over-fetch whenever the limit allows
        monkeypatch.setattr(lite_reads, "COST_PER_HIT_US", 0.0)
    if route == "over-fetch too short, then ids":
        monkeypatch.setattr(lite_reads, "over_fetch_limit", lambda k, selectivity: k)
    elif route == "by ids":
        monkeypatch.setattr(lite_reads, "COST_PER_HIT_US", float("inf"))
    sent = _spy_filters(store, monkeypatch)
    for tags, source in FILTERS:
        for query in queries:
            found = [h.asset.sha256 for h in store.search(query, k=K, tags=tags, source=source)]
            assert found == _brute_force(assets, vectors, query, tags, source), (route, tags, source)
    # Never Lite's row-by-row Python evaluation of the tags array (seconds per search at 100k).
    assert not any("array_contains" in expr for expr in sent)
    assert bool(sent) == (route != "exact")  # the exact route reads rows by id: no vector search
    if route.startswith("over-fetch"):
        assert any(expr == "" for expr in sent)
    if route in ("by ids", "over-fetch too short, then ids"):
        assert any(expr.startswith("sha256 in [") for expr in sent)


def test_filtered_search_rechecks_hits_against_tags_changed_behind_the_listing(clustered, monkeypatch):
    """Another store of this process removes a tag: the listing (built before) does not know, and
    the hit must still not come back under that tag, on either route."""
    library, assets, vectors, queries = clustered
    store = library.store
    sent = _spy_filters(store, monkeypatch)
    store.all_tags()  # the listing exists and counts RARE on these assets
    rare = [a for a in assets if RARE in a.tags]
    other = AssetStore(store._client, store.collection, store.dim, store.model_id)
    other.update_tags(rare[0].sha256, remove=[RARE])
    query = vectors[assets.index(rare[0])]
    for hits_cost in (0.0, float("inf")):
        monkeypatch.setattr(lite_reads, "COST_PER_HIT_US", hits_cost)
        found = [h.asset.sha256 for h in store.search(query, k=K, tags=[RARE])]
        assert rare[0].sha256 not in found
        assert set(found) <= {a.sha256 for a in rare[1:]}
    assert not any("array_contains" in expr for expr in sent)


def test_embedded_scan_reads_every_row_once_without_the_iterator(library, monkeypatch):
    """Milvus Lite re-walks every row for each query_iterator batch (15 s for 100k rows); the scan
    must not use it, and its id ranges must cover every row exactly once, hostile filters included."""
    import ragkit.storage.store
    assets, vectors, _ = _clustered_library(library.dim)
    store = library.store
    store.upsert(assets[:500], vectors[:500])
    monkeypatch.setattr(ragkit.storage.store, "QUERY_WINDOW", 64)  # what made the old scan use the iterator
    monkeypatch.setattr(lite_reads, "ROWS_PER_QUERY", 37)  # 14 id ranges for 500 rows
    iterators: list[str] = []
    queries: list[str] = []
    real_query = store._client.query
    monkeypatch.setattr(store._client, "query_iterator", lambda *a, **kw: iterators.append("used"))
    monkeypatch.setattr(store._client, "query", lambda *a, **kw: queries.append(kw.get("filter", "")) or
                        real_query(*a, **kw))
    rows = store.scan("", ["tags", "source"])
    assert sorted(r["sha256"] for r in rows) == sorted(a.sha256 for a in assets[:500])
    assert len([q for q in queries if q.startswith(("sha256", "(sha256"))]) == 14
    for tags, source in FILTERS:
        expected = {a.sha256 for a in assets[:500]
                    if set(normalise_tags(tags)).issubset(a.tags) and source in (None, a.source)}
        from ragkit.storage.filters import asset_filter
        found = [r["sha256"] for r in store.scan(asset_filter(normalise_tags(tags), source))]
        assert len(found) == len(set(found)) and set(found) == expected, (tags, source)
    assert not iterators


def test_sha256_ranges_split_every_id_into_exactly_one_range():
    rng = np.random.default_rng(3)
    ids = ["".join(rng.choice(list("0123456789abcdef"), 64)) for _ in range(2000)] + ["0" * 64, "f" * 64]
    for parts in (1, 2, 3, 7, 16, 100):
        clauses = lite_reads.sha256_ranges(parts)
        assert len(clauses) == parts
        bounds = [""] + [c.split('"')[1] for c in clauses[1:]] + ["g"]
        for sha in ids:  # the clauses are `sha256 >= "lo" and sha256 < "hi"`: evaluate them here
            assert sum(bounds[i] <= sha < bounds[i + 1] for i in range(parts)) == 1
