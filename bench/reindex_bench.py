"""Reindex: its throughput, and what searches see while it runs and switches.

    .venv/bin/python bench/reindex_bench.py                          # 96 800x600 JPEGs, tiny model -> ViT-B-32
    .venv/bin/python bench/reindex_bench.py --images 200 --to ragkit-tiny-b

A library of --images textured 800x600 JPEGs is ingested with the tiny test model (fast), then
re-indexed into --to (random weights saved to a checkpoint file: the real compute) by
ragkit.reindex.reindex, while a thread searches the library object it started from without a
pause (text, similar-image, tag-filtered), as the app's other sessions would. The table gives the
reindex's images/s next to the same model's batched forward on ready tensors (the ceiling), and the
searches' latency, errors and empty results in each phase: before, filling and verifying, the switch
itself, the settle and catch-up after it, and after.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from dataclasses import dataclass
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


@dataclass
class _Search:
    started: float
    latency: float
    empty: bool
    error: str | None


class _Searches:
    """A thread that searches `library` without a pause (as the app's other sessions would), timestamped."""

    def __init__(self, library, some_sha: str) -> None:
        self.done: list[_Search] = []
        self._queries = [lambda: library.search_text("red cape", k=6), lambda: library.search_similar(some_sha, k=6),
                         lambda: library.search_text("bench", k=6, tags=["bench"])]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for query in self._queries:
                started = time.perf_counter()
                try:
                    found, error = query(), None
                except Exception as exc:  # noqa: BLE001 - what the benchmark counts
                    found, error = [], repr(exc)[:120]
                self.done.append(_Search(started, time.perf_counter() - started, not found and not error, error))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def between(self, begin: float, end: float) -> list[_Search]:
        """The searches that overlap [begin, end)."""
        return [s for s in self.done if s.started < end and s.started + s.latency > begin]


def _reindex_marking_the_switch(library, model: str, pretrained: str, embedder, marks: dict[str, float]):
    """ragkit.reindex.reindex, with the times the switch step began and ended put into `marks`."""
    from ragkit.lifecycle import reindex as module
    switch = module._Reindex.switch  # noqa: SLF001

    def timed_switch(self, target) -> None:
        marks["switch"] = time.perf_counter()
        switch(self, target)
        marks["switched"] = time.perf_counter()

    module._Reindex.switch = timed_switch  # noqa: SLF001
    try:
        return module.reindex(library, model, pretrained, embedder=embedder)
    finally:
        module._Reindex.switch = switch  # noqa: SLF001


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="800x600 JPEGs in the library (default 96)")
    parser.add_argument("--to", default="ViT-B-32", help="the architecture to re-index with (default ViT-B-32)")
    args = parser.parse_args(argv)
    quiet_logs()
    from ragkit.config import Settings
    from ragkit.ingest.embedder import ClipEmbedder, make_random_checkpoint
    from ragkit.library import Library

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
                      ["phase", "seconds", "searches", "p50 ms", "p95 ms", "max ms", "errors", "empty"])
        samples = _Searches(library, some)
        marks = {"start": time.perf_counter()}
        time.sleep(3)
        marks["reindex"] = time.perf_counter()
        report = _reindex_marking_the_switch(library, args.to, str(target), embedder, marks)
        marks["returned"] = time.perf_counter()
        time.sleep(3)
        marks["end"] = time.perf_counter()
        samples.stop()
        phases = [("before", "start", "reindex"), ("fill + verify", "reindex", "switch"),
                  ("switch", "switch", "switched"), ("settle + catch-up", "switched", "returned"),
                  ("after", "returned", "end")]
        for name, begin, finish in phases:
            seen = samples.between(marks[begin], marks[finish])
            latencies = [s.latency for s in seen if s.error is None]
            table.add(name, f"{marks[finish] - marks[begin]:.1f}", len(seen), ms(percentile(latencies, 50)),
                      ms(percentile(latencies, 95)), ms(max(latencies) if latencies else float("nan")),
                      sum(s.error is not None for s in seen), sum(s.empty for s in seen))
            for problem in [s.error for s in seen if s.error][:3]:
                table.note(f"{name}: {problem}")
        ceiling = _ceiling(embedder)
        table.note(f"reindex: {report.embedded} embedded at {report.images_per_second:.1f} images/s over its "
                   f"{report.seconds:.1f} s (the model already loaded; includes the comparison passes, the check "
                   f"of {report.verified} assets and a 1 s settle); the same model's forward on ready tensors: "
                   f"{ceiling:.1f} images/s")
        table.note("searches (text, similar-image, tag-filtered, in turn) run without a pause on the library object "
                   "the reindex started from (the old index), in a thread beside it; a search counts in the phase "
                   "it overlaps; 'switch' is marking the old index superseded, the new one complete and writing "
                   "the record")
        show(table)
    finally:
        library.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
