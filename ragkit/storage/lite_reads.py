"""Filtered search and full scans that hold at scale on embedded Milvus Lite (3.2, pure Python).

Only for a library in a Milvus Lite file: the store calls these when it is not on a server. A
Milvus server (2.3.5 measured) filters tags in its own engine in ~60 ms at 100k and keeps the
plain filter expressions. Measured at 100k assets (docs/performance.md, `bench/run.py --only
filtered`), Milvus Lite has two traps:

* **Tag filters.** Lite evaluates `array_contains*` (anything on an ARRAY field) with its row-wise
  Python backend, which starts by turning the whole segment, 512-float vectors included, into
  Python dicts (`pa.Table.to_pylist`): ~4-6 s per search, and on every search. `source == ...`
  and `sha256 in [...]` run in Arrow instead (milliseconds).
* **Selective filters lose recall.** Lite hands the filter to faiss HNSW as an id selector; with
  ef 128 a filter that keeps 1 % of the rows found only half of the true top 10 (0.49).

So a filtered search takes one of three routes, whichever the listing's counts make cheaper:

* **over-fetch**: an unfiltered search for enough hits that k of them match (about 2k+10
  expected matches), checked here against the fields Milvus returns with each hit.
  Cheap while the filter keeps many assets; independent of the listing's freshness.
* **by ids**: a search filtered by `sha256 in [the matching ids]` from the store's listing
  (ragkit.storage.listing), which Lite evaluates in Arrow, with ef raised to ~6k/selectivity so HNSW
  finds them. Cheap while the filter keeps few assets.
* **exact**: the matching rows read by id, vectors included, and their cosines computed here, the
  brute force a Milvus server switches to for a narrow filter (Lite has none on an indexed
  segment). For a filter that keeps a few dozen or hundred assets, where by ids needs ef ~20k:
  one day's uploads in a year of 20k assets (55) took 727 ms by ids, 9 ms exactly (under load).

Each re-checks every hit against the filter (ragkit.storage.filters.Filters.matches, the same test the
listing uses).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from ragkit.storage.listing import entry_of
from ragkit.storage.filters import Filters, ids_filter

# A search on the store's collection: (filter expression, limit, minimum HNSW ef) -> the hits,
# best first, as pymilvus returns them ({"distance": ..., "entity": {...}}).
SearchFn = Callable[[str, int, int], list[dict]]
# A query on the store's collection without a limit: filter expression -> rows.
QueryFn = Callable[[str], list[dict]]
# The exact route: ids -> their hits, best first, with cosines computed in Python (AssetStore).
ExactFn = Callable[[Sequence[str]], list[dict]]

MAX_LIMIT = 16384          # Milvus' cap on a search's limit (topk)
# The k-th match sits ~k/selectivity deep in the unfiltered order, and HNSW with an id selector
# needs ef ~6x that depth for recall@10 >= 0.99 (1 % filter at 100k: 0.958 / 0.978 / 0.985 / 0.993
# at 2x / 3x / 4x / 6x). faiss slows down superlinearly past ef ~4k (one 60k-row segment: 13 ms at
# 4k, 100 ms at 16k, 1.1 s at 65k), so ef stops at 20k: recall 1.0 down to a 0.1 % filter at 100k.
EF_PER_DEPTH = 6
MAX_EF = 20_000
# Costs measured on Milvus Lite 3.2 at 100k (bench/), to pick the cheaper route:
COST_PER_HIT_US = 110.0    # one more hit: Lite builds a dict of the whole row, pymilvus decodes it
COST_PER_ID_US = 6.0       # one more id in `sha256 in [...]`: quoting here, Lite's literal list
COST_PER_EF_US = 2.0       # one more step of ef in a 50k-row segment (x (1 + ef/8000): faiss' heap)
# One more row read by id with its 512-float vector (Lite turns each into a list of Python floats):
# 20k assets, get() of 50 / 200 / 1,000 rows: 19 / 33 / 498 ms (without vectors 5 / 16 / 193 ms).
COST_PER_EXACT_ROW_US = 500.0
EXACT_MAX_IDS = 1024       # the exact route reads at most this many rows (one get call)
ROWS_PER_SEGMENT = 50_000
# A full scan is one query per range of ids: a query's rows travel in one gRPC message (Lite's
# cap: 256 MB). 100,000 rows of id, date, source and 32 tags of 64 bytes stay under 225 MB.
ROWS_PER_QUERY = 100_000


def filtered_search(search: SearchFn, matching_ids: Sequence[str], total: int, k: int,
                    filters: Filters, default_ef: int, exact: ExactFn | None = None) -> list[dict]:
    """The top k hits that pass `filters`, best first.

    `matching_ids` are the listing's assets that match the filter, `total` the listing's size."""
    if not matching_ids:
        return []
    selectivity = len(matching_ids) / max(total, len(matching_ids))
    over_fetch = over_fetch_limit(k, selectivity)
    by_ids_ef = ef_for(k, selectivity, total, default_ef)
    keeps = matcher(filters)
    by_ids = by_ids_cost(0 if filters.only_source else len(matching_ids), by_ids_ef, total)
    over_fetch_ok = over_fetch <= MAX_LIMIT
    if exact is not None and len(matching_ids) <= EXACT_MAX_IDS and exact_cost(len(matching_ids)) < min(
            by_ids, over_fetch_cost(over_fetch, default_ef, total) if over_fetch_ok else math.inf):
        return [hit for hit in exact(matching_ids) if keeps(hit["entity"])][:k]
    if over_fetch_ok and over_fetch_cost(over_fetch, default_ef, total) <= by_ids:
        hits = search("", over_fetch, 0)
        kept = [hit for hit in hits if keeps(hit["entity"])]
        if len(kept) >= k or len(hits) < over_fetch:  # enough, or every asset was looked at
            return kept[:k]
        # The matches lie deeper than the over-fetch reached (they are far from this query).
        by_ids_ef = max(by_ids_ef, _ef_for_depth(over_fetch, total, default_ef))
    # By ids. A source alone is already an expression Lite evaluates in Arrow.
    expr = filters.expression() if filters.only_source else ids_filter(matching_ids)
    return [hit for hit in search(expr, k, by_ids_ef) if keeps(hit["entity"])][:k]


def over_fetch_limit(k: int, selectivity: float) -> int:
    """Hits to ask for so that ~2k+10 of them are expected to match (fewer than k: ~1e-5)."""
    return max(k, math.ceil((2 * k + 10) / selectivity))


def ef_for(k: int, selectivity: float, total: int, default_ef: int) -> int:
    """HNSW ef for a search filtered by an id selector that keeps `selectivity` of the rows."""
    return _ef_for_depth(k / selectivity, total, default_ef)


def _ef_for_depth(depth: float, total: int, default_ef: int) -> int:
    return max(default_ef, min(MAX_EF, max(total, 1), math.ceil(EF_PER_DEPTH * depth)))


def over_fetch_cost(limit: int, default_ef: int, total: int) -> float:
    return limit * COST_PER_HIT_US + _ef_cost(max(default_ef, 2 * limit), total)


def by_ids_cost(ids: int, ef: int, total: int) -> float:
    return ids * COST_PER_ID_US + _ef_cost(ef, total)


def exact_cost(ids: int) -> float:
    return ids * COST_PER_EXACT_ROW_US


def _ef_cost(ef: int, total: int) -> float:
    return ef * COST_PER_EF_US * (1 + ef / 8000) * max(1.0, total / ROWS_PER_SEGMENT)


def matcher(filters: Filters) -> Callable[[dict], bool]:
    """Does a returned row match the filter? For filtering hits here (the row needs ragkit.storage.listing.FIELDS)."""
    def keeps(entity: dict) -> bool:
        return filters.matches(entry_of(entity))
    return keeps


def scan(query: QueryFn, expr: str, total: int) -> list[dict]:
    """Every row matching `expr`, by one query per range of ids.

    Lite answers a query by walking every row in Python (dedup of versions, deletes) and then
    materialising each match as a dict of the whole row. query_iterator pays the walk again for
    every batch of 4096 (and sorts the remaining rows by id each time): O(n^2 / 4096), 15 s at 100k
    instead of ~4 s. Ids are lower-case hex SHA-256, so ranges of their first 4 digits split the
    rows evenly."""
    rows: list[dict] = []
    for clause in sha256_ranges(math.ceil(max(total, 1) / ROWS_PER_QUERY)):
        rows.extend(query(" and ".join(f"({part})" for part in (expr, clause) if part)))
    return rows


def sha256_ranges(parts: int) -> list[str]:
    """Filter clauses that split all ids into `parts` ranges ('' = all ids)."""
    parts = max(1, min(parts, 0x10000))
    bounds = [f'"{i * 0x10000 // parts:04x}"' for i in range(1, parts)]
    lows = [""] + [f"sha256 >= {b}" for b in bounds]
    highs = [f"sha256 < {b}" for b in bounds] + [""]
    return [" and ".join(c for c in (low, high) if c) for low, high in zip(lows, highs)]
