"""Ingest throughput: the original notebook's loop, the model's ceiling, and ragkit's pipeline.

(a) naive   - the notebook: for each file Image.open().convert('RGB'), preprocess, encode a
              batch of one, normalise, insert one row into a Milvus Lite collection.
(b) ceiling - the model forward alone, batched, on ready tensors (no decode, no I/O).
(c) ragkit  - Library.ingest_paths on a fresh library: hash, dedup, decode, validate,
              thumbnail, batched embed, atomic blob writes, upsert, flush.
All three use the same random-weight ViT-B-32 (the same compute as the real model),
loaded once outside the timed region.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.common import TMP_DIR, Table, bench_settings, shared_embedder
from bench.synth import folder_of, jpeg_files

KIND_LABEL = {"800x600": "800x600 JPEG", "24mp": "24 MP JPEG (6000x4000)"}


def naive_loop(files: list[Path], workdir: Path) -> float:
    """The original notebook, timed end to end (model already loaded). Returns images/s."""
    import torch
    from PIL import Image

    from ragkit.storage.connection import connect, disconnect
    embedder = shared_embedder()
    model, preprocess = embedder._model, embedder._preprocess  # noqa: SLF001 - the notebook used them raw
    uri = str(workdir / "naive.db")
    client = connect(uri)  # a plain MilvusClient; disconnect() also frees the Lite file
    client.create_collection("notebook", dimension=embedder.dim, metric_type="COSINE")
    try:
        start = time.perf_counter()
        for i, path in enumerate(files):
            image = Image.open(path).convert("RGB")
            pixels = preprocess(image).unsqueeze(0)
            with torch.no_grad():
                features = model.encode_image(pixels)
                features = features / features.norm(dim=-1, keepdim=True)
            client.insert("notebook", [{"id": i, "vector": features[0].tolist(), "filename": path.name}])
        client.flush("notebook")
        elapsed = time.perf_counter() - start
    finally:
        disconnect(client, uri)
    return len(files) / elapsed


def model_ceiling(count: int, batch_size: int) -> float:
    """The batched forward pass on random ready tensors, through ragkit's embedder. images/s."""
    import torch
    embedder = shared_embedder()
    size = embedder.image_size
    batches = max(2, -(-count // batch_size))
    tensors = torch.randn(batch_size, 3, size, size)
    embedder.embed_tensors(tensors)  # warm-up: first call allocates
    start = time.perf_counter()
    for _ in range(batches):
        embedder.embed_tensors(tensors)
    return batches * batch_size / (time.perf_counter() - start)


def ragkit_ingest(files: list[Path], workdir: Path, name: str, proposal: bool = False,
                  **pipeline_options) -> tuple[float, object]:
    """Library.ingest_paths on a fresh library (or the proposed pipeline). Returns (images/s, report)."""
    from ragkit.ingest.pipeline import collect_sources
    from ragkit.library import Library
    folder = folder_of(files, f"{name}-input")
    data_dir = workdir / f"{name}-data"
    library = Library.open(bench_settings(data_dir), embedder=shared_embedder())
    try:
        start = time.perf_counter()
        if proposal:
            from bench.proposals import pipelined_ingest_class
            pipeline = pipelined_ingest_class()(library.store, library.blobs, library.embedder,
                                                max_pixels=library.settings.max_image_pixels, **pipeline_options)
            found, missing = collect_sources([folder])
            report = pipeline.run(found, pre_rejected=missing)
        else:
            report = library.ingest_paths([folder], **pipeline_options)
        elapsed = time.perf_counter() - start
    finally:
        library.close()
    if report.rejected or len(report.added) != len(files):
        raise RuntimeError(f"ragkit ingest did not add every file: {report.rejected[:3]}")
    return len(files) / elapsed, report


def _workdir(name: str) -> Path:
    path = TMP_DIR / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def run(counts: dict[str, int], repeat: int = 1, log=print) -> list[Table]:
    from ragkit.ingest.pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS

    inputs = {kind: jpeg_files(kind, count, log) for kind, count in counts.items() if count > 0}
    shared_embedder()
    table = Table("Ingest throughput (images/s, higher is better; ViT-B-32 random weights, CPU)",
                  ["input", "images", "(a) naive loop", "(b) model ceiling", "(c) ragkit ingest",
                   "(c)/(b)", "(c)/(a)", "(p) proposed pipeline", "(p)/(b)", "(p)/(a)"])
    ceiling_count = max(64, max(counts.values()))
    for kind, files in inputs.items():
        naive, ceiling, ours, proposed = [], [], [], []
        for attempt in range(repeat):
            work = _workdir(f"ingest-{kind}-{attempt}")
            log(f"  ingest {kind} (run {attempt + 1}/{repeat}): naive loop over {len(files)} files ...")
            naive.append(naive_loop(files, work))
            log(f"  ingest {kind}: model ceiling, ragkit ingest, proposed pipeline ...")
            ceiling.append(model_ceiling(ceiling_count, DEFAULT_BATCH_SIZE))
            ours.append(ragkit_ingest(files, work, f"ragkit-{kind}")[0])
            proposed.append(ragkit_ingest(files, work, f"proposal-{kind}", proposal=True)[0])
            ceiling.append(model_ceiling(ceiling_count, DEFAULT_BATCH_SIZE))
            shutil.rmtree(work, ignore_errors=True)
        a, b, c, p = max(naive), max(ceiling), max(ours), max(proposed)
        table.add(KIND_LABEL[kind], len(files), f"{a:.1f}", f"{b:.1f}", f"{c:.1f}", f"{c / b:.2f}", f"{c / a:.1f}",
                  f"{p:.1f}", f"{p / b:.2f}", f"{p / a:.1f}")
    table.note(f"ragkit defaults: batch {DEFAULT_BATCH_SIZE}, {DEFAULT_WORKERS} worker threads; "
               f"(b) is measured on {ceiling_count} random tensors in batches of {DEFAULT_BATCH_SIZE}, "
               "so it is the same for both inputs up to noise.")
    table.note("(b) is measured before and after each ragkit run"
               + (f"; best of {repeat} runs per cell (the least disturbed by other load)." if repeat > 1 else "."))
    table.note("(p) is a prototype (bench/proposals.py), not ragkit today: writer thread for blobs + upsert, "
               "one chunk of look-ahead, first batch of 8.")
    table.note("(c) includes hashing, dedup query, decode, thumbnail, blob writes with fsync, "
               "upsert and the final flush; (a) includes its inserts and a final flush.")
    return [table.finish()]


def sweep(counts: dict[str, int], batch_sizes: list[int], workers: list[int], log=print) -> list[Table]:
    """ragkit ingest over batch sizes and worker counts (how the defaults were chosen)."""
    tables = []
    shared_embedder()
    for kind, count in counts.items():
        if count <= 0:
            continue
        files = jpeg_files(kind, count, log)
        table = Table(f"Ingest tuning sweep: ragkit ingest of {count} {KIND_LABEL[kind]} (images/s)",
                      ["batch size", "workers", "ragkit ingest", "model ceiling (same batch)", "ratio"])
        for batch in batch_sizes:
            ceiling = model_ceiling(max(64, count), batch)
            for worker_count in workers:
                work = _workdir(f"sweep-{batch}-{worker_count}")
                log(f"  sweep {kind}: batch {batch}, workers {worker_count} ...")
                rate, _ = ragkit_ingest(files, work, "sweep", batch_size=batch, workers=worker_count)
                shutil.rmtree(work, ignore_errors=True)
                table.add(batch, worker_count, f"{rate:.1f}", f"{ceiling:.1f}", f"{rate / ceiling:.2f}")
        tables.append(table.finish())
    return tables
