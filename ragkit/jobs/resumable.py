"""The one runner for resumable jobs: state on disk, one runner per job, a shared back-off, a stop switch.

Batch promo jobs (ragkit.studio.batch) and describe jobs (ragkit.studio.describe) are the same machine
with a different step: a job is a list of entries (takes, items), each pending, done or failed, kept in
``RAGKIT_DATA_DIR/<kind folder>/<id>/state.json``. ``ResumableRunner.run`` sends the pending entries on a
thread pool and records each outcome as it arrives; a subclass says only what one entry does
(``process``), the way Immich's ``InferenceModel.predict`` calls its subclasses' ``_predict``.

What every job gets from here, written once:

* ``JobStore``: every state change is a read-modify-write of state.json under an advisory lock, written
  atomically, so a kill loses at most the requests in flight and a re-run sends only what is not done.
  ``run.lock`` keeps one runner per job across processes (the OS releases it if the runner dies).
  state.json is read like an upload: bounded, checked field by field; a damaged one is listed as damaged
  with what to do, and the other jobs keep working.
* ``Backoff``: a 429's RetryInfo delay pauses every worker of the job. A stop during that pause ends it at
  once: the entry waiting to retry stays pending and nothing more is sent.
* ``RunRegistry``: the jobs this process runs now, for the app's progress and its Stop button.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import shutil
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

from ragkit.errors import (AssetNotFoundError, BatchError, GenerationError, InvalidApiKeyError, InvalidImageError,
                           MissingApiKeyError, ModelGoneError, StateFileError)
from ragkit.limits import MAX_CONCURRENCY
from ragkit.storage.files import read_json_file
from ragkit.messages import user_message
from ragkit.storage.blobs import write_atomic
from ragkit.studio.cost import PriceTable, prices_for, sum_costs

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
MAX_STATE_BYTES = 64 * 2**20   # a job of 1000 products x 8 takes is ~3 MB
DEFAULT_CONCURRENCY = 4
RETRIES = 5                    # per entry, on 429 / 5xx / dropped connections
BACKOFF_S = 1.0                # first back-off without a server delay (then doubled, up to a minute)

PENDING, DONE, FAILED = "pending", "done", "failed"
STATUSES = (PENDING, DONE, FAILED)


def status_counts(entries: Sequence[Any]) -> dict[str, int]:
    """How many of a job's entries (takes, describe items: anything with a `status`) are in each state."""
    counts = {PENDING: 0, DONE: 0, FAILED: 0}
    for entry in entries:
        counts[entry.status] += 1
    return counts


class DamagedJobError(BatchError):
    """A job's state.json can't be read back; the message names the file and what to do."""


# ----------------------------------------------------------------------------- records
class ResumableJob:
    """What every job record has (a dataclass with `id`, `entries`' field, `created_at`, `error`, `folder`)."""
    ENTRIES = "entries"            # the name of the field that holds the entries ("takes", "items")
    id: str
    created_at: int
    error: str
    folder: Path

    @property
    def entries(self) -> list:
        return getattr(self, self.ENTRIES)

    def entry(self, key) -> Any:
        for entry in self.entries:
            if entry.key == key:
                return entry
        raise BatchError(f"Job {self.id} has no entry {key!r}.")

    def counts(self) -> dict[str, int]:
        return status_counts(self.entries)

    @property
    def finished(self) -> bool:
        return all(entry.status != PENDING for entry in self.entries)

    @property
    def cost_usd(self) -> float | None:
        """What its answered requests cost (an answer that was no use was billed too); None when unpriced."""
        return sum_costs([e.cost_usd for e in self.entries if e.status != PENDING and e.usage])


_TYPES = {"str": str, "int": int, "float": (int, float), "dict": dict, "list": list, "bool": bool}


def checked(record: Any) -> Any:
    """`record` (a dataclass made from state.json) if every field holds the kind of value it should;
    else ValueError naming the field. Fields default to their type; `status` must be a known one."""
    for spec in dataclasses.fields(record):
        value = getattr(record, spec.name)
        wanted = str(spec.type).split(" | ")
        if value is None and "None" in wanted:
            continue
        kinds: list[type] = []
        for name in wanted:
            kind = _TYPES.get(name.split("[")[0])
            kinds.extend(kind if isinstance(kind, tuple) else (kind,) if kind else ())
        if kinds and (not isinstance(value, tuple(kinds)) or (isinstance(value, bool) and bool not in kinds)):
            raise ValueError(f"{spec.name} is {value!r}, not a {' or '.join(wanted)}")
    if getattr(record, "status", PENDING) not in STATUSES:
        raise ValueError(f"status {record.status!r} is not one of {', '.join(STATUSES)}")
    return record


