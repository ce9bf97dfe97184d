"""Near-duplicate groups (`python -m ragkit duplicates`): what they cost, and where to cut.

    python bench/duplicates_bench.py --sizes 10000,100000          # cost on both Lite engines
    python bench/duplicates_bench.py --quality                     # threshold table on the test set
    python bench/duplicates_bench.py --quality --models ViT-B-32:openai   # ... where real weights exist
    python bench/duplicates_bench.py --sizes 10000 --batch-sizes 512,4096 --methods search

Cost: a synthetic library of N assets with CLIP-like clustered vectors (bench/synth.py's model)
in which 1% of the assets are originals with 1-4 planted copies (cosine 0.96-0.995 to their
original), cached in bench/.cache/dups-*. Each method runs ragkit.search.duplicates.find_duplicate_groups
end to end (read every vector, one k-NN search per asset in batches, union-find, read the groups
back) on embedded Milvus Lite and on `milvus-lite server` serving the same files.
  search         ragkit's way: a batched top-2 search for every asset (itself and its nearest other),
                 then top-(k+1) only for those whose nearest other passes; the cut done in Python
  search-1round  top-(k+1) for every asset
  range          ragkit's two rounds as range searches (radius = threshold)
  group_by not measured: it groups hits by a scalar field's value, and near-duplicates share no
           field value until we have found them (and Milvus 2.3 has no group_by)

Quality: the labelled test set of tests/near_duplicates.py (originals, crops, resizes, re-encodes,
EXIF rotation, 16-bit and PNG copies, and different pictures of one subject) ingested through
ragkit with each available model; pair precision/recall at each threshold, directly (pairs at or
above it) and after grouping (pairs that land in one group).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE_DIR, TMP_DIR, Table, bench_env, quiet_logs, show  # noqa: E402
from bench.synth import VECTORS, _unit  # noqa: E402

GENERATOR_VERSION = 1
PLANTED_FRACTION = 0.01            # originals with planted copies
COPY_SCORES = (0.96, 0.995)        # cosine of a planted copy to its original
THRESHOLDS = (0.90, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


# --- the synthetic library --------------------------------------------------------------------
def asset_id(n: int, i: int) -> str:
    return hashlib.sha256(f"ragkit-dups-{n}-{i}".encode()).hexdigest()


def planted_vectors(n: int, seed: int = 0) -> tuple[np.ndarray, list[list[int]]]:
    """n CLIP-like vectors; some are near-copies of others. Returns them and the planted groups."""
    vectors = VECTORS.assets(n, seed)
    rng = np.random.default_rng([seed, 9])
    order = rng.permutation(n)
    groups, used = [], 0
    for _ in range(max(1, int(n * PLANTED_FRACTION))):
        size = 1 + int(rng.integers(1, 5))
        if used + size > n:
            break
        members = order[used:used + size].tolist()
        used += size
        original = vectors[members[0]]
        for index in members[1:]:
            score = rng.uniform(*COPY_SCORES)
            noise = rng.standard_normal(vectors.shape[1]).astype(np.float32)
            noise = _unit(noise - (noise @ original) * original)  # orthogonal to the original
            vectors[index] = _unit(score * original + math.sqrt(1 - score ** 2) * noise)
        groups.append(members)
    return vectors, groups


@dataclass(frozen=True)
class DupLibrary:
    n: int
    data_dir: Path
    groups_path: Path

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ragkit.db"

    def planted(self) -> list[list[int]]:
        return json.loads(self.groups_path.read_text())


def dup_library(n: int, log=print) -> DupLibrary:
    """A ragkit library of n synthetic assets with planted near-duplicates (built once, cached)."""
    from ragkit.library import Library
    from ragkit.records import Asset

    root = CACHE_DIR / f"dups-{n}-g{GENERATOR_VERSION}"
    lib = DupLibrary(n, root / "data", root / "groups.json")
    if (root / "done.json").exists():
        return lib
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log(f"  building a library of {n} assets with planted near-duplicates (once) ...")
    start = time.perf_counter()
    vectors, groups = planted_vectors(n)
    library = Library.open(_settings(lib.data_dir))
    try:
        for begin in range(0, n, 5000):
            assets = [Asset(sha256=asset_id(n, i), filename=f"photo_{i:06d}.jpg", mime="image/jpeg",
                            width=800, height=600, size_bytes=150_000 + i % 5000,
                            created_at=1_700_000_000_000 + i * 1000) for i in range(begin, min(n, begin + 5000))]
            library.store.upsert(assets, vectors[begin:begin + len(assets)])
        library.store.flush()
    finally:
        library.close()
    lib.groups_path.write_text(json.dumps(groups))
    (root / "done.json").write_text(json.dumps({"n": n, "seconds": round(time.perf_counter() - start, 1)}))
    log(f"  ... done in {time.perf_counter() - start:.0f} s")
    return lib


def _settings(data_dir: Path, **extra: str):
    from ragkit.config import Settings
    return Settings.load(env=bench_env(data_dir, **extra), cwd=data_dir.parent, secrets_files=[])


# --- engines ------------------------------------------------------------------------------------
@contextmanager
def open_library(lib: DupLibrary, engine: str) -> Iterator[object]:
    """The library on embedded Milvus Lite, or on `milvus-lite server` serving the same files."""
    from ragkit.library import Library
    if engine == "embedded":
        library = Library.open(_settings(lib.data_dir))
        try:
            yield library
        finally:
            library.close()
        return
    from tests.milvus_servers import LiteServer
    server = LiteServer(lib.db_path)
    try:
        library = Library.open(_settings(lib.data_dir, RAGKIT_MILVUS_URI=server.target.uri))
        try:
            yield library
        finally:
            library.close()
    finally:
        server.stop()


def range_neighbours(store):
    """store.neighbours done as a Milvus range search (radius = the threshold), for comparison."""
    def neighbours(vectors, k, min_score):
        params = store._search_params(k)
        if "ef" in params:
            params["ef"] = max(store.NEIGHBOUR_EF, k)
        results = store._client.search(
            store.collection, data=np.asarray(vectors, dtype=np.float32).tolist(), anns_field="vector",
            limit=k, output_fields=["sha256"], **store._read,
            search_params={"metric_type": "COSINE", "params": {**params, "radius": min_score}})
        return [[(hit["sha256"], float(hit["distance"])) for hit in hits] for hits in results]
    return neighbours


@contextmanager
def method_patched(method: str, store) -> Iterator[None]:
    """search: ragkit's two rounds (2 hits each, then k+1 for the assets with a near neighbour);
    search-1round: k+1 hits for every asset; range: ragkit's two rounds as range searches."""
    import ragkit.search.duplicates as duplicates
    original = duplicates._neighbours
    if method == "range":
        store.neighbours = range_neighbours(store)
    elif method == "search-1round":
        duplicates._neighbours = lambda st, vectors, k, cut: st.neighbours(vectors, k + 1, cut)
    elif method != "search":
        raise SystemExit(f"unknown method {method!r}: search, search-1round, range")
    try:
        yield
    finally:
        duplicates._neighbours = original
        store.__dict__.pop("neighbours", None)


