"""Reindex: its throughput, and what searches see while it runs and switches.

    .venv/bin/python bench/reindex_bench.py                          # 96 800x600 JPEGs, tiny model -> ViT-B-32
    .venv/bin/python bench/reindex_bench.py --images 200 --to ragkit-tiny-b

A library of --images textured 800x600 JPEGs is ingested with the tiny test model (fast), then
re-indexed into --to (random weights saved to a checkpoint file: the real compute) by
ragkit.reindex.reindex, while a thread searches the library object it started from without a
pause (text, similar-image, tag-filtered), as the app's other sessions would. The table gives the
reindex's images/s next to the same model's batched forward on ready tensors (the ceiling), and the
searches' latency, errors and empty results during the reindex and its switch.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import TMP_DIR, Table, ms, percentile, quiet_logs, show  # noqa: E402
from bench.synth import folder_of, jpeg_files  # noqa: E402


def _ceiling(embedder, batch: int = 32, seconds: float = 5.0) -> float:
    import torch
    tensors = torch.randn(batch, 3, embedder.image_size, embedder.image_size)
    embedder.embed_tensors(tensors)
    done, started = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - started < seconds:
        embedder.embed_tensors(tensors)
        done += batch
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="800x600 JPEGs in the library (default 96)")
    parser.add_argument("--to", default="ViT-B-32", help="the architecture to re-index with (default ViT-B-32)")
    args = parser.parse_args(argv)
    quiet_logs()
    from ragkit.config import Settings
    from ragkit.embedder import ClipEmbedder, make_random_checkpoint
    from ragkit.library import Library
    from ragkit.reindex import reindex

    work = TMP_DIR / "reindex"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    files = jpeg_files("800x600", args.images)
    tiny = make_random_checkpoint("ragkit-tiny", work / "tiny.pt")
    target = make_random_checkpoint(args.to, work / f"{args.to}-random.pt")
    settings = Settings.load(env={"RAGKIT_DATA_DIR": str(work / "data"), "RAGKIT_CLIP_MODEL": "ragkit-tiny",
                                  "RAGKIT_CLIP_PRETRAINED": str(tiny), "RAGKIT_DEVICE": "cpu"},
                             cwd=work, secrets_files=[])
    library = Library.open(settings)
    try:
        library.ingest_paths([folder_of(files, "reindex-input")], tags=["bench"])
        some = library.page(0, 1).assets[0].sha256
        embedder = ClipEmbedder(args.to, str(target), "cpu")
        table = Table(f"Reindex: {args.images} 800x600 JPEGs, ragkit-tiny -> {args.to} (random weights), CPU",
                      ["phase", "searches", "p50 ms", "p95 ms", "max ms", "errors", "empty", "images/s",
                       "forward ceiling images/s"])
        latencies: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        problems: dict[str, list[str]] = {phase: [] for phase in latencies}
        empty = {phase: 0 for phase in latencies}
        phase = ["before"]
        stop = threading.Event()

        def search() -> None:
            queries = [lambda: library.search_text("red cape", k=6), lambda: library.search_similar(some, k=6),
                       lambda: library.search_text("bench", k=6, tags=["bench"])]
            while not stop.is_set():
                for query in queries:
                    started = time.perf_counter()
                    try:
                        found = query()
                    except Exception as exc:  # noqa: BLE001 - what the benchmark counts
                        problems[phase[0]].append(repr(exc)[:120])
                        continue
                    latencies[phase[0]].append(time.perf_counter() - started)
                    empty[phase[0]] += not found

        thread = threading.Thread(target=search, daemon=True)
        thread.start()
        time.sleep(3)
        phase[0] = "during"
        report = reindex(library, args.to, str(target), embedder=embedder)
        phase[0] = "after"
        time.sleep(3)
        stop.set()
        thread.join(60)
        ceiling = _ceiling(embedder)
        for name in ("before", "during", "after"):
            samples = latencies[name]
            table.add(name, len(samples), ms(percentile(samples, 50)), ms(percentile(samples, 95)),
                      ms(max(samples) if samples else float("nan")), len(problems[name]), empty[name],
                      f"{report.images_per_second:.1f}" if name == "during" else "",
                      f"{ceiling:.1f}" if name == "during" else "")
        table.note(f"reindex: {report.embedded} embedded, {report.verified} verified, {report.seconds:.1f} s in all "
                   "(model already loaded; includes the comparison passes, the check and a 1 s settle)")
        table.note("searches run on the library object the reindex started from (the old index), "
                   "in a thread beside it; 'after' = after the switch")
        for name, found in problems.items():
            for problem in found[:3]:
                table.note(f"{name}: {problem}")
        show(table)
    finally:
        library.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
