"""Search by words and pictures (ragkit.search.hybrid) measured on embedded Milvus Lite, at each --sizes.

    python bench/run.py --only hybrid --sizes 20000,100000

The library (cached in bench/.cache/hybrid-*): N assets through ragkit's AssetStore, with bench/synth.py's
clustered CLIP-like vectors, where each cluster is one subject ("red cape", "gold watch") and the names are
the kinds a creative team has: camera files ("IMG_2231.jpg", "DSCF_0412.jpg", 35 %), product shots named by
SKU and subject ("SKU-44712 red cape.jpg", 25 %), descriptive names ("red cape detail 07.jpg", 25 %) and
generated pictures whose brief names the subject (15 %); tags for campaigns ("summer-24", ...), status
("hero", "approved", ...) and channel. Rows go in 5,000 at a time with a flush after each (one upload
session each), so the collection has several segments, as a library grown over time has.

Quality: the text vector comes from a stub that stands in for a CLIP that understands descriptions but
cannot read codes: a code query ("SKU-44712", "IMG_2231") gets a query vector near a random subject's
cluster; a description gets one near its subject's cluster (bench/synth.py's query model). Each way of
searching then returns its top 10:
  CLIP only                 Library.search_text(keywords=False)
  ragkit (shipped)          Library.search_text(keywords=True): RRF k=60 of the CLIP route and the keyword
                            route ordered by words matched, then CLIP cosine (ragkit.search.hybrid)
  ragkit keyword route      that keyword route alone
  raw BM25 route            Milvus' full-text search alone, in its BM25 order
  Milvus hybrid_search      the same two requests (30 deep each) fused by Milvus: RRFRanker(60), and
                            WeightedRanker at three weights (CLIP, BM25), scores normalised (norm_score)
IDF: the same rows inserted again into a fresh segment (insert, flush, insert again, flush), and how
each way of searching ranks the original and its twin.
Latency: Library.search_text with the random-weight ViT-B-32 text tower (the real compute), keywords on
and off, and each route alone, interleaved query by query.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too

from bench.common import CACHE_DIR, TMP_DIR, Table, bench_settings, ms, percentile, shared_embedder  # noqa: E402
from bench.synth import VECTORS, _unit  # noqa: E402

GENERATOR_VERSION = 1
K = 10
SESSION = 5000  # rows per upload session (a flush after each)
COLOURS = ["red", "blue", "gold", "black", "white", "green", "silver", "pink", "navy", "orange", "purple", "beige"]
ITEMS = ["cape", "watch", "sneaker", "handbag", "knight", "dragon", "perfume", "jacket", "ring", "scarf",
         "helmet", "lamp", "chair", "bottle", "sword", "dress", "backpack", "camera", "mug", "poster",
         "castle", "car", "guitar", "hat", "necklace", "sofa", "shield", "boot", "umbrella", "bicycle",
         "vase", "kimono", "robot", "lantern", "wallet", "belt", "glove", "tent", "kite", "drone",
         "crown", "mask"]
CAMERA_PREFIXES = ["IMG", "DSC", "DSCF", "PXL", "GOPR", "P"]
VARIANTS = ["front", "back", "detail", "flat lay", "on model", "close up"]
# Tag: share of assets carrying it (independently of each other and of the picture).
TAG_SHARES = {"summer-24": 0.06, "winter-24": 0.05, "summer-25": 0.04, "fw-25": 0.03, "launch-q3": 0.02,
              "black-friday": 0.01, "hero": 0.05, "approved": 0.25, "draft": 0.10, "web": 0.30,
              "social": 0.15, "print": 0.05}
QUERY_TAGS = ["summer-24", "winter-24", "summer-25", "fw-25", "launch-q3", "black-friday", "hero"]
NAME_KINDS = (("camera", 0.35), ("sku", 0.25), ("descriptive", 0.25), ("generated", 0.15))
WEIGHTS = ((0.7, 0.3), (0.5, 0.5), (0.2, 0.8))  # WeightedRanker (CLIP, BM25)


# --- the library ------------------------------------------------------------------------------
def subject(cluster: int) -> str:
    return f"{COLOURS[cluster % len(COLOURS)]} {ITEMS[(cluster // len(COLOURS)) % len(ITEMS)]}"


@dataclass(frozen=True)
class Labels:
    """What each asset of the hybrid library is (deterministic from n): its cluster, name, tags, code."""
    clusters: np.ndarray
    filenames: list[str]
    tags: list[tuple[str, ...]]
    kinds: list[str]
    codes: list[str]  # "SKU-44712", "IMG_2231" or ""


def asset_id(n: int, i: int) -> str:
    return hashlib.sha256(f"ragkit-hybrid-{n}-{i}".encode()).hexdigest()


def labels(n: int) -> Labels:
    rng = np.random.default_rng([n, 21])
    clusters = rng.integers(0, _cluster_count(n), n)
    kinds = rng.choice([k for k, _ in NAME_KINDS], size=n, p=[p for _, p in NAME_KINDS])
    shares = np.array(list(TAG_SHARES.values()))
    has_tag = rng.random((n, len(TAG_SHARES))) < shares
    sku_numbers = rng.permutation(np.arange(10000, 100000))
    variant = rng.integers(0, len(VARIANTS), n)
    number = rng.integers(1, 100, n)
    names, codes, camera, sku = [], [], 0, 0
    for i in range(n):
        what = subject(int(clusters[i]))
        if kinds[i] == "camera":  # unique per library; the number alone repeats across prefixes
            code = f"{CAMERA_PREFIXES[camera // 9999]}_{1 + camera % 9999:04d}"
            names.append(f"{code}.jpg")
            camera += 1
        elif kinds[i] == "sku":
            code = f"SKU-{sku_numbers[sku]}"
            names.append(f"{code} {what}.jpg")
            sku += 1
        elif kinds[i] == "descriptive":
            code = ""
            names.append(f"{what} {VARIANTS[variant[i]]} {number[i]:02d}.jpg")
        else:
            code = ""
            names.append(f"gen_{asset_id(n, i)[:8]}.png")
        codes.append(code)
    tag_names = list(TAG_SHARES)
    tags = [tuple(tag_names[j] for j in np.flatnonzero(row)) for row in has_tag]
    return Labels(clusters, names, tags, [str(k) for k in kinds], codes)


def _cluster_count(n: int) -> int:
    return max(8, n // VECTORS.assets_per_cluster)  # as VectorModel._basis


def vectors(n: int, clusters: np.ndarray) -> np.ndarray:
    """bench/synth.py's CLIP-like asset vectors, with the cluster of each asset known."""
    common, centers = VECTORS._basis(n, 0)  # noqa: SLF001 - the suite's one vector model
    rng = np.random.default_rng([n, 22])
    noise = rng.standard_normal((n, VECTORS.dim)).astype(np.float32) / np.sqrt(VECTORS.dim)
    return _unit(VECTORS.common * common + VECTORS.topic * centers[clusters] + VECTORS.noise * noise)