def planted_recall(groups, lib: DupLibrary) -> float:
    """Share of planted groups found whole (all members in one found group)."""
    found = {}
    for number, group in enumerate(groups):
        for sha in group.sha256s:
            found[sha] = number
    planted = lib.planted()
    whole = sum(1 for members in planted
                if len({found.get(asset_id(lib.n, i), -1 - i) for i in members}) == 1)
    return whole / len(planted) if planted else float("nan")


def cost_table(sizes: list[int], engines: list[str], methods: list[str], batch_sizes: list[int],
               threshold: float, candidates: int) -> Table:
    from ragkit.search.duplicates import find_duplicate_groups
    table = Table(f"duplicates: cost (threshold {threshold}, {candidates} candidates per asset)",
                  ["size", "engine", "method", "batch", "read vectors s", "seconds", "queries/s",
                   "groups found", "planted groups found whole"])
    for n in sizes:
        lib = dup_library(n)
        for engine in engines:
            with open_library(lib, engine) as library:
                store = library.store
                start = time.perf_counter()
                read = sum(len(ids) for ids, _ in store.vector_batches(max(batch_sizes)))
                read_seconds = time.perf_counter() - start
                assert read == n, (read, n)
                for method in methods:
                    for batch in batch_sizes:
                        with method_patched(method, store):
                            start = time.perf_counter()
                            groups = find_duplicate_groups(library, threshold, candidates=candidates,
                                                           batch_size=batch)
                            seconds = time.perf_counter() - start
                        table.add(n, engine, method, batch, f"{read_seconds:.1f}", f"{seconds:.1f}",
                                  f"{n / seconds:,.0f}", len(groups), f"{planted_recall(groups, lib):.3f}")
                        print(f"  {n} {engine} {method} batch {batch}: {seconds:.1f} s, {len(groups)} groups",
                              flush=True)
    table.note("seconds: the whole find_duplicate_groups call (read vectors, searches, union-find, read "
               "the groups back); 'read vectors s' is the vector scan alone")
    table.note(f"{PLANTED_FRACTION:.0%} of assets are originals with 1-4 planted copies at cosine "
               f"{COPY_SCORES[0]}-{COPY_SCORES[1]}; other vectors: bench/synth.py's clustered model")
    table.note("group_by: not applicable (it groups hits by a scalar field's value; Milvus 2.3 lacks it)")
    return table


# --- quality: the labelled test set --------------------------------------------------------------
def embed_test_set(model: str, pretrained: str, work: Path) -> tuple[list, np.ndarray]:
    """Ingest tests/near_duplicates.py's set with a model: its samples and their unit vectors, in order."""
    from ragkit.library import Library
    from tests.near_duplicates import near_duplicate_set

    samples = near_duplicate_set()
    folder = work / "images"
    folder.mkdir(parents=True)
    for sample in samples:
        (folder / sample.name).write_bytes(sample.data)
    settings = _settings(work / "data", RAGKIT_CLIP_MODEL=model, RAGKIT_CLIP_PRETRAINED=pretrained)
    library = Library.open(settings)
    try:
        report = library.ingest_paths([folder])
        assert not report.rejected and len(report.added) == len(samples), report
        by_name = {}
        for ids, batch in library.store.vector_batches():
            by_name.update((asset.filename, vector) for asset, vector in zip(library.get_many(ids), batch))
    finally:
        library.close()
    return samples, np.stack([by_name[sample.name] for sample in samples])


