"""Index choice by measurement: every vector index Milvus Lite offers, on the same library.

One synthetic library (the FLAT-built cache) is copied, and on the copy the vector index is
swapped with release -> drop_index -> create_index -> load. For each index and search
parameter: the time to build it over the library, single-query search latency (one pymilvus
call, ids only: what ragkit sends per search), recall@10 against exact brute force and the
self-hit rate (each sampled asset found first by its own vector).
"""
from __future__ import annotations

import shutil
import time


from bench.common import TMP_DIR, Table, ms, percentile
from bench.query_bench import K, _ids_only, recall_at_k, self_hit_rate
from bench.synth import VECTORS, SyntheticLibrary, synthetic_library

FLAT = {"index_type": "FLAT", "params": {}}
# (index spec, [search params ...]). AUTOINDEX in Milvus Lite 3.2 is faiss HNSW with M=16,
# efConstruction=200 and ef=64 (milvus_lite/index/factory.py), i.e. the HNSW row with ef 64.
CANDIDATES: list[tuple[dict, list[dict]]] = [
    (FLAT, [{}]),
    ({"index_type": "HNSW", "params": {"M": 16, "efConstruction": 200}},
     [{"ef": 16}, {"ef": 32}, {"ef": 64}, {"ef": 128}]),
    ({"index_type": "IVF_FLAT", "params": {"nlist": 256}}, [{"nprobe": 8}, {"nprobe": 16}, {"nprobe": 32}]),
    ({"index_type": "IVF_SQ8", "params": {"nlist": 256}}, [{"nprobe": 16}, {"nprobe": 32}]),
    ({"index_type": "HNSW_SQ", "params": {"M": 16, "efConstruction": 200, "sq_type": "SQ8"}}, [{"ef": 64}]),
    ({"index_type": "IVF_PQ", "params": {"nlist": 256, "m": 64, "nbits": 8}}, [{"nprobe": 16}]),
    ({"index_type": "DISKANN", "params": {}}, [{}]),
]


def _switch_index(client, collection: str, spec: dict) -> float:
    start = time.perf_counter()
    client.release_collection(collection)
    client.drop_index(collection, "vector")
    params = client.prepare_index_params()
    params.add_index("vector", metric_type="COSINE", **spec)
    client.create_index(collection, params)
    client.load_collection(collection)
    return time.perf_counter() - start


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    if "message=" in text:
        text = text.split("message=", 1)[1].rstrip(")>")
    return text[:60]


def _index_bytes(lib_root) -> int:
    return sum(p.stat().st_size for p in lib_root.rglob("*.idx") if p.is_file())


def run(n: int, queries: int, recall_queries: int, log=print) -> list[Table]:
    from ragkit.library import Library
    from bench.common import bench_settings

    base = synthetic_library(n, FLAT, log=log)
    work = TMP_DIR / f"index-{n}"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base.root, work, symlinks=True)
    lib = SyntheticLibrary(n, work, work / "data", FLAT, work / "vectors.npy")
    table = Table(f"Vector index choice at {n} assets (Milvus Lite; single-query latency, ids only)",
                  ["index (build params)", "search params", "build s", "index MB", "p50 ms", "p95 ms",
                   f"recall@{K}", "self-hit@1"])
    library = Library.open(bench_settings(lib.data_dir), index=FLAT)
    client, collection = library.store._client, library.store.collection  # noqa: SLF001
    qvecs = VECTORS.queries(max(queries, recall_queries), n)
    try:
        for spec, search_params in CANDIDATES:
            label = spec["index_type"] + (f" {spec['params']}" if spec["params"] else "")
            log(f"  index {n}: {label} ...")
            try:
                built = _switch_index(client, collection, spec)
            except Exception as exc:  # noqa: BLE001 - an index Milvus Lite can't build is a result too
                table.add(label, "-", "-", "-", "-", "-", "-", f"not supported: {_reason(exc)}")
                try:
                    _switch_index(client, collection, FLAT)
                except Exception:  # noqa: BLE001
                    pass
                continue
            size = _index_bytes(work) / 2**20
            for params in search_params:
                try:
                    for i in range(3):
                        _ids_only(library.store, qvecs[i], K, params)
                    samples = []
                    for i in range(queries):
                        start = time.perf_counter()
                        _ids_only(library.store, qvecs[i], K, params)
                        samples.append(time.perf_counter() - start)
                    rec = recall_at_k(library.store, lib, qvecs[:recall_queries], params)
                    hit = self_hit_rate(library.store, lib, 200, params)
                    table.add(label, params or "-", f"{built:.1f}", f"{size:.0f}", ms(percentile(samples, 50)),
                              ms(percentile(samples, 95)), f"{rec:.4f}", f"{hit:.3f}")
                except Exception as exc:  # noqa: BLE001
                    table.add(label, params or "-", f"{built:.1f}", f"{size:.0f}", "-", "-", "-",
                              f"search failed: {_reason(exc)}")
    finally:
        library.close()
        shutil.rmtree(work, ignore_errors=True)
    table.note("build s = release + drop_index + create_index + load over the whole library (2 cores).")
    table.note("AUTOINDEX is Milvus Lite's faiss HNSW with M=16, efConstruction=200, ef=64: the HNSW ef 64 row.")
    table.note("recall: exact top-10 by numpy over the same vectors; queries are CLIP-like synthetic "
               "vectors with many near-ties (bench/synth.py), a harder case than well-separated clusters.")
    return [table.finish()]