def query_vectors(n: int, clusters: np.ndarray, seed: int) -> np.ndarray:
    """Text-query vectors near these clusters (VectorModel.queries with the topic chosen)."""
    common, centers = VECTORS._basis(n, 0)  # noqa: SLF001
    rng = np.random.default_rng([n, 23, seed])
    noise = rng.standard_normal((len(clusters), VECTORS.dim)).astype(np.float32) / np.sqrt(VECTORS.dim)
    return _unit(VECTORS.common * common + VECTORS.topic * centers[clusters] + VECTORS.query_noise * noise)


def assets(n: int, marks: Labels, begin: int, end: int) -> list:
    from ragkit.records import SOURCE_GENERATED, SOURCE_UPLOAD, Asset
    out = []
    for i in range(begin, end):
        generated = marks.kinds[i] == "generated"
        out.append(Asset(
            sha256=asset_id(n, i), filename=marks.filenames[i], mime="image/jpeg", width=800, height=600,
            size_bytes=150_000 + i % 5000, tags=marks.tags[i], created_at=1_700_000_000_000 + i * 1000,
            source=SOURCE_GENERATED if generated else SOURCE_UPLOAD,
            prompt=(f"A {subject(int(marks.clusters[i]))} on a studio background, soft light, space for a "
                    "headline") if generated else "",
            model="gemini-2.5-flash-image" if generated else ""))
    return out