@dataclass(frozen=True)
class DamagedJob:
    """A job whose state can't be read: listed as such, with what to do; it can still be deleted."""
    id: str
    folder: Path
    message: str


# ----------------------------------------------------------------------------- on disk
class JobStore(ABC):
    """The jobs of one kind in one library: RAGKIT_DATA_DIR/<SUBDIR>/<id>/."""
    SUBDIR = "jobs"
    NOUN = "job"
    COMMAND = "batch"

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / self.SUBDIR

    @abstractmethod
    def _from_dict(self, data: dict, folder: Path) -> ResumableJob:
        """The job record from state.json (raise KeyError, TypeError or ValueError on anything amiss)."""

    @abstractmethod
    def _new(self, job_id: str, spec: Any, folder: Path) -> ResumableJob:
        """A new job for `spec`, every entry pending."""

    def job_folder(self, job_id: str) -> Path:
        if not (isinstance(job_id, str) and len(job_id) == 10 and all(c in "0123456789abcdef" for c in job_id)):
            raise BatchError(f"{job_id!r} is not a {self.NOUN} id (10 hex characters, as `{self.COMMAND}` prints).")
        return self.folder / job_id

    @contextlib.contextmanager
    def _flock(self, job_id: str, name: str, blocking: bool = True) -> Iterator[bool]:
        """An advisory lock file of the job; yields False if not blocking and someone holds it."""
        folder = self.job_folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / name, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def exists(self, job_id: str) -> bool:
        return (self.job_folder(job_id) / STATE_FILE).is_file()

    def load(self, job_id: str) -> Any:
        path = self.job_folder(job_id) / STATE_FILE
        if not path.exists() and not path.is_symlink():
            raise BatchError(f"No {self.NOUN} {job_id} in {self.folder} (was it deleted?).")
        try:  # the one bounded reader of state files: regular files only, size capped, JSON checked
            data = read_json_file(path, what=f"the {self.NOUN}'s state", fix="", max_bytes=MAX_STATE_BYTES)
        except FileNotFoundError:
            raise BatchError(f"No {self.NOUN} {job_id} in {self.folder} (was it deleted?).") from None
        except StateFileError as exc:
            raise self._damaged(job_id, path, str(exc).split(f"{path} (the {self.NOUN}'s state) ", 1)[-1].strip()[:200]) from None
        if not isinstance(data, dict):
            raise self._damaged(job_id, path, f"it holds a {type(data).__name__}, not a job")
        try:
            job = self._from_dict(data, path.parent)
        except KeyError as exc:
            raise self._damaged(job_id, path, f"{exc} is missing") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise self._damaged(job_id, path, str(exc)[:200]) from None
        if job.id != job_id:
            raise self._damaged(job_id, path, f"it says it is job {str(job.id)[:20]!r}")
        return job

    def _damaged(self, job_id: str, path: Path, why: str) -> DamagedJobError:
        return DamagedJobError(
            f"The state of {self.NOUN} {job_id} ({path}) is damaged: {why}. Its result images are kept in "
            f"{path.parent / 'images'}; restore state.json from a backup, or delete the job (Studio › Batch › "
            f"Delete, or remove the folder {path.parent}) and start it again.")

    def scan(self) -> tuple[list, list[DamagedJob]]:
        """Every job, newest first, and the damaged ones (each with what to do)."""
        jobs, damaged = [], []
        for path in sorted(self.folder.glob(f"*/{STATE_FILE}")) if self.folder.is_dir() else []:
            try:
                jobs.append(self.load(path.parent.name))
            except BatchError as exc:
                log.warning("the %s in %s is damaged: %s", self.NOUN, path.parent, exc)
                damaged.append(DamagedJob(path.parent.name, path.parent, str(exc)))
        return sorted(jobs, key=lambda job: job.created_at, reverse=True), damaged

    def list(self) -> list:
        """Every job that can be read, newest first (`scan` also gives the damaged ones)."""
        return self.scan()[0]

    def create(self, spec: Any) -> Any:
        """The job for `spec`: the existing one if these parameters made one before, else a new one."""
        job_id = spec.identity()
        with self._flock(job_id, "state.lock"):
            if self.exists(job_id):
                return self.load(job_id)
            job = self._new(job_id, spec, self.job_folder(job_id))
            self._write(job)
            return job

    def update(self, job_id: str, change: Callable[[Any], Any]) -> Any:
        """Apply `change` to the job as it is on disk now, and write it back atomically (under the lock,
        so the runner, a reviewer in the app and one in another process never overwrite each other)."""
        with self._flock(job_id, "state.lock"):
            job = self.load(job_id)
            change(job)
            self._write(job)
            return job

    def _write(self, job: Any) -> None:
        data = json.dumps(job.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        write_atomic(job.folder / STATE_FILE, data)

    def is_running(self, job_id: str) -> bool:
        """True while some process (this one included) runs the job."""
        if not (self.job_folder(job_id) / STATE_FILE).exists():
            return False
        with self._flock(job_id, "run.lock", blocking=False) as free:
            return not free

    @contextlib.contextmanager
    def running(self, job_id: str) -> Iterator[None]:
        """Hold the job's run lock, or refuse: one runner per job, across processes."""
        with self._flock(job_id, "run.lock", blocking=False) as acquired:
            if not acquired:
                raise BatchError(f"{self.NOUN.capitalize()} {job_id} is already running (in the app or another command). "
                                 "Wait for it to finish, or stop it there first.")
            yield

    def delete(self, job_id: str) -> None:
        """Remove a job (a damaged one too) and its result images (approved ones stay in the library)."""
        if self.is_running(job_id):
            raise BatchError(f"{self.NOUN.capitalize()} {job_id} is running; stop it before deleting it.")
        shutil.rmtree(self.job_folder(job_id), ignore_errors=False)


# ----------------------------------------------------------------------------- a run in this process
class Stopped(Exception):
    """Raised out of a back-off when the job is stopped: the entry waiting to retry stays pending."""


class Backoff:
    """Shared by a job's workers: a 429's retry delay pauses them all (the client's `sleep`)."""

    def __init__(self, stop: threading.Event) -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self._stop = stop

    def pause(self, seconds: float) -> None:
        """The client's sleep before a retry: every worker waits; a stop ends the wait and the retry."""
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)
        self.wait()
        if self._stop.is_set():
            raise Stopped()

    def wait(self) -> None:
        """Return once no back-off is pending (or the job is being stopped)."""
        while (remaining := self._until - time.monotonic()) > 0 and not self._stop.is_set():
            self._stop.wait(min(remaining, 0.5))