def quality_table(models: list[tuple[str, str]]) -> list[Table]:
    from ragkit.search.duplicates import UnionFind
    tables = []
    for model, pretrained in models:
        work = TMP_DIR / f"dups-quality-{model}"
        shutil.rmtree(work, ignore_errors=True)
        samples, vectors = embed_test_set(model, pretrained, work)
        shutil.rmtree(work, ignore_errors=True)
        similarity = vectors @ vectors.T
        pairs = [(i, j) for i in range(len(samples)) for j in range(i + 1, len(samples))]
        truth = {(i, j) for i, j in pairs if samples[i].shot is not None and samples[i].shot == samples[j].shot}
        table = Table(f"duplicates: precision / recall on the test set, {model} ({pretrained}), "
                      f"{len(samples)} pictures, {len(truth)} true pairs",
                      ["threshold", "pairs >= T", "precision", "recall", "grouped precision", "grouped recall",
                       "groups"])
        for threshold in THRESHOLDS:
            direct = {(i, j) for i, j in pairs if similarity[i, j] >= threshold}
            links = UnionFind()
            for i, j in direct:
                links.union(str(i), str(j))
            group_of = {int(m): number for number, members in enumerate(links.components()) for m in members}
            grouped = {(i, j) for i, j in pairs if i in group_of and group_of[i] == group_of.get(j)}
            table.add(threshold, len(direct), _ratio(direct & truth, direct), _ratio(direct & truth, truth),
                      _ratio(grouped & truth, grouped), _ratio(grouped & truth, truth),
                      sum(1 for m in links.components() if len(m) > 1))
        _describe(table, samples, similarity)
        tables.append(table)
    return tables


def _ratio(hits: set, of: set) -> str:
    return f"{len(hits) / len(of):.3f}" if of else "n/a"


def _describe(table: Table, samples, similarity: np.ndarray) -> None:
    """Which copies are hardest, and how close the pictures that must stay apart come."""
    originals = {s.shot: i for i, s in enumerate(samples) if s.variant == "original"}
    lowest: dict[str, float] = {}
    for i, sample in enumerate(samples):
        if sample.shot is not None and sample.variant != "original":
            score = float(similarity[i, originals[sample.shot]])
            lowest[sample.variant] = min(lowest.get(sample.variant, 1.0), score)
    table.note("lowest cosine of each kind of copy to its original: "
               + ", ".join(f"{k} {v:.4f}" for k, v in sorted(lowest.items(), key=lambda kv: kv[1])))
    apart = [(i, j) for i in range(len(samples)) for j in range(i + 1, len(samples))
             if samples[i].shot is None or samples[i].shot != samples[j].shot]
    subject = [float(similarity[i, j]) for i, j in apart if samples[i].subject == samples[j].subject]
    others = [float(similarity[i, j]) for i, j in apart if samples[i].subject != samples[j].subject]
    table.note(f"pictures that must not group: same subject (other colour, reshoot) max {max(subject):.4f}; "
               f"different subjects max {max(others):.4f}, median {float(np.median(others)):.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="", help="library sizes for the cost table, e.g. 10000,100000")
    parser.add_argument("--engines", default="embedded,lite-server")
    parser.add_argument("--methods", default="search,search-1round,range")
    parser.add_argument("--batch-sizes", default="4096", help="vectors per search call (comma-separated)")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--quality", action="store_true", help="the threshold table on the labelled test set")
    parser.add_argument("--models", default="ragkit-tiny,ViT-B-32",
                        help="models for --quality, ARCH[:PRETRAINED] (default: random weights, all this "
                             "machine has; with weights e.g. ViT-B-32:openai)")
    args = parser.parse_args(argv)
    quiet_logs()
    if args.quality:
        for table in quality_table([_model(name) for name in args.models.split(",")]):
            show(table)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    if sizes:
        show(cost_table(sizes, args.engines.split(","), args.methods.split(","),
                        [int(b) for b in args.batch_sizes.split(",")], args.threshold, args.candidates))


def _model(spec: str) -> tuple[str, str]:
    """ARCH[:PRETRAINED] -> (architecture, pretrained). Without a tag: random weights (ragkit-tiny from
    a checkpoint file, others 'none'); on a machine with weights, e.g. ViT-B-32:openai or a path."""
    name, _, pretrained = spec.partition(":")
    if pretrained:
        return name, pretrained
    if name != "ragkit-tiny":
        return name, "none"
    from ragkit.ingest.embedder import make_random_checkpoint
    path = CACHE_DIR / "ragkit-tiny.pt"
    if not path.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        make_random_checkpoint(name, path)
    return name, str(path)


if __name__ == "__main__":
    main()
