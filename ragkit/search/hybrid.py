"""Search by words and by picture at once: the CLIP route and the keyword route, fused.

A creative team types "SKU-4471", "IMG_2231", "hero" or a brief's words as often as a description,
and CLIP cannot read those. So a text query runs two searches in Milvus: the CLIP vector of the text
(what the picture shows), and full-text BM25 over each asset's name, tags, brief and caption
(ragkit.storage.schema.keyword_text). They are fused by reciprocal rank (RRF, k=60) here rather than by
Milvus' hybrid_search, for three reasons:

- a hit must say which route found it (hybrid_search returns only the fused list);
- Milvus computes BM25's IDF per segment (Milvus Lite 3.2: identical rows in two segments scored
  0.98 and 0.29), so a raw BM25 order depends on which flush a row landed in. The keyword route is
  ordered here by how many of the query's words an asset has, then by its CLIP similarity: the same
  order whatever the segments;
- scores of the two routes are not comparable (BM25 is unbounded, negative on Lite; cosine is in
  [-1, 1]), which is what rank fusion is for: a weighted sum would need a normalisation that moves
  with every query.

The keyword route keeps only the assets that have the most of the query's words (all of them, when
any asset has all). Ties of the fused score (an asset first in one route only, vs another first in
the other) go to the one with more of the query's words, so an exact code or file name comes first.
"""
from __future__ import annotations

import numpy as np

from ragkit.records import ROUTE_CLIP, ROUTE_KEYWORDS, SearchHit
from ragkit.storage.schema import keyword_tokens, row_asset

RRF_K = 60


def fuse(clip_hits: list[SearchHit], keyword_rows: list[dict], query_vector: np.ndarray, query_text: str,
         k: int) -> list[SearchHit]:
    """The top k of both routes by reciprocal rank, each hit with its routes and matched words."""
    words = keyword_tokens(query_text)
    query = np.asarray(query_vector, dtype=np.float32).ravel()
    keyword_hits = []
    for row in keyword_rows:
        matched = words & keyword_tokens(row.get("keywords") or "")
        if matched:  # BM25 also counts partial tokens of some analyzers: keep real word matches
            cosine = float(np.dot(np.asarray(row["vector"], dtype=np.float32), query))
            keyword_hits.append((row_asset(row), cosine, matched))
    # Only the assets with the most of the query's words: "IMG_2231" should rank IMG_2231.jpg, not
    # every IMG_ file, and an asset with one word of a long description is noise, not a word match.
    best = max((len(hit[2]) for hit in keyword_hits), default=0)
    keyword_hits = sorted((hit for hit in keyword_hits if len(hit[2]) == best),
                          key=lambda hit: (-hit[1], hit[0].sha256))

    fused: dict[str, dict] = {}
    for rank, hit in enumerate(clip_hits, 1):
        fused[hit.asset.sha256] = {"asset": hit.asset, "cosine": hit.score, "rrf": 1 / (RRF_K + rank),
                                   "routes": [ROUTE_CLIP], "matched": set()}
    for rank, (asset, cosine, matched) in enumerate(keyword_hits, 1):
        entry = fused.setdefault(asset.sha256, {"asset": asset, "cosine": cosine, "rrf": 0.0, "routes": [],
                                                "matched": set()})
        entry["rrf"] += 1 / (RRF_K + rank)
        entry["routes"].append(ROUTE_KEYWORDS)
        entry["matched"] = matched
    order = sorted(fused.values(), key=lambda e: (-e["rrf"], -len(e["matched"]), -e["cosine"], e["asset"].sha256))
    return [SearchHit(e["asset"], e["cosine"], tuple(e["routes"]), tuple(sorted(e["matched"]))) for e in order[:k]]


def candidates(k: int) -> int:
    """How deep each route looks for a fused top k."""
    return max(20, 2 * k + 10)


NOT_WEIGHT = 0.5  # how far a "not" text pushes the query away (of its unit vector)


def composed_vector(picture: np.ndarray, words: np.ndarray | None, text_weight: float,
                    not_words: np.ndarray | None = None) -> np.ndarray:
    """"Like this, but red": normalise((1 - w)·picture + w·words - 0.5·not). All inputs are unit CLIP
    vectors; w = 0 is the picture alone, 1 the words alone (w only matters with words)."""
    if not 0.0 <= text_weight <= 1.0:
        from ragkit.errors import InvalidInputError
        raise InvalidInputError(f"the text weight is {text_weight}; give a number from 0 (the picture only) "
                                "to 1 (the words only)")
    query = np.asarray(picture, dtype=np.float32).copy()
    if words is not None:
        query = (1.0 - text_weight) * query + text_weight * np.asarray(words, dtype=np.float32)
    if not_words is not None:
        query = query - NOT_WEIGHT * np.asarray(not_words, dtype=np.float32)
    norm = float(np.linalg.norm(query))
    if norm < 1e-6:  # e.g. the words exactly cancel the picture: nothing left to search for
        from ragkit.errors import InvalidInputError
        raise InvalidInputError("the words and the picture cancel each other out; change the text weight")
    return (query / norm).astype(np.float32)