@dataclass
class JobRun:
    """A job being run in this process: live numbers for the progress display, and a stop switch."""
    job_id: str
    total: int
    to_do: int                     # entries pending when this run started
    started_at: float = field(default_factory=time.monotonic)
    finished_this_run: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    _sending: set = field(default_factory=set)  # the keys of the entries whose request is on its way
    _sending_lock: threading.Lock = field(default_factory=threading.Lock)

    def sending(self) -> frozenset:
        """The keys of the entries whose request is on its way now (the others pending are queued)."""
        with self._sending_lock:
            return frozenset(self._sending)

    def mark_sending(self, entry: Any, on_its_way: bool) -> None:
        with self._sending_lock:
            (self._sending.add if on_its_way else self._sending.discard)(entry.key)

    def stop(self) -> None:
        """Send no more requests; those in flight finish and are kept."""
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set() and not self.done

    def eta_s(self) -> float | None:
        """Seconds left at this run's pace; None until an entry has finished."""
        if not self.finished_this_run:
            return None
        pace = (time.monotonic() - self.started_at) / self.finished_this_run
        return max(0.0, (self.to_do - self.finished_this_run) * pace)


class RunRegistry:
    """The jobs of one kind this process runs now."""

    def __init__(self) -> None:
        self._runs: dict[str, JobRun] = {}
        self._lock = threading.Lock()

    def add(self, run: JobRun) -> None:
        with self._lock:
            self._runs[run.job_id] = run

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._runs.pop(job_id, None)

    def get(self, job_id: str) -> JobRun | None:
        with self._lock:
            return self._runs.get(job_id)

    def all(self) -> list[JobRun]:
        with self._lock:
            return list(self._runs.values())


# ----------------------------------------------------------------------------- the runner
FATAL = (InvalidApiKeyError, MissingApiKeyError, ModelGoneError)             # every other entry would fail the same way
NOT_ANSWERED = (GenerationError, AssetNotFoundError, InvalidImageError)  # this entry failed, the rest go on


