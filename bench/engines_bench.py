"""Embedded Milvus Lite and a Milvus server side by side: the same synthetic library, the same
queries, one run (`bench/run.py --only engines --uri URI [--token T] --sizes 100000`).

Per engine and size: the text query end to end (the random-weight ViT-B-32 text tower + search),
the vector search alone, filtered searches (tag, source, tag+source; p50 and the ratio to the
unfiltered one), recall@10 against exact numpy brute force on queries with real neighbours (around
the library's cluster centres), the Library page's first visit (the listing's one scan: count, tag
list, first page), and the peak memory of a fresh app process (bench/app_probe.py).
Sizes the embedded engine can't build in reason (--engines-embedded-max) run on the server only.
"""
from __future__ import annotations

import os
import time

import numpy as np

from bench.common import SERVER_TOKEN_VAR, SERVER_URI_VAR, Table, bench_settings, ms, percentile, shared_embedder
from bench.filtered_bench import exact_filtered_topk, recall, truth_mask
from bench.synth import COMMON_TAG, RARE_TAG, TEXT_QUERIES, VECTORS, synthetic_library

K = 10
FILTERS = [(f"tag '{COMMON_TAG}' (30 %)", (COMMON_TAG,), None),
           (f"tag '{RARE_TAG}' (1 %)", (RARE_TAG,), None),
           ("source 'generated' (10 %)", (), "generated"),
           (f"'{COMMON_TAG}' + 'generated' (3 %)", (COMMON_TAG,), "generated")]


class _Engine:
    """Point the benchmark's libraries at the embedded file (uri None) or the server, for a block."""

    def __init__(self, uri: str | None, token: str) -> None:
        self.uri, self.token = uri, token

    def __enter__(self):
        self._saved = {v: os.environ.pop(v, None) for v in (SERVER_URI_VAR, SERVER_TOKEN_VAR)}
        if self.uri:
            os.environ[SERVER_URI_VAR], os.environ[SERVER_TOKEN_VAR] = self.uri, self.token
        return self

    def __exit__(self, *exc) -> None:
        for name, value in self._saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def measure(n: int, queries: int, recall_queries: int, memory: bool, log=print) -> dict[str, str]:
    """The figures of one engine (the one _Engine set) at n assets."""
    from bench.process_bench import probe
    from ragkit.library import Library

    lib = synthetic_library(n, log=log)
    figures: dict[str, str] = {}
    library = Library.open(bench_settings(lib.data_dir), embedder=shared_embedder())
    try:
        store = library.store
        figures["version"] = _engine_version(library)
        log(f"  engines {n} ({figures['version']}): first Library visit ...")
        library.close()
        library = Library.open(bench_settings(lib.data_dir), embedder=shared_embedder())
        store = library.store
        start = time.perf_counter()
        store.count(), store.all_tags(), store.page(0, 24)
        figures["first Library visit (count, tags, page: one scan)"] = f"{time.perf_counter() - start:.2f} s"
        qvecs = VECTORS.queries(max(queries, recall_queries), n)
        texts = [TEXT_QUERIES[i % len(TEXT_QUERIES)] for i in range(queries)]
        for i in range(3):
            library.search_text(texts[i], K)
            store.search(qvecs[i], K)
        figures["text query end to end, p50"] = ms(_p50(lambda i: library.search_text(texts[i], K), queries))
        base = _p50(lambda i: store.search(qvecs[i], K), queries)
        figures["vector search, p50"] = ms(base)
        ids, vectors = lib.ids(), np.asarray(lib.vectors())
        found = [[h.asset.sha256 for h in store.search(q, K)] for q in qvecs[:recall_queries]]
        figures["recall@10"] = f"{recall(found, exact_filtered_topk(vectors, qvecs[:recall_queries], np.ones(n, bool), ids)):.4f}"
        for label, tags, source in FILTERS:
            log(f"  engines {n}: {label} ...")
            store.search(qvecs[0], K, tags=tags, source=source)  # first use of the filter
            p50 = _p50(lambda i: store.search(qvecs[i], K, tags=tags, source=source), queries)
            truth = exact_filtered_topk(vectors, qvecs[:recall_queries], truth_mask(n, tags, source), ids)
            hits = [[h.asset.sha256 for h in store.search(q, K, tags=tags, source=source)]
                    for q in qvecs[:recall_queries]]
            figures[f"filtered {label}, p50 (x unfiltered; recall@10)"] = \
                f"{ms(p50)} ({p50 / base:.1f}x; {recall(hits, truth):.4f})"
    finally:
        library.close()
    if memory:
        log(f"  engines {n}: app process memory ...")
        result = probe(lib.data_dir)
        figures["app process peak memory (VmHWM)"] = f"{result['vm_hwm_mib']:.0f} MiB"
    return figures


def _p50(call, count: int) -> float:
    times = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    return percentile(times, 50)


def _engine_version(library) -> str:
    if library.settings.is_embedded_db:
        from importlib.metadata import version
        return f"Milvus Lite {version('milvus-lite')} (embedded)"
    try:
        return f"Milvus {library._client.get_server_version()}"  # noqa: SLF001
    except Exception:  # noqa: BLE001 - milvus-lite server may not answer it
        return "Milvus server"


def run(sizes: list[int], uri: str, token: str, queries: int, recall_queries: int, embedded_max: int,
        memory: bool = True, log=print) -> list[Table]:
    tables = []
    for n in sizes:
        columns: dict[str, dict[str, str]] = {}
        for name, target in (("embedded", None), ("server", uri)):
            if target is None and n > embedded_max:
                continue
            with _Engine(target, token):
                columns[name] = measure(n, queries, recall_queries, memory, log=log)
        rows = list(dict.fromkeys(key for figures in columns.values() for key in figures if key != "version"))
        heads = [columns[name]["version"] for name in columns]
        table = Table(f"Embedded vs server at {n:,} assets (k={K}; {queries} timed queries, recall over "
                      f"{recall_queries})", ["figure", *heads])
        for key in rows:
            table.add(key, *[columns[name].get(key, "-") for name in columns])
        if "embedded" not in columns:
            table.note(f"embedded not measured: over --engines-embedded-max ({embedded_max:,} assets)")
        table.note("the same synthetic library (bench/synth.py) on both; the server's vector index is built "
                   "before timing; filtered recall is against numpy over the generator's own labels.")
        tables.append(table.finish())
    return tables