def hybrid_library(n: int, log=print) -> Path:
    """The data dir of a ragkit library of n hybrid-bench assets (built once, cached)."""
    from ragkit.library import Library
    root = CACHE_DIR / f"hybrid-{n}-g{GENERATOR_VERSION}"
    if (root / "done.json").exists():
        return root / "data"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log(f"  building a hybrid-search library of {n} assets (once) ...")
    start = time.perf_counter()
    marks = labels(n)
    vecs = vectors(n, marks.clusters)
    library = Library.open(bench_settings(root / "data"))
    try:
        for begin in range(0, n, SESSION):
            end = min(n, begin + SESSION)
            library.store.upsert(assets(n, marks, begin, end), vecs[begin:end])
            library.store.flush()
    finally:
        library.close()
    (root / "done.json").write_text(json.dumps({"n": n, "seconds": round(time.perf_counter() - start, 1)}))
    log(f"  ... done in {time.perf_counter() - start:.0f} s")
    return root / "data"


# --- queries ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    vector: np.ndarray          # what the CLIP stub gives for text
    truth: frozenset[str]       # the right answers


def make_queries(n: int, marks: Labels, codes: int, tagged: int, described: int) -> list[Query]:
    rng = np.random.default_rng([n, 24])
    ids = [asset_id(n, i) for i in range(n)]
    out: list[Query] = []
    clusters = _cluster_count(n)
    for kind, label, count in (("sku", "code: SKU", codes // 2), ("camera", "code: camera file", codes - codes // 2)):
        picks = rng.choice([i for i in range(n) if marks.kinds[i] == kind], size=count, replace=False)
        unrelated = query_vectors(n, rng.integers(0, clusters, count), seed=len(out))  # CLIP can't read codes
        out += [Query(label, marks.codes[i], unrelated[j], frozenset([ids[i]])) for j, i in enumerate(picks)]
    members: dict[tuple[str, int], list[int]] = {}
    for i in range(n):
        for tag in marks.tags[i]:
            if tag in QUERY_TAGS:
                members.setdefault((tag, int(marks.clusters[i])), []).append(i)
    pairs = sorted(members)
    chosen = [pairs[j] for j in rng.choice(len(pairs), size=min(tagged, len(pairs)), replace=False)]
    near = query_vectors(n, np.array([c for _, c in chosen]), seed=len(out))
    out += [Query("tag + description", f"{tag} {subject(c)}", near[j], frozenset(ids[i] for i in members[tag, c]))
            for j, (tag, c) in enumerate(chosen)]
    topics = rng.choice(clusters, size=min(described, clusters), replace=False)
    near = query_vectors(n, topics, seed=len(out))
    by_cluster = {int(c): frozenset(ids[i] for i in np.flatnonzero(marks.clusters == c)) for c in topics}
    out += [Query("description only", subject(int(c)), near[j], by_cluster[int(c)]) for j, c in enumerate(topics)]
    return out


class StubEmbedder:
    """A CLIP text tower stand-in: each query's text gives its designed vector (ragkit.ingest.embedder's interface)."""
    dim = VECTORS.dim

    def __init__(self, queries: list[Query]) -> None:
        self._vectors = {q.text.strip(): q.vector for q in queries}

    def embed_texts(self, texts: list[str], trim: bool = True) -> np.ndarray:
        return np.stack([self._vectors[t.strip()] for t in texts])


# --- ways of searching --------------------------------------------------------------------------
def ways(library) -> list[tuple[str, Callable[[Query], list[str]]]]:
    """(label, query -> top-K ids) for every way of searching compared."""
    from pymilvus import RRFRanker, WeightedRanker

    from ragkit.search import hybrid
    store = library.store
    depth = hybrid.candidates(K)

    def keyword_route(q: Query) -> list[str]:
        rows = store.keyword_search(q.text, depth)
        return [h.asset.sha256 for h in hybrid.fuse([], rows, q.vector, q.text, K)]

    found = [
        ("CLIP only (keywords=False)", lambda q: _ids(library.search_text(q.text, K, keywords=False))),
        ("ragkit (shipped): RRF 60, keyword route by words matched, then cosine",
         lambda q: _ids(library.search_text(q.text, K))),
        ("ragkit's keyword route alone", keyword_route),
        ("raw BM25 route alone (Milvus' order)", lambda q: [r["sha256"] for r in store.keyword_search(q.text, K)]),
        ("Milvus hybrid_search, RRFRanker(60)", lambda q: milvus_hybrid(store, q, RRFRanker(60))),
    ]
    for clip, bm25 in WEIGHTS:
        found.append((f"Milvus hybrid_search, WeightedRanker({clip}, {bm25})",
                      lambda q, w=(clip, bm25): milvus_hybrid(store, q, WeightedRanker(*w))))
    return found


def milvus_hybrid(store, q: Query, ranker, fields: list[str] | None = None) -> list[str]:
    """Milvus' own fusion of the CLIP request and the BM25 request (each as deep as ragkit's routes)."""
    from pymilvus import AnnSearchRequest

    from ragkit.search import hybrid
    from ragkit.storage import schema
    from ragkit.storage.filters import LIVE
    depth = hybrid.candidates(K)
    requests = [
        AnnSearchRequest(data=[np.asarray(q.vector, dtype=np.float32).tolist()], anns_field="vector",
                         param={"metric_type": "COSINE", "params": store._search_params(depth)},  # noqa: SLF001
                         limit=depth, expr=LIVE),
        AnnSearchRequest(data=[schema.keyword_query(q.text)], anns_field=schema.KEYWORDS_SPARSE,
                         param={"metric_type": "BM25"}, limit=depth, expr=LIVE)]
    results = store._client.hybrid_search(store.collection, requests, ranker, limit=K,  # noqa: SLF001
                                          output_fields=fields or ["sha256"])
    return [hit["entity"]["sha256"] for hit in results[0]]


def _ids(hits) -> list[str]:
    return [h.asset.sha256 for h in hits]


# --- quality ----------------------------------------------------------------------------------
def quality_rows(table: Table, n: int, library, queries: list[Query], log=print) -> None:
    kinds = list(dict.fromkeys(q.kind for q in queries))
    for label, search in ways(library):
        log(f"  hybrid {n}: {label} ...")
        results = [(q, search(q)) for q in queries]
        for kind in kinds:
            mine = [(q, top) for q, top in results if q.kind == kind]
            first = np.mean([bool(top) and top[0] in q.truth for q, top in mine])
            top10 = np.mean([bool(q.truth.intersection(top[:K])) for q, top in mine])
            filled = np.mean([len(q.truth.intersection(top[:K])) / min(K, len(q.truth)) for q, top in mine])
            table.add(f"{n:,}", f"{kind} ({len(mine)})", label, _pct(first), _pct(top10), _pct(filled))


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


# --- per-segment IDF ----------------------------------------------------------------------------
def idf_rows(table: Table, n: int, data_dir: Path, queries: list[Query], twins: int, log=print) -> None:
    """Copy the library, insert again `twins` code assets (same name, tags and vector; new ids) in a
    fresh segment, and see how each way of searching ranks each original and its twin."""
    from ragkit.library import Library
    work = TMP_DIR / f"hybrid-idf-{n}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(data_dir, work)
    picked = [q for q in queries if q.kind.startswith("code")][:twins]
    library = Library.open(bench_settings(work), embedder=StubEmbedder(queries))
    try:
        store = library.store
        originals = store.get_many([next(iter(q.truth)) for q in picked])
        twin_of = {a.sha256: hashlib.sha256(f"twin-{a.sha256}".encode()).hexdigest() for a in originals}
        store.upsert([replace(a, sha256=twin_of[a.sha256]) for a in originals],
                     np.stack([store.get_vector(a.sha256) for a in originals]))
        store.flush()
        log(f"  hybrid {n}: IDF, {len(originals)} twins in a fresh segment ...")
        scores = _bm25_scores(store, picked, twin_of)
        ratio = [twin / orig for orig, twin in scores if orig]
        table.note(f"{n:,} assets: BM25 score of an original (in the library's {_segments(data_dir)} sealed "
                   f"segment(s) of {n:,} rows) vs its identical twin (a fresh segment of {len(originals)} rows), "
                   f"median over {len(ratio)} code queries: "
                   f"{np.median([o for o, _ in scores]):.2f} vs {np.median([t for _, t in scores]):.2f} "
                   f"(twin/original {min(ratio):.2f}-{max(ratio):.2f})")
        for label, search in ways(library):
            ranks = [_rank_pair(search(q), next(iter(q.truth)), twin_of[next(iter(q.truth))]) for q in picked]
            table.add(f"{n:,}", label, _mean_rank(o for o, _ in ranks), _mean_rank(t for _, t in ranks),
                      _pct(float(np.mean([o > K for o, _ in ranks]))), _pct(float(np.mean([t > K for _, t in ranks]))),
                      _pct(float(np.mean([o < t for o, t in ranks]))))
    finally:
        library.close()
        shutil.rmtree(work, ignore_errors=True)


def _bm25_scores(store, picked: list[Query], twin_of: dict[str, str]) -> list[tuple[float, float]]:
    from ragkit.storage import schema
    out = []
    for q in picked:
        original = next(iter(q.truth))
        hits = store._client.search(store.collection, data=[schema.keyword_query(q.text)],  # noqa: SLF001
                                    anns_field=schema.KEYWORDS_SPARSE, limit=50, output_fields=["sha256"],
                                    search_params={"metric_type": "BM25"})[0]
        score = {hit["entity"]["sha256"]: abs(float(hit["distance"])) for hit in hits}
        out.append((score.get(original, 0.0), score.get(twin_of[original], 0.0)))
    return out


def _rank_pair(top: list[str], original: str, twin: str) -> tuple[int, int]:
    """1-based ranks in the top K (K + 1: not in it)."""
    return (top.index(original) + 1 if original in top else K + 1, top.index(twin) + 1 if twin in top else K + 1)


def _mean_rank(ranks) -> str:
    values = list(ranks)
    return f"{np.mean(values):.2f}"


# --- latency ----------------------------------------------------------------------------------
class CachedTexts:
    """The real text tower's vectors, computed once: search_text timed without the encode."""
    dim = VECTORS.dim

    def __init__(self, embedder, texts: list[str]) -> None:
        self.vectors = {t: embedder.embed_texts([t])[0] for t in texts}

    def embed_texts(self, texts: list[str], trim: bool = True) -> np.ndarray:
        return np.stack([self.vectors[t.strip()] for t in texts])


def latency_rows(table: Table, n: int, data_dir: Path, texts: list[str], log=print) -> None:
    from pymilvus import RRFRanker

    from ragkit.search import hybrid
    from ragkit.library import Library
    real = shared_embedder()
    cached = CachedTexts(real, texts)
    library = Library.open(bench_settings(data_dir), embedder=real)
    store, depth = library.store, hybrid.candidates(K)

    def search(embedder, keywords: bool) -> Callable[[str], object]:
        def step(text: str) -> object:
            library._embedder = embedder  # noqa: SLF001 - the same library, with or without the encode
            return library.search_text(text, K, keywords=keywords)
        return step

    steps: list[tuple[str, Callable[[str], object]]] = [
        ("text encode alone (ViT-B-32 text tower)", lambda t: real.embed_texts([t])),
        ("search_text, keywords=False, encoded text given", search(cached, False)),
        ("search_text, keywords=True, encoded text given", search(cached, True)),
        ("search_text, keywords=False, end to end", search(real, False)),
        ("search_text, keywords=True, end to end", search(real, True)),
        (f"CLIP route alone (AssetStore.search, {depth} deep)", lambda t: store.search(cached.vectors[t], depth)),
        (f"keyword route alone (AssetStore.keyword_search, {depth} deep)", lambda t: store.keyword_search(t, depth)),
        ("Milvus hybrid_search, RRFRanker(60), ragkit's fields",
         lambda t: milvus_hybrid(store, Query("", t, cached.vectors[t], frozenset()), RRFRanker(60), store.fields)),
    ]
    try:
        for t in texts[:3]:  # warm-up: the first search of each kind
            for _, step in steps:
                step(t)
        samples: list[list[float]] = [[] for _ in steps]
        log(f"  hybrid {n}: latency over {len(texts)} queries ...")
        for i, text in enumerate(texts):
            order = list(range(len(steps)))
            for j in order[i % len(order):] + order[:i % len(order)]:  # each step first in turn
                start = time.perf_counter()
                steps[j][1](text)
                samples[j].append(time.perf_counter() - start)
    finally:
        library.close()
    for (label, _), values in zip(steps, samples):
        table.add(f"{n:,}", label, ms(percentile(values, 50)), ms(percentile(values, 95)))
    extra = [b - a for a, b in zip(samples[1], samples[2])]  # the same query, keywords on minus off
    table.add(f"{n:,}", "keywords=True minus False, same query (encoded text given)",
              ms(percentile(extra, 50)), ms(percentile(extra, 95)))


def _segments(data_dir: Path) -> int:
    """Sealed data files of the collection (one per flushed segment, after compaction)."""
    return sum(1 for _ in (data_dir / "ragkit.db").rglob("data_*.parquet"))


# --- the run --------------------------------------------------------------------------------------
def run(sizes: list[int], queries: int, codes: int = 200, tagged: int = 100, described: int = 50,
        twins: int = 20, quality_too: bool = True, log=print) -> list[Table]:
    """The quality, IDF and latency tables (latency alone without `quality_too`)."""
    from ragkit.library import Library
    quality = Table(f"Hybrid search quality on embedded Milvus Lite: share of queries whose right asset is 1st, "
                    f"in the top {K}, and the share of the top {K} that is right (of what can be)",
                    ["assets", "queries", "way of searching", "1st", f"in top {K}", f"right in top {K}"])
    idf = Table(f"BM25's per-segment IDF: {twins} code assets inserted again (same name, tags, vector) after a "
                f"flush; mean rank of original and twin in the top {K} ({K + 1} = not in it)",
                ["assets", "way of searching", "original", "twin", "original not in top 10", "twin not in top 10",
                 "original above twin"])
    latency = Table(f"Text search latency on embedded Milvus Lite, ms ({queries} queries, random-weight "
                    "ViT-B-32 text tower; steps interleaved query by query)",
                    ["assets", "step", "p50", "p95"])
    for n in sizes:
        data_dir = hybrid_library(n, log=log)
        marks = labels(n)
        qs = make_queries(n, marks, codes, tagged, described)
        log(f"  hybrid {n}: {len(qs)} queries, {_segments(data_dir)} segments")
        if quality_too:
            library = Library.open(bench_settings(data_dir), embedder=StubEmbedder(qs))
            try:
                quality_rows(quality, n, library, qs, log)
            finally:
                library.close()
            if n == min(sizes):
                idf_rows(idf, n, data_dir, qs, twins, log)
        spread = [qs[i].text for i in np.linspace(0, len(qs) - 1, queries).astype(int)]
        latency_rows(latency, n, data_dir, spread, log)
        quality.note(f"{n:,} assets: {_segments(data_dir)} sealed segments (a flush every {SESSION:,} rows)")
    quality.note("'right': code queries have one right asset (the one with that SKU or camera file name); "
                 "'tag + description' every asset of that subject with that tag; 'description only' every asset "
                 "of that subject (the column is then the top 10's precision).")
    quality.note("the CLIP route reads a stub: codes get a vector near a random subject, descriptions one near "
                 "theirs (bench/synth.py's query noise), so 'CLIP only' shows what a CLIP that cannot read codes does.")
    quality.note("WeightedRanker(clip, bm25) with norm_score (pymilvus' default): Milvus Lite maps cosine to "
                 "(1 + cos) / 2 and BM25 to 2·atan(score)/π before the weighted sum.")
    idf.note("the twins are identical to their originals: an order that does not depend on segments puts the "
             "original above its twin about half the time (ragkit breaks the tie by id).")
    latency.note("text queries: the quality queries (codes, tag + description, descriptions), spread evenly.")
    return ([quality.finish(), idf.finish()] if quality_too else []) + [latency.finish()]


def main() -> None:
    """`python bench/hybrid_bench.py --latency-only --sizes 20000,100000`: the latency table alone (bench/run.py
    --only hybrid runs everything)."""
    import argparse

    from bench.common import quiet_logs, show
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000")
    parser.add_argument("--queries", type=int, default=50, help="timed queries per size")
    parser.add_argument("--code-queries", type=int, default=200)
    parser.add_argument("--latency-only", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    for table in run([int(float(s)) for s in args.sizes.split(",")], args.queries, args.code_queries,
                     args.code_queries // 2, args.code_queries // 4, quality_too=not args.latency_only):
        show(table)


if __name__ == "__main__":
    main()
