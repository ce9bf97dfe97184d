"""One thread per process runs every model forward; callers queue to it, queries first.

Without it each Streamlit session (and each background ingest, reindex or describe job) ran
its own forward on its own thread, every one asking torch for all the cores: eight people
searching at once meant eight forwards fighting over two cores, and throughput fell as people
were added. Here the forwards run one after another on one thread that owns the model, with
torch's threads (ragkit.ingest.cpu) giving each forward the cores:

- a query (text or example image) goes before any queued bulk work (ingest, reindex), so a
  background job delays a search by at most the one bulk chunk already running;
- text queries waiting together are coalesced into one forward (one batch of texts costs
  little more than one text), then each caller gets its own rows back;
- a call made from the worker thread itself runs at once (no deadlock).
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

log = logging.getLogger(__name__)

QUERY = 0   # someone is waiting at a page: search text, example image
BULK = 1    # ingest, reindex, describe: throughput matters, not one item's latency
MAX_COALESCED = 64  # texts per coalesced forward


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    run: Callable[[], Any] | None = field(compare=False, default=None)
    # Coalescible jobs: same key -> their items may share one call of batch_fn.
    key: Hashable = field(compare=False, default=None)
    batch_fn: Callable[[list], Sequence] | None = field(compare=False, default=None)
    items: list = field(compare=False, default_factory=list)
    future: Future = field(compare=False, default_factory=Future)


class ModelWorker:
    """A priority queue of model calls served by one daemon thread (started on first use)."""

    def __init__(self, name: str = "ragkit-model") -> None:
        self.name = name
        self._heap: list[_Job] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self.forwards = 0  # calls made on the worker thread (tests and benchmarks read it)

    # --- callers -----------------------------------------------------------------------------
    def call(self, fn: Callable[[], Any], *, priority: int = QUERY) -> Any:
        """Run fn on the worker thread, after every queued job of a more urgent priority."""
        return self.submit(fn, priority=priority).result()

    def submit(self, fn: Callable[[], Any], *, priority: int = QUERY) -> Future:
        if self.on_worker_thread():
            return _done(fn)
        return self._push(_Job(priority, next(self._seq), run=fn))

    def call_batch(self, key: Hashable, batch_fn: Callable[[list], Sequence], items: Sequence,
                   *, priority: int = QUERY) -> list:
        """batch_fn(items) on the worker thread; waiting jobs with the same key and priority are
        merged into one call (batch_fn must give one result per item, in order)."""
        items = list(items)
        if self.on_worker_thread():
            return list(batch_fn(items))
        job = _Job(priority, next(self._seq), key=key, batch_fn=batch_fn, items=items)
        return self._push(job).result()

    def on_worker_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    # --- the worker --------------------------------------------------------------------------
    def _push(self, job: _Job) -> Future:
        with self._cond:
            heapq.heappush(self._heap, job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return job.future

    def _next(self) -> list[_Job]:
        """The most urgent job, and the queued jobs it can share a forward with."""
        with self._cond:
            while not self._heap:
                self._cond.wait()
            first = heapq.heappop(self._heap)
            if first.batch_fn is None:
                return [first]
            group, count = [first], len(first.items)
            keep: list[_Job] = []
            while self._heap:
                job = heapq.heappop(self._heap)
                if job.priority == first.priority and job.batch_fn is not None and job.key == first.key \
                        and count + len(job.items) <= MAX_COALESCED:
                    group.append(job)
                    count += len(job.items)
                else:
                    keep.append(job)
            for job in keep:
                heapq.heappush(self._heap, job)
            return group

    def _serve(self) -> None:
        while True:
            group = [job for job in self._next() if job.future.set_running_or_notify_cancel()]
            if not group:
                continue
            self.forwards += 1
            if group[0].batch_fn is None:
                _settle(group[0].future, group[0].run)
            else:
                self._run_group(group)

    @staticmethod
    def _run_group(group: list[_Job]) -> None:
        if len(group) == 1:
            job = group[0]
            _settle(job.future, lambda: list(job.batch_fn(job.items)))
            return
        try:
            merged = list(group[0].batch_fn([item for job in group for item in job.items]))
        except BaseException:  # noqa: BLE001 - one caller's bad input must not sink the others
            for job in group:
                _settle(job.future, lambda job=job: list(job.batch_fn(job.items)))
            return
        start = 0
        for job in group:
            job.future.set_result(merged[start:start + len(job.items)])
            start += len(job.items)


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(result)


def _done(fn: Callable[[], Any]) -> Future:
    future: Future = Future()
    future.set_running_or_notify_cancel()
    _settle(future, fn)
    return future


_shared: ModelWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> ModelWorker:
    """The process's model worker: every embedder in the process queues to the same thread."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ModelWorker()
        return _shared
