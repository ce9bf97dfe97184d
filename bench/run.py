"""ragkit benchmarks: one command, tables on stdout (and saved under bench/results/).

    .venv/bin/python bench/run.py                       # everything, default sizes (~35 min on a quiet machine)
    .venv/bin/python bench/run.py --quick               # small sizes, to check the benchmark itself
    .venv/bin/python bench/run.py --only query,index --sizes 1000,10000,100000
    .venv/bin/python bench/run.py --only text --queries 40     # text encoder: 77 positions vs trimmed
    .venv/bin/python bench/run.py --only ingest --images 96 --images-24mp 24 --repeat 3
    .venv/bin/python bench/run.py --only filtered --sizes 20000,100000
    .venv/bin/python bench/run.py --only hybrid --sizes 20000,100000
    .venv/bin/python bench/run.py --only engines --uri http://127.0.0.1:19530 --token root:Milvus --sizes 100000
    .venv/bin/python bench/run.py --only query,page,memory --uri http://127.0.0.1:19530   # each: embedded, then server
    .venv/bin/python bench/run.py --only load,encode --load-app /work/main    # several people at once; vs a checkout

Sub-benchmarks (--only, comma-separated; default all but sweep):
  ingest   images/s: naive notebook loop, batched model ceiling, ragkit ingest (800x600 and 24 MP)
  query    text query end to end and vector search p50/p95 at each --sizes, recall@10, time split
  text     the text encoder alone: all 77 token positions vs trimmed to the end-of-text token
  index    every Milvus Lite vector index on one library of --index-size assets
  cold     a fresh app process: imports, DB open, first search, model load (at --cold-size)
  memory   peak RSS of that app process (at --memory-size)
  page     the Library page's calls at --page-size assets (+ the app.py Library page through AppTest)
  filtered filtered search (tag, source, tag+source) vs unfiltered at each --sizes, recall@10 against
           exact filtered brute force, every route forced; and the full scan behind the listing
  engines  embedded Milvus Lite and the --uri server side by side at each --sizes: text query, filtered
           searches, recall@10, first Library visit, app memory (needs --uri)
  load     N Chromium sessions (--people 1,4,8) open search links at once, one scrolls the Library:
           p50/p95, searches/s, the app's CPU per search and memory per session (--busy, --load-app)
  encode   one text query's encode in a fresh process, alone and with a busy core (--load-app: vs it);
           Streamlit's post-run gc.collect(2) before and after the app's freeze
  sweep    ingest over batch sizes x worker counts (how the ingest defaults were chosen)
  hybrid   search by words and pictures at each --sizes (embedded only): how often the asset with a code
           ("SKU-44712", "IMG_2231") or a tag + description ranks 1st / in the top 10 for CLIP alone,
           ragkit's RRF fusion, Milvus' hybrid_search (RRF, weighted) and raw BM25; BM25's per-segment
           IDF; latency with keywords on and off (bench/hybrid_bench.py)

With --uri (and --token), the sub-benchmarks that read a library (query, index, cold, memory, page,
filtered) run twice in the same run, on the embedded file and then on that Milvus server, each
table saying which; the libraries are the same synthetic ones (put on the server once, rebuilt when
another size is asked for, since a server holds one collection per model).

Inputs are generated once into bench/.cache/ (gitignored): textured JPEGs and synthetic
libraries. Speed runs use open_clip ViT-B-32 with fixed random weights (the real compute).
Other load on the machine skews every number: each table prints the 1-minute load average.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import TMP_DIR, Table, loadavg, machine_table, quiet_logs, save_results, show  # noqa: E402

ALL = ["ingest", "query", "text", "index", "cold", "memory", "page", "filtered"]
EXTRA = ["sweep", "engines", "hybrid", "load", "encode"]
ON_BOTH_ENGINES = ["query", "index", "cold", "memory", "page", "filtered"]


def _ints(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(ALL),
                        help=f"comma-separated sub-benchmarks: {','.join(ALL + EXTRA)} (default: {','.join(ALL)})")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes to validate the benchmark: sizes 1000,10000, 16+4 images, 20 queries")
    parser.add_argument("--sizes", type=_ints, default=None, help="library sizes for query (default 1000,10000,100000)")
    parser.add_argument("--images", type=int, default=None, help="800x600 JPEGs for ingest (default 96)")
    parser.add_argument("--images-24mp", type=int, default=None, help="24 MP JPEGs for ingest (default 24)")
    parser.add_argument("--queries", type=int, default=None,
                        help="timed queries per size, and timed calls per row of text (default 50)")
    parser.add_argument("--recall-queries", type=int, default=None,
                        help="queries for recall@10 (default 200); hybrid: code queries (and half as many "
                             "tag + description queries, a quarter as many descriptions)")
    parser.add_argument("--index-size", type=int, default=None, help="library size for index (default: largest of --sizes)")
    parser.add_argument("--cold-size", type=int, default=None, help="library size for cold (default: largest of --sizes)")
    parser.add_argument("--memory-size", type=int, default=None, help="library size for memory (default: largest of --sizes)")
    parser.add_argument("--page-size", type=int, default=None, help="library size for page (default 10000)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="repetitions for ingest (best of), cold/memory (median of) and page (default 2, 2, 10)")
    parser.add_argument("--index", default=None,
                        help="index for query/cold/memory/page libraries, e.g. HNSW:M=16,efConstruction=200 "
                             "(default: ragkit.storage.store.DEFAULT_INDEX)")
    parser.add_argument("--before-queries", type=int, default=3,
                        help="filtered: queries for Milvus Lite's own tag expressions (~5 s each at 100k; default 3)")
    parser.add_argument("--alternatives", action="store_true",
                        help="filtered: also time the other expression forms and scan ways that were tried")
    parser.add_argument("--sweep-batches", type=_ints, default=[16, 32, 48], help="batch sizes for sweep")
    parser.add_argument("--sweep-workers", type=_ints, default=[1, 2, 3], help="worker counts for sweep")
    parser.add_argument("--uri", default="", help="a Milvus server to measure next to the embedded file "
                                                     "(e.g. http://127.0.0.1:19530)")
    parser.add_argument("--token", default="", help="user:password or API key of --uri")
    parser.add_argument("--engines-embedded-max", type=int, default=200_000,
                        help="engines: larger sizes run on the server only (default 200000)")
    parser.add_argument("--people", type=_ints, default=[1, 4, 8],
                        help="load: people searching at once, one table row each (default 1,4,8)")
    parser.add_argument("--rounds", type=int, default=3, help="load: rounds per row (default 3)")
    parser.add_argument("--load-assets", type=int, default=228, help="load: library size (default 228)")
    parser.add_argument("--busy", action="store_true", help="load: a process spins on one core meanwhile")
    parser.add_argument("--load-app", type=Path, default=None,
                        help="load: run this checkout's app.py instead (a before/after comparison); "
                             "encode: compare this checkout with it")
    parser.add_argument("--no-save", action="store_true", help="don't write bench/results/bench-*.json and .md")
    args = parser.parse_args(argv)
    quick = args.quick
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(ALL + EXTRA)
    if unknown:
        parser.error(f"unknown sub-benchmark(s): {', '.join(sorted(unknown))}")
    args.sizes = args.sizes or ([1000, 10000] if quick else [1000, 10000, 100000])
    largest = max(args.sizes)
    args.images = args.images if args.images is not None else (16 if quick else 96)
    args.images_24mp = args.images_24mp if args.images_24mp is not None else (4 if quick else 24)
    args.queries = args.queries or (20 if quick else 50)
    args.recall_queries = args.recall_queries or (100 if quick else 200)
    args.index_size = args.index_size or largest
    args.cold_size = args.cold_size or largest
    args.memory_size = args.memory_size or largest
    args.page_size = args.page_size or (min(10000, largest))
    args.index_spec = _index_spec(args.index) if args.index else None
    if "engines" in args.only and not args.uri:
        parser.error("engines compares the embedded file with a server: give --uri")
    return args


def _index_spec(text: str) -> dict:
    """'HNSW:M=16,efConstruction=200' -> {'index_type': 'HNSW', 'params': {'M': 16, ...}}."""
    kind, _, params = text.partition(":")
    parsed = {}
    for item in filter(None, params.split(",")):
        key, _, value = item.partition("=")
        parsed[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    return {"index_type": kind.strip().upper(), "params": parsed}


def text_encode_table(calls: int, log=print) -> Table:
    """ClipEmbedder.embed_texts with all 77 token positions (trim=False, what ragkit ran before)
    and trimmed to the longest end-of-text token (the default), timed back to back."""
    import numpy as np

    from bench.common import ms, percentile, shared_embedder
    from bench.synth import TEXT_QUERIES

    embedder = shared_embedder()
    long_text = ("a product shot of a leather handbag in warm studio light, soft shadows, beige backdrop, "
                 "shallow depth of field, three-quarter view, high detail")
    cases = [("empty string", [""]), ("one word", ["red"]),
             ("typical query", ["a red silk cape with gold trim"]),
             ("long description", [long_text]),
             ("over-long (truncated at 77)", [" ".join(["red silk cape"] * 40)]),
             ("20 bench queries, one per call", None),
             ("batch of 8 queries", TEXT_QUERIES[:8])]
    table = Table(f"Text encode in ms (ViT-B-32 text tower, random weights, {calls} calls per row, "
                  "p50; all 77 positions vs trimmed, timed alternately)",
                  ["texts", "positions", "77 positions", "trimmed", "speed-up", "max abs diff"])
    for label, texts in cases:
        log(f"  text: {label} ...")
        batches = [[q] for q in TEXT_QUERIES] if texts is None else [texts]
        lengths = [int(embedder._tokenizer(b).argmax(dim=-1).max()) + 1 for b in batches]  # noqa: SLF001
        diff = max(float(np.abs(embedder.embed_texts(b) - embedder.embed_texts(b, trim=False)).max())
                   for b in batches)
        full, trimmed = [], []
        for i in range(calls):
            batch = batches[i % len(batches)]
            for trim, sink in ((False, full), (True, trimmed)) if i % 2 else ((True, trimmed), (False, full)):
                start = time.perf_counter()
                embedder.embed_texts(batch, trim=trim)
                sink.append(time.perf_counter() - start)
        positions = str(lengths[0]) if len(set(lengths)) == 1 else f"{min(lengths)}-{max(lengths)}"
        p_full, p_trim = percentile(full, 50), percentile(trimmed, 50)
        table.add(label, positions, ms(p_full), ms(p_trim), f"{p_full / p_trim:.1f}x", f"{diff:.1e}")
    table.note("'positions' is what the trimmed path runs: up to the longest text's end-of-text token "
               "(a batch runs its longest text's); 'max abs diff' compares the unit vectors of the two paths.")
    return table.finish()


def library_benchmarks(args: argparse.Namespace, repeat: int | None, log):
    """The sub-benchmarks that read a library, on whichever engine _Engine has set (tables, lazily)."""
    if "query" in args.only:
        from bench import query_bench
        yield from query_bench.run(args.sizes, args.queries, args.recall_queries, args.index_spec, log=log)
    if "index" in args.only:
        from bench import index_bench
        yield from index_bench.run(args.index_size, max(20, args.queries // 2), args.recall_queries, log=log)
    if "cold" in args.only or "memory" in args.only:
        from bench import process_bench
        yield from process_bench.run(args.cold_size, args.memory_size, repeat or 2,
                                     "cold" in args.only, "memory" in args.only, log=log)
    if "page" in args.only:
        from bench import page_bench
        yield from page_bench.run(args.page_size, repeat or 10, log=log)
    if "filtered" in args.only:
        from bench import filtered_bench
        yield from filtered_bench.run(args.sizes, args.queries, args.recall_queries, args.before_queries,
                                      args.alternatives, log=log)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_logs()
    started = time.time()
    tables: list[Table] = []
    print(f"ragkit benchmark: {', '.join(args.only)}; load avg 1-min {loadavg():.2f} at start", flush=True)
    show(machine_table(), tables)
    if args.index_spec:
        import ragkit.storage.store
        ragkit.storage.store.DEFAULT_INDEX = args.index_spec  # libraries built by this run use it
    repeat = args.repeat

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        if "ingest" in args.only:
            from bench import ingest_bench
            for table in ingest_bench.run({"800x600": args.images, "24mp": args.images_24mp},
                                          repeat=repeat or 2, log=log):
                show(table, tables)
        if "sweep" in args.only:
            from bench import ingest_bench
            for table in ingest_bench.sweep({"800x600": args.images, "24mp": args.images_24mp},
                                            args.sweep_batches, args.sweep_workers, log=log):
                show(table, tables)
        if "text" in args.only:
            show(text_encode_table(args.queries, log=log), tables)
        from bench.engines_bench import _Engine
        for engine, label in (((None, ""),) + (((args.uri, " — on the --uri server"),) if args.uri else ())):
            with _Engine(engine, args.token):
                for table in library_benchmarks(args, repeat, log):
                    table.title += label or (" — embedded" if args.uri else "")
                    show(table, tables)
        if "hybrid" in args.only:
            from bench import hybrid_bench
            for table in hybrid_bench.run(args.sizes, args.queries, args.recall_queries, args.recall_queries // 2,
                                            args.recall_queries // 4, log=log):
                show(table, tables)
        if "encode" in args.only:
            from bench import load_bench
            repos = [Path(__file__).resolve().parents[1]] + ([args.load_app] if args.load_app else [])
            show(load_bench.encode_table(args.queries, repos, log=log), tables)
            show(load_bench.gc_table(log=log), tables)
        if "load" in args.only:
            from bench import load_bench
            for table in load_bench.run(args.people, args.rounds, args.load_assets, args.busy, args.load_app,
                                        log=log):
                show(table, tables)
        if "engines" in args.only:
            from bench import engines_bench
            for table in engines_bench.run(args.sizes, args.uri, args.token, args.queries, args.recall_queries,
                                           args.engines_embedded_max, log=log):
                show(table, tables)
    finally:
        shutil.rmtree(TMP_DIR, ignore_errors=True)
    elapsed = time.time() - started
    print(f"\ndone in {elapsed / 60:.1f} min; load avg 1-min {loadavg():.2f} at end", flush=True)
    if not args.no_save:
        saved = {key: value for key, value in vars(args).items()}
        json_path, md_path = save_results(tables, saved, started)
        print(f"saved {json_path.relative_to(Path.cwd()) if json_path.is_relative_to(Path.cwd()) else json_path} "
              f"and {md_path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
