"""Query latency at 1k / 10k / 100k assets, recall@10 against exact brute force, and where the
time of one search goes.

Libraries are synthetic (bench/synth.py): real ragkit schema and store, synthetic CLIP-like
vectors. Text queries are encoded by the random-weight ViT-B-32 text tower (the real compute).
"""
from __future__ import annotations

import time

import numpy as np

from bench.proposals import InMemoryExactIndex
from bench.common import Table, bench_settings, ms, percentile, shared_embedder
from bench.synth import TEXT_QUERIES, VECTORS, SyntheticLibrary, index_key, synthetic_library

K = 10
LABELS = {
    "encode": "text encode (ViT-B-32 text tower, trimmed to the tokens)",
    "ids": "vector search alone (ids + scores)",
    "meta": "vector search + metadata (AssetStore.search)",
    "e2e": "text query end to end (Library.search_text)",
    "p_search": "proposal: in-memory exact top-k + get()",
    "p_e2e": "proposal: end to end with it",
}


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Exact cosine top-k (vectors and queries are unit length), best first."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = queries[start:start + 64] @ np.asarray(vectors).T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start:start + 64] = np.take_along_axis(top, order, axis=1)
    return out


def recall_at_k(store, lib: SyntheticLibrary, queries: np.ndarray, search_params: dict | None = None) -> float:
    """Mean |index top-k ∩ exact top-k| / k over the queries (ids compared, not scores)."""
    ids = lib.ids()
    truth = exact_topk(lib.vectors(), queries)
    found = 0
    for hits, row in zip(search_ids(store, queries, K, search_params), truth):
        found += len(set(hits) & {ids[j] for j in row})
    return found / (K * len(queries))


def self_hit_rate(store, lib: SyntheticLibrary, sample: int, search_params: dict | None = None) -> float:
    """Share of stored assets that come back first when searched with their own vector
    (catches rows an index silently lost, which recall on fresh queries can miss)."""
    ids = lib.ids()
    picks = np.random.default_rng(11).choice(lib.n, size=min(sample, lib.n), replace=False)
    found = search_ids(store, np.asarray(lib.vectors()[np.sort(picks)]), 1, search_params)
    return sum(hits[:1] == [ids[i]] for hits, i in zip(found, np.sort(picks))) / len(picks)


def search_ids(store, vectors: np.ndarray, k: int, search_params: dict | None = None,
               per_call: int = 50) -> list[list[str]]:
    """The vector search alone: Milvus returns ids and scores, no metadata. Several query
    vectors go in one call (for recall runs; the app sends one)."""
    params = store._search_params(k) if search_params is None else search_params  # noqa: SLF001
    vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, store.dim)
    out: list[list[str]] = []
    for start in range(0, len(vectors), per_call):
        results = store._client.search(  # noqa: SLF001 - the bench times the raw call on ragkit's client
            store.collection, data=vectors[start:start + per_call].tolist(), anns_field="vector",
            limit=k, output_fields=["sha256"], search_params={"metric_type": "COSINE", "params": params})
        out.extend([hit["entity"]["sha256"] for hit in hits] for hits in results)
    return out


def _ids_only(store, vector: np.ndarray, k: int, search_params: dict | None = None) -> list[str]:
    return search_ids(store, vector, k, search_params)[0]


def engine_breakdown(store, query: np.ndarray, search_params: dict, repeats: int) -> dict[str, float] | None:
    """Split one search into: the whole client call, the engine's search in-process (no gRPC),
    and the vector index's own work (faiss/numpy per segment). Uses Milvus Lite internals,
    so it is diagnostic only and returns None on a server or another Milvus Lite version."""
    try:
        from milvus_lite.server_manager import server_manager_instance
        servers = list(server_manager_instance._servers.values())  # noqa: SLF001
        collection = None
        for _server, db, _port in servers:
            if db.has_collection(store.collection):
                collection = db.get_collection(store.collection)
        if collection is None:
            return None
        segments = [s for s in collection._segments_snapshot() if s.num_rows > 0]  # noqa: SLF001
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        client, engine, index = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            _ids_only(store, q[0], K, search_params)
            client.append(time.perf_counter() - start)
            start = time.perf_counter()
            collection.search([q[0].tolist()], top_k=K, metric_type="COSINE", output_fields=["sha256"],
                              anns_field="vector", search_params=search_params)
            engine.append(time.perf_counter() - start)
            start = time.perf_counter()
            for seg in segments:
                idx = seg.indexes.get("vector")
                if idx is None:
                    from milvus_lite.index.brute_force import BruteForceIndex
                    idx = BruteForceIndex.build(seg.vector_data("vector")[0], "COSINE")
                idx.search(q, K, valid_mask=None, params=search_params)
            index.append(time.perf_counter() - start)
        kinds = sorted({type(s.indexes.get("vector")).__name__ for s in segments})
        return {"client": percentile(client, 50), "engine": percentile(engine, 50), "index": percentile(index, 50),
                "segments": len(segments), "index_kind": ",".join(kinds)}
    except Exception:  # noqa: BLE001 - internals differ: skip the diagnostic, keep the benchmark
        return None


