"""Filtered vector search and full scans on embedded Milvus Lite, at each --sizes.

Filtered search: `AssetStore.search(vector, k=10, tags=..., source=...)` with tag, source and
tag+source filters of realistic selectivity (bench/synth.py: a tag on 30 %, one on 1 %, sources
90/10), against the unfiltered search on the same queries (points around the library's cluster
centres, so they have real neighbours). Recall@10 is against an exact filtered brute force in
numpy over the same rows, with the filter's truth taken from the generator (not from Milvus).
"Before" rows send Milvus Lite its own filter expression (what ragkit did before ragkit.storage.lite_reads).
"Each route forced" runs every route of ragkit.storage.lite_reads on every filter, and (with
--alternatives) the other expression forms Lite offers.

Full scan: every asset's created_at, source and tags (the listing's one scan on the Library page's
first visit), the way ragkit does it now (ragkit.storage.lite_reads.scan) and before (query + query_iterator).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from bench.common import Table, bench_settings, ms, percentile
from bench.synth import COMMON_TAG, RARE_TAG, VECTORS, asset_labels, synthetic_library

K = 10
SCAN_FIELDS = ["created_at", "source", "tags"]


def cases() -> list[tuple[str, tuple[str, ...], str | None]]:
    """(label, tags, source): tag, source and tag+source filters from common to very selective."""
    return [
        (f"tag '{COMMON_TAG}'", (COMMON_TAG,), None),
        (f"tag '{RARE_TAG}'", (RARE_TAG,), None),
        ("source 'generated'", (), "generated"),
        ("source 'upload'", (), "upload"),
        (f"tag '{COMMON_TAG}' + source 'generated'", (COMMON_TAG,), "generated"),
        (f"tag '{RARE_TAG}' + source 'generated'", (RARE_TAG,), "generated"),
        (f"tags '{COMMON_TAG}' + 'winter'", (COMMON_TAG, "winter"), None),
    ]


def truth_mask(n: int, tags: tuple[str, ...], source: str | None) -> np.ndarray:
    labels = asset_labels(n)
    return np.array([set(tags).issubset(asset_tags) and (source is None or asset_source == source)
                     for asset_tags, asset_source in labels])


def exact_filtered_topk(vectors: np.ndarray, queries: np.ndarray, mask: np.ndarray, ids: list[str],
                        k: int = K) -> list[set[str]]:
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return [set() for _ in queries]
    scores = queries @ np.asarray(vectors)[rows].T
    out = []
    for row_scores in scores:
        top = rows[np.argsort(-row_scores)[:k]]
        out.append({ids[i] for i in top})
    return out


def recall(found: list[list[str]], truth: list[set[str]]) -> float:
    """Mean |found ∩ truth| / |truth| (1.0 when nothing matches and nothing was found)."""
    scores = [len(set(f) & t) / len(t) if t else float(not f) for f, t in zip(found, truth)]
    return float(np.mean(scores)) if scores else float("nan")


class RouteLog:
    """Wraps AssetStore._search_raw to note what each filtered search sent to Milvus."""

    def __init__(self, store) -> None:
        self.calls: list[tuple[str, int, int]] = []
        real = store._search_raw  # noqa: SLF001 - the bench reports the route the store took

        def logged(query, expr, limit, min_ef=0):
            expr = _without_live(expr)
            kind = "ids" if expr.startswith("sha256 in") else ("source" if expr.startswith("source") else
                                                                "unfiltered" if not expr else "expr")
            self.calls.append((kind, limit, min_ef))
            return real(query, expr, limit, min_ef)
        store._search_raw = logged  # noqa: SLF001

    def describe(self, ids_count: int) -> str:
        """The most frequent sequence of calls per search, e.g. 'over-fetch 100'."""
        if not self.calls:
            return "-"
        kinds = {"unfiltered": lambda limit, ef: f"over-fetch {limit}",
                 "ids": lambda limit, ef: f"by ids ({ids_count:,}), ef {ef:,}",
                 "source": lambda limit, ef: f"source expr, ef {ef:,}",
                 "expr": lambda limit, ef: "Lite's own expression"}
        names = [kinds[kind](limit, ef) for kind, limit, ef in self.calls]
        return max(set(names), key=names.count)


def _without_live(expr: str) -> str:
    """A filter as sent, without the clause every read of a schema-2 library has (not in the trash)."""
    from ragkit.storage.filters import LIVE
    if expr.startswith(f"({LIVE}) and ("):
        return expr[len(f"({LIVE}) and ("):-1]
    return "" if expr in (f"({LIVE})", LIVE) else expr


def _timed(fn: Callable[[np.ndarray], list[str]], queries: np.ndarray) -> tuple[list[float], list[list[str]]]:
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(fn(q))
        times.append(time.perf_counter() - start)
    return times, found


def _ids_of(hits) -> list[str]:
    return [h.asset.sha256 for h in hits]


def run(sizes: list[int], queries: int, recall_queries: int, before_queries: int, alternatives: bool,
        log=print) -> list[Table]:
    from ragkit.library import Library

    search_table = Table(f"Filtered vector search on embedded Milvus Lite (AssetStore.search, k={K}; "
                         f"{queries} timed queries, recall@{K} over {recall_queries})",
                         ["assets", "filter", "share", "route", "p50", "p95", "x unfiltered", f"recall@{K}"])
    route_table = Table(f"Each route forced (p50 ms over {queries} queries, recall@{K}; Lite's own expressions "
                        f"over {before_queries} queries)",
                        ["assets", "filter", "share", "route", "p50", "x unfiltered", f"recall@{K}", "short"])
    scan_table = Table("Full scan of created_at, source, tags (the listing's build; seconds, best of 2)",
                       ["assets", "how", "seconds", "rows"])
    for n in sizes:
        lib = synthetic_library(n, log=log)
        library = Library.open(bench_settings(lib.data_dir))
        try:
            store = library.store
            ids, vectors = lib.ids(), np.asarray(lib.vectors())
            qvecs = VECTORS.queries(max(queries, recall_queries), n)
            log(f"  filtered {n}: scans ...")
            _scan_rows(scan_table, store, n, alternatives)
            store.all_tags()  # the Search page lists tags (and so builds the listing) before it searches
            for q in qvecs[:3]:  # warm-up
                store.search(q, K)
            unfiltered_times, _ = _timed(lambda q: _ids_of(store.search(q, K)), qvecs[:queries])
            _, found = _timed(lambda q: _ids_of(store.search(q, K)), qvecs[:recall_queries])
            base = percentile(unfiltered_times, 50)
            everything = np.ones(n, dtype=bool)
            search_table.add(n, "none", "100 %", "-", ms(base), ms(percentile(unfiltered_times, 95)), "1.0",
                             f"{recall(found, exact_filtered_topk(vectors, qvecs[:recall_queries], everything, ids)):.4f}")
            for label, tags, source in cases():
                log(f"  filtered {n}: {label} ...")
                mask = truth_mask(n, tags, source)
                truth = exact_filtered_topk(vectors, qvecs[:recall_queries], mask, ids)
                routes = RouteLog(store)

                def search(q, tags=tags, source=source):
                    return _ids_of(store.search(q, K, tags=tags, source=source))
                search(qvecs[0])  # first use of this filter: the listing's view, Lite's parse cache
                routes.calls.clear()
                times, _ = _timed(search, qvecs[:queries])
                _, found = _timed(search, qvecs[:recall_queries])
                del store._search_raw  # noqa: SLF001 - drop the RouteLog wrapper
                p50 = percentile(times, 50)
                search_table.add(n, label, f"{100 * mask.mean():.1f} %", routes.describe(int(mask.sum())), ms(p50),
                                 ms(percentile(times, 95)), f"{p50 / base:.1f}", f"{recall(found, truth):.4f}")
                _forced_routes(route_table, store, n, label, tags, source, mask, ids, vectors,
                               qvecs[:queries], before_queries, base, alternatives)
        finally:
            library.close()
    search_table.note("route: what ragkit.storage.lite_reads sent to Milvus Lite for most queries ('over-fetch L': an "
                      "unfiltered search for L hits, checked against their tags and source; 'by ids (m)': "
                      "`sha256 in [m ids]` from the listing, with HNSW ef raised).")
    search_table.note("the listing is built before the first search (the Search page lists the tags first); "
                      "its build is the scan in the scan table.")
    route_table.note("'short': queries that got fewer than 10 hits although at least 10 assets match. "
                     "'Lite's own expression' is what ragkit sent before (array_contains_all / source ==).")
    scan_table.note("'before': query(limit 16384), then query_iterator(batch_size 4096) over everything "
                    "(what AssetStore.scan did); 'now': ragkit.storage.lite_reads.scan, one query per 100,000 rows "
                    "over ranges of ids.")
    return [search_table.finish(), route_table.finish(), scan_table.finish()]


def _forced_routes(table: Table, store, n: int, label: str, tags: tuple[str, ...], source: str | None,
                   mask: np.ndarray, ids: list[str], vectors: np.ndarray, queries: np.ndarray,
                   before_queries: int, base: float, alternatives: bool) -> None:
    from ragkit.storage import lite_reads
    from ragkit.storage.filters import Filters, asset_filter, ids_filter, quote_literal

    matching = [ids[i] for i in np.flatnonzero(mask)]
    share = mask.mean()
    keeps = lite_reads.matcher(Filters(tags=tags, source=source))
    default_ef = store._search_params(K)["ef"]  # noqa: SLF001
    truth = exact_filtered_topk(vectors, queries, mask, ids)
    expr = ids_filter(matching) if tags else f"source == {quote_literal(source or '')}"

    def raw(q, expr, limit, ef=0):
        hits = store._search_raw(q.reshape(1, -1), expr, limit, ef)  # noqa: SLF001
        return [hit for hit in hits if keeps(hit["entity"])]

    routes: list[tuple[str, Callable, int]] = []
    limit = lite_reads.over_fetch_limit(K, share)
    if limit <= lite_reads.MAX_LIMIT:
        routes.append((f"over-fetch {limit}", lambda q: raw(q, "", limit)[:K], len(queries)))
    else:
        table.add(n, label, f"{100 * share:.1f} %", f"over-fetch {limit}", "-", "-", "-",
                  f"refused: limit > {lite_reads.MAX_LIMIT}")
    scaled = lite_reads.ef_for(K, share, n, default_ef)
    what = f"by ids ({len(matching):,})" if tags else "source expr"
    routes.append((f"{what}, ef {scaled:,}", lambda q: raw(q, expr, K, scaled), len(queries)))
    routes.append((f"{what}, ef {default_ef} (default)", lambda q: raw(q, expr, K), len(queries)))
    if tags:
        routes.append(("Lite's own expression", lambda q: raw(q, asset_filter(tags, source), K), before_queries))
        if alternatives and len(tags) == 1:
            rest = f" and source == {quote_literal(source)}" if source else ""
            for form in (f"array_contains(tags, {quote_literal(tags[0])})",
                         f"array_contains_any(tags, [{quote_literal(tags[0])}])"):
                routes.append((f"Lite: {form.split('(')[0]}", lambda q, e=form + rest: raw(q, e, K), before_queries))
    for name, fn, count in routes:
        times, found = _timed(lambda q: [h["entity"]["sha256"] for h in fn(q)], queries[:count])
        short = sum(len(f) < min(K, len(t)) for f, t in zip(found, truth[:count]))
        p50 = percentile(times, 50)
        table.add(n, label, f"{100 * share:.1f} %", name, ms(p50), f"{p50 / base:.1f}",
                  f"{recall(found, truth[:count]):.4f}", short)


def _scan_rows(table: Table, store, n: int, alternatives: bool, repeat: int = 2) -> None:
    client, collection = store._client, store.collection  # noqa: SLF001
    output = ["sha256", *SCAN_FIELDS]

    def before() -> list[dict]:
        rows = client.query(collection, filter="", output_fields=output, limit=16384)
        if len(rows) < 16384:
            return list(rows)
        rows, iterator = [], client.query_iterator(collection, batch_size=4096, filter="", output_fields=output)
        while batch := iterator.next():
            rows.extend(batch)
        iterator.close()
        return rows

    ways: list[tuple[str, Callable[[], list]]] = [
        ("now: AssetStore.scan (ragkit.storage.lite_reads.scan)", lambda: store.scan("", SCAN_FIELDS)),
        ("one query, no limit", lambda: client.query(collection, filter="", output_fields=output)),
        ("one query, no limit, sha256 only", lambda: client.query(collection, filter="", output_fields=["sha256"])),
        ("before: query + query_iterator(4096)", before),
    ]
    if alternatives:
        ways.append(("offset windows of 16384", lambda: [
            row for offset in range(0, n, 16384)
            for row in client.query(collection, filter="", output_fields=output, limit=16384, offset=offset)]))
    for name, fn in ways:
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            rows = fn()
            seconds.append(time.perf_counter() - start)
        table.add(n, name, f"{min(seconds):.2f}", len(rows))


# --- the filters people expect: days, file type, orientation, size (ragkit.storage.filters.Filters) -------
def new_filter_cases(n: int) -> list[tuple[str, object]]:
    """(label, Filters) of realistic selectivity on bench/synth.py's library (a year of uploads)."""
    from datetime import datetime, timedelta, timezone

    from bench.synth import asset_created_at
    from ragkit.storage.filters import Filters
    last = datetime.fromtimestamp(asset_created_at(n, n - 1) / 1000, tz=timezone.utc).date()
    month = {"since": last - timedelta(days=29), "until": last}
    return [
        ("added in the last 30 days", Filters(**month)),
        ("added on one day", Filters(since=last - timedelta(days=100), until=last - timedelta(days=100))),
        ("type png", Filters(types=("png",))),
        ("portrait", Filters(orientation="portrait")),
        ("min side 2048", Filters(min_side=2048)),
        ("png + portrait", Filters(types=("png",), orientation="portrait")),
        ("last 30 days + webp", Filters(types=("webp",), **month)),
        (f"tag '{COMMON_TAG}' + square + last 30 days", Filters(tags=(COMMON_TAG,), orientation="square", **month)),
    ]