class ResumableRunner(ABC):
    """Runs one job: sends its pending entries, `concurrency` at a time, and records each outcome.

    A subclass says what one entry does (`process`) and with which client (`client`); the loop, the stop,
    the back-off, the fatal errors, the progress and the bookkeeping are here."""
    KIND = "job"                   # the threads' name and the messages
    registry: RunRegistry

    def __init__(self, store: JobStore, library, *, concurrency: int = DEFAULT_CONCURRENCY,
                 backoff_s: float = BACKOFF_S, on_progress: Callable[[int, int], None] | None = None,
                 on_run: Callable[[JobRun], None] | None = None) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise BatchError(f"Run 1 to {MAX_CONCURRENCY} requests at a time (got {concurrency}).")
        self.store = store
        self.library = library
        self.settings = library.settings
        self.concurrency = concurrency
        self.backoff_s = backoff_s
        self.on_progress = on_progress or (lambda done, total: None)
        self.on_run = on_run
        self.prices: PriceTable | None = None

    # -- what a subclass says
    @abstractmethod
    def client(self, job: Any, sleep: Callable[[float], None]) -> ContextManager[Any]:
        """A Gemini client of its own for one run of `job`, whose retries sleep through `sleep` (the shared
        back-off)."""

    @abstractmethod
    def process(self, job: Any, entry: Any, client: Any) -> dict[str, Any]:
        """Do one entry; the changes to record on it (status and what came of it). Raise one of FATAL to
        stop the job (the entry stays pending), or one of NOT_ANSWERED to fail this entry with the reason."""

    def prepare(self, job: Any) -> None:
        """Before the first request of a run (e.g. read and check what every request carries)."""

    def after(self, job_id: str) -> None:
        """After the last request of a run, still holding the run lock (e.g. approve everything)."""

    def cleanup(self) -> None:
        """After the run, whatever happened."""

    # -- the template
    def run(self, job_id: str, *, retry_failed: bool = False) -> Any:
        """Send the job's pending entries (and, with retry_failed, the failed ones) and wait for them.

        Done entries are never sent again. Raises BatchError if another process runs the job."""
        self.prices = prices_for(self.settings)  # a malformed RAGKIT_PRICES stops here, before anything is paid
        with self.store.running(job_id):
            job = self.store.update(job_id, lambda j: _start_run(j, retry_failed))
            to_do = [entry for entry in job.entries if entry.status == PENDING]
            run = JobRun(job_id, len(job.entries), len(to_do))
            if self.on_run:
                self.on_run(run)
            self.registry.add(run)
            try:
                if to_do:
                    self.prepare(job)
                    self._send(job, to_do, run)
                self.after(job_id)
            finally:
                run.done = True
                self.registry.remove(job_id)
                self.cleanup()
        return self.store.load(job_id)

    def _send(self, job: Any, to_do: list, run: JobRun) -> None:
        backoff = Backoff(run.stop_event)
        lock = threading.Lock()
        finished = [len(job.entries) - len(to_do)]
        self.on_progress(finished[0], len(job.entries))

        def one(entry: Any) -> None:
            if run.stop_event.is_set():
                return
            backoff.wait()
            if run.stop_event.is_set():
                return
            run.mark_sending(entry, True)
            ended = False
            try:
                ended = self._one(job, entry, client, run)
            finally:
                run.mark_sending(entry, False)
                with lock:
                    if ended:
                        run.finished_this_run += 1
                        finished[0] += 1
                        self.on_progress(finished[0], len(job.entries))

        with self.client(job, backoff.pause) as client, \
                ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"{self.KIND}-{job.id}") as pool:
            futures = [pool.submit(one, entry) for entry in to_do]
            try:
                wait(futures)
            except BaseException:  # Ctrl-C: send nothing more; what is in flight finishes and is kept
                run.stop()
                raise
            for future in futures:
                if future.exception() is not None:
                    raise future.exception()  # a bug in our own code: not an entry's failure

    def _one(self, job: Any, entry: Any, client: Any, run: JobRun) -> bool:
        """One entry, its outcome recorded; False if it stays pending (stopped, or the whole job must stop)."""
        started = time.monotonic()
        try:
            changes = self.process(job, entry, client)
        except Stopped:
            return False
        except FATAL as exc:
            run.stop()  # the entry stays pending: with the key fixed, a re-run finishes the job
            message = user_message(exc, self.settings)
            self.store.update(job.id, lambda j: setattr(j, "error", message))
            return False
        except NOT_ANSWERED as exc:
            changes = {"status": FAILED, "reason": user_message(exc, self.settings)}
        changes.setdefault("seconds", time.monotonic() - started)
        self.store.update(job.id, lambda j: mark(j, entry.key, changes))
        return True


def _start_run(job: Any, retry_failed: bool) -> None:
    job.error = ""
    for entry in job.entries:
        if retry_failed and entry.status == FAILED:
            entry.status, entry.reason = PENDING, ""


def mark(job: Any, key: Any, changes: dict[str, Any]) -> None:
    """Set `changes` on the job's entry `key` (inside a JobStore.update)."""
    current = job.entry(key)
    for name, value in changes.items():
        setattr(current, name, value)