def run(sizes: list[int], queries: int, recall_queries: int, index: dict | None = None, log=print) -> list[Table]:
    from ragkit.library import Library
    from ragkit.storage.store import DEFAULT_INDEX

    index = index or DEFAULT_INDEX
    embedder = shared_embedder()
    latency = Table(f"Query latency in ms (k={K}; index {index_key(index)}; {queries} queries per size)",
                    ["assets", "step", "p50", "p95", "mean"])
    quality = Table(f"Search quality: recall@{K} against exact numpy brute force ({recall_queries} queries)",
                    ["assets", "index", "search params", f"recall@{K}", "self-hit@1"])
    where = Table("Where one vector search's time goes (p50 ms; Milvus Lite internals, diagnostic)",
                  ["assets", "segments", "index in segments", "pymilvus call", "engine in-process",
                   "index search", "engine minus index"])
    texts = [TEXT_QUERIES[i % len(TEXT_QUERIES)] for i in range(queries)]
    for n in sizes:
        lib = synthetic_library(n, index, log=log)
        library = Library.open(bench_settings(lib.data_dir), embedder=embedder, index=index)
        try:
            store = library.store
            qvecs = VECTORS.queries(max(queries, recall_queries), n)
            vectors = np.asarray(lib.vectors())
            for i in range(3):  # warm-up
                library.search_text(texts[i % len(texts)], K)
                _ids_only(store, qvecs[i], K)
            exact = InMemoryExactIndex(lib.ids(), vectors)
            samples: dict[str, list[float]] = {name: [] for name in LABELS}
            for i in range(queries):
                vec, text = qvecs[i], texts[i]
                for name, fn in (
                        ("encode", lambda: embedder.embed_texts([text])),
                        ("ids", lambda: _ids_only(store, vec, K)),
                        ("meta", lambda: store.search(vec, K)),
                        ("e2e", lambda: library.search_text(text, K)),
                        ("p_search", lambda: store.get_many([h for h, _ in exact.search(vec, K)])),
                        ("p_e2e", lambda: store.get_many(
                            [h for h, _ in exact.search(embedder.embed_texts([text])[0], K)]))):
                    start = time.perf_counter()
                    fn()
                    samples[name].append(time.perf_counter() - start)
            for name, label in LABELS.items():
                values = samples[name]
                latency.add(n, label, ms(percentile(values, 50)), ms(percentile(values, 95)),
                            ms(sum(values) / len(values)))
            log(f"  query {n}: recall ...")
            rec = recall_at_k(store, lib, qvecs[:recall_queries])
            hit = self_hit_rate(store, lib, min(200, recall_queries))
            quality.add(n, index_key(index), store._search_params(K) or "-", f"{rec:.4f}", f"{hit:.3f}")  # noqa: SLF001
            parts = engine_breakdown(store, qvecs[0], store._search_params(K), repeats=max(5, queries // 5))  # noqa: SLF001
            if parts:
                where.add(n, parts["segments"], parts["index_kind"], ms(parts["client"]), ms(parts["engine"]),
                          ms(parts["index"]), ms(parts["engine"] - parts["index"]))
        finally:
            library.close()
    latency.note("'vector search alone' is one pymilvus search returning ids and scores; '+ metadata' is "
                 "ragkit's AssetStore.search (output_fields = the asset's columns); end to end adds the text encode.")
    latency.note("synthetic CLIP-like vectors (bench/synth.py); the OS page cache is warm.")
    latency.note("'proposal' rows are prototypes in bench/proposals.py, not what ragkit does today: "
                 "an exact top-k over a float32 matrix kept in the process, then metadata by id (get).")
    where.note("'engine minus index' is Milvus Lite's per-row Python work on every search (dedup of "
               "versions across segments, delete masks, merge); it grows linearly with the number of rows.")
    return [latency.finish(), quality.finish(), where.finish()]