def run_new_filters(sizes: list[int], queries: int, recall_queries: int, log=print) -> list[Table]:
    """Filtered search with the new filters on embedded Milvus Lite: latency and recall@10 against an
    exact filtered brute force (the filter's truth from the generator, through Filters.matches)."""
    from bench.synth import synthetic_assets
    from ragkit.library import Library

    table = Table(f"New filters: filtered vector search on embedded Milvus Lite (AssetStore.search, k={K}; "
                  f"{queries} timed queries, recall@{K} over {recall_queries})",
                  ["assets", "filter", "share", "route", "p50", "p95", "x unfiltered", f"recall@{K}"])
    for n in sizes:
        lib = synthetic_library(n, log=log)
        library = Library.open(bench_settings(lib.data_dir))
        try:
            store = library.store
            ids, vectors = lib.ids(), np.asarray(lib.vectors())
            assets = synthetic_assets(n, 0, n, asset_labels(n))
            qvecs = VECTORS.queries(max(queries, recall_queries), n)
            store.all_tags()  # the page builds the listing before it searches
            for q in qvecs[:3]:
                store.search(q, K)
            unfiltered, _ = _timed(lambda q: _ids_of(store.search(q, K)), qvecs[:queries])
            base = percentile(unfiltered, 50)
            table.add(n, "none", "100 %", "-", ms(base), ms(percentile(unfiltered, 95)), "1.0", "-")
            for label, filters in new_filter_cases(n):
                log(f"  new filters {n}: {label} ...")
                mask = np.array([filters.matches(a) for a in assets])
                truth = exact_filtered_topk(vectors, qvecs[:recall_queries], mask, ids)
                routes = RouteLog(store)

                def search(q, filters=filters):
                    return _ids_of(store.search(q, K, filters=filters))
                search(qvecs[0])  # first use of this filter: the listing's view
                routes.calls.clear()
                times, _ = _timed(search, qvecs[:queries])
                _, found = _timed(search, qvecs[:recall_queries])
                del store._search_raw  # noqa: SLF001 - drop the RouteLog wrapper
                p50 = percentile(times, 50)
                route = routes.describe(int(mask.sum())) if routes.calls else f"exact ({int(mask.sum()):,} rows)"
                table.add(n, label, f"{100 * mask.mean():.2f} %", route, ms(p50),
                          ms(percentile(times, 95)), f"{p50 / base:.1f}", f"{recall(found, truth):.4f}")
        finally:
            library.close()
    table.note("route: as in the tag/source table (over-fetch, or `sha256 in [ids]` from the listing), or "
               "'exact': the matching rows read by id and ranked in Python (ragkit.storage.lite_reads).")
    return [table.finish()]


if __name__ == "__main__":  # python -m bench.filtered_bench 20000: the new filters only
    import sys
    from bench.common import quiet_logs
    quiet_logs()
    for finished in run_new_filters([int(s) for s in (sys.argv[1:] or ["20000"])], queries=30, recall_queries=30):
        print(finished.text())
