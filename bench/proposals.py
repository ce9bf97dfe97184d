"""Measured prototypes of changes proposed for the core (not used by ragkit itself).

They live here so the benchmark can show their effect next to what ragkit does today; the
report and docs/performance.md describe each one for whoever changes the core.
"""
from __future__ import annotations

import numpy as np


class InMemoryExactIndex:
    """Exact cosine top-k over a float32 matrix held by the process (the 'numpy' reference).

    The proposal for the embedded case: Milvus Lite allows one process per file, so a matrix
    kept next to the AssetStore and updated on every upsert/delete is coherent; Milvus stays
    the system of record (and the path for filtered searches and for a Milvus server).
    The product runs in torch, on the thread pool the model already uses: numpy's OpenBLAS
    threads spin after each call and would slow the next model call on two cores.
    """

    def __init__(self, ids: list[str], vectors: np.ndarray) -> None:
        import torch
        self.ids = list(ids)
        self.matrix = torch.from_numpy(np.array(vectors, dtype=np.float32))  # own, writable copy

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        import torch
        with torch.inference_mode():
            scores = self.matrix @ torch.from_numpy(np.asarray(query, dtype=np.float32))
            values, indices = torch.topk(scores, min(k, len(self.ids)))
        return [(self.ids[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]


def pipelined_ingest_class():
    """IngestPipeline with three structural changes, to measure what they are worth:

    1. a writer thread: blob writes (with fsync) and the Milvus upsert of batch i run while
       the model embeds batch i+1, instead of between batches on the model's thread;
    2. one chunk of look-ahead: chunk k+1 is read, hashed, deduplicated and queued for
       decoding while chunk k is still being embedded, so the decode workers never idle at
       a chunk boundary;
    3. a ramp-up first batch of 8: the model starts after 8 images are ready, not 32.
    Same outcomes and report as IngestPipeline (order of `added` included) for one run at a time:
    it leaves out ragkit's claims between concurrent runs (ingest._Claims), which cost nothing
    when runs do not overlap.
    """
    import time
    from concurrent.futures import Future, ThreadPoolExecutor

    from ragkit.ingest.pipeline import IngestPipeline, IngestProgress, _clock, _load, _Loaded, _Prepared
    from ragkit.records import SOURCE_UPLOAD, Asset, IngestReport, Rejected
    from ragkit.tags import normalise_tags

    class PipelinedIngest(IngestPipeline):
        first_batch = 8

        def _plans(self, sources, pool, tags, source, provenance):
            """Yield each chunk's outcomes (futures in input order); chunk k+1 is planned ahead."""
            seen: set[str] = set()
            chunk_size = self.batch_size * 4
            chunks = [sources[i:i + chunk_size] for i in range(0, len(sources), chunk_size)]

            def plan(chunk):
                loaded = list(pool.map(_load, chunk))
                candidates = [item for item in loaded if isinstance(item, _Loaded)]
                stored = self.store.existing([item.sha256 for item in candidates])
                pending = []
                for item in loaded:
                    if isinstance(item, Rejected):
                        pending.append(item)
                    elif item.sha256 in stored or item.sha256 in seen:
                        pending.append((item.label, item.sha256))
                    else:
                        seen.add(item.sha256)
                        pending.append(pool.submit(self._prepare, item, tags, source, provenance))
                return pending

            with ThreadPoolExecutor(1, thread_name_prefix="ragkit-plan") as planner:
                ahead = planner.submit(plan, chunks[0]) if chunks else None
                for index in range(len(chunks)):
                    pending = ahead.result()
                    ahead = planner.submit(plan, chunks[index + 1]) if index + 1 < len(chunks) else None
                    for entry in pending:
                        yield entry.result() if isinstance(entry, Future) else entry

        def run(self, sources, *, tags=(), source=SOURCE_UPLOAD, provenance=None, on_progress=None,
                pre_rejected=()):
            import torch
            started = time.perf_counter()
            report = IngestReport(rejected=list(pre_rejected))
            clean_tags = normalise_tags(tags)
            total = len(sources) + len(pre_rejected)
            state = {"done": len(pre_rejected)}
            batch: list[_Prepared] = []
            writes: list[Future] = []

            def progress(current):
                if on_progress:
                    on_progress(IngestProgress(state["done"], total, len(report.added), len(report.duplicates),
                                               len(report.rejected), current))

            def write(prepared, vectors):
                assets = []
                for item in prepared:
                    self.blobs.put(item.asset.sha256, item.loaded.data, item.thumbnail)
                    created_at = item.asset.created_at or _clock.next()  # imports keep their date, as in ragkit
                    assets.append(Asset(**{**item.asset.__dict__, "created_at": created_at}))
                self.store.upsert(assets, vectors)
                report.added.extend((p.loaded.label, a) for p, a in zip(prepared, assets))
                state["done"] += len(prepared)
                progress(prepared[-1].loaded.filename)

            target = min(self.first_batch, self.batch_size)
            with ThreadPoolExecutor(1, thread_name_prefix="ragkit-write") as writer, \
                    ThreadPoolExecutor(self.workers, thread_name_prefix="ragkit-ingest") as pool:
                def flush_batch():
                    if batch:
                        vectors = self.embedder.embed_tensors(torch.stack([p.tensor for p in batch]))
                        for p in batch:
                            p.tensor = None  # free the tensor early; the bytes go to the writer
                        writes.append(writer.submit(write, list(batch), vectors))
                        batch.clear()

                for outcome in self._plans(list(sources), pool, clean_tags, source, provenance):
                    if isinstance(outcome, _Prepared):
                        batch.append(outcome)
                        if len(batch) >= target:
                            flush_batch()
                            target = self.batch_size
                        continue
                    if isinstance(outcome, Rejected):
                        report.rejected.append(outcome)
                        label = outcome.path
                    else:
                        report.duplicates.append(outcome)
                        label = outcome[0]
                    state["done"] += 1
                    progress(label)
                flush_batch()
                for future in writes:
                    future.result()
            if report.added:
                self.store.flush()
            report.seconds = time.perf_counter() - started
            return report

    return PipelinedIngest
