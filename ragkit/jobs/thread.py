"""Work that outlives a page view.

A generation can take a minute. Run in the page's own script thread it would hold that user's
browser tab hostage: Streamlit only switches pages at the script's next yield point, and the
request to the model is not one. A `Job` runs the work in its own thread instead; the page
polls it (each poll is a yield point, so navigation is instant), a user can browse the Library
meanwhile, and coming back to the Studio finds the job still running or finished.

Jobs hold no reference to Streamlit: the page keeps the `Job` in its session state and reads
`progress`, `done` and `outcome()` from it.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
ProgressCallback = Callable[[int, int], None]


class Job(Generic[T]):
    """Runs `work(progress)` once in a daemon thread; `progress(done, total)` may be called from any thread."""

    def __init__(self, work: Callable[[ProgressCallback], T], *, name: str = "ragkit-job") -> None:
        self._work = work
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._progress: tuple[int, int] = (0, 0)
        self._result: T | None = None
        self._error: BaseException | None = None
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        # Daemon: a job still waiting on a slow API must not keep a stopping server alive.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @classmethod
    def start(cls, work: Callable[[ProgressCallback], T], *, name: str = "ragkit-job") -> "Job[T]":
        job = cls(work, name=name)
        job._thread.start()
        return job

    def _run(self) -> None:
        try:
            result = self._work(self._report)
            with self._lock:
                self._result = result
        except BaseException as exc:  # noqa: BLE001 - handed to whoever collects the outcome
            with self._lock:
                self._error = exc
        finally:
            self.finished_at = time.monotonic()
            self._finished.set()

    def _report(self, done: int, total: int) -> None:
        with self._lock:
            self._progress = (done, total)

    @property
    def progress(self) -> tuple[int, int]:
        """(done, total) as last reported by the work; (0, 0) before the first report."""
        with self._lock:
            return self._progress

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def elapsed(self) -> float:
        """Seconds since the start, frozen once finished."""
        return (self.finished_at or time.monotonic()) - self.started_at

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to `timeout` seconds; True once the job has finished."""
        return self._finished.wait(timeout)

    def outcome(self) -> T:
        """The work's return value, or its exception raised here. Only once `done`."""
        if not self.done:
            raise RuntimeError("the job is still running")
        with self._lock:
            if self._error is not None:
                raise self._error
            return self._result  # type: ignore[return-value]
