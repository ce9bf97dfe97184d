"""Batch promo jobs: one brief x many products, run in the background, resumable after a kill.

Each product asset is the first reference of its own request; the job's other references (--with-ref)
and its brand kit's follow in every request; each product gets N variations, one request ("take")
each. Takes run on a thread pool with a concurrency cap. A 429 from Gemini pauses *every* worker for
the server's RetryInfo delay (``Backoff``, the generator's sleep), so the quota window is respected by
the whole job, not retried into by the other workers; after the retries a take is marked failed with
the reason, like a refusal (safety, text only), and the others go on.

The job lives on disk, next to the blobs: ``RAGKIT_DATA_DIR/jobs/<id>/state.json`` (parameters and
every take's status, result file, usage, cost, review) and ``images/``. A take's image is written
before its state says "done", and every state change is a read-modify-write of state.json under an
advisory lock, written atomically: a kill at any point loses at most the requests in flight, and
running the same job again (the same parameters give the same id, or ``--resume ID``) sends only the
takes that are not done. A second process can't run a job that is running: the runner holds
``run.lock`` (released by the OS if the runner dies, so a killed job can be resumed at once).

Review: Approve saves a take's image to the library with its provenance (brief, model, references,
kit, job id, usage, cost) and the tag ``batch-<id>``; Reject drops the image. Approving twice, or after
a kill between the save and the state write, never stores the image twice (an asset's id is its hash).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import shutil
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ragkit.storage.blobs import write_atomic
from ragkit.errors import (AssetNotFoundError, BatchError, GenerationError, InvalidApiKeyError, InvalidImageError,
                      MissingApiKeyError, ModelGoneError)
from ragkit.storage.filters import validate_sha256
from ragkit.ingest.images import EXTENSION_BY_MIME
from ragkit.ingest.pipeline import Provenance
from ragkit.messages import user_message
from ragkit.records import Asset
from ragkit.studio.cost import PriceTable, prices_for, record_generation, sum_costs
from ragkit.studio.generation import ImageGenerator, ReferenceImage
from ragkit.studio.kits import Kit, check_usable, references_with_kit
from ragkit.studio.models import check_output, default_model, model_info, normalise_size, too_many_references
from ragkit.studio.references import load_references
from ragkit.studio.usability import not_usable_reason

log = logging.getLogger(__name__)

JOBS_DIR = "jobs"
STATE_FILE = "state.json"
FORMAT = 1
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 16
MAX_PRODUCTS = 1000
MAX_VARIATIONS = 8
BATCH_RETRIES = 5       # per take, on 429 / 5xx / dropped connections
BACKOFF_S = 1.0         # first back-off without a server delay (then doubled, up to a minute)

PENDING, DONE, FAILED = "pending", "done", "failed"
APPROVED, REJECTED = "approved", "rejected"


def status_counts(entries: Sequence[Any]) -> dict[str, int]:
    """How many of a job's entries (takes, describe items: anything with a `status`) are in each state."""
    counts = {PENDING: 0, DONE: 0, FAILED: 0}
    for entry in entries:
        counts[entry.status] += 1
    return counts


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class BatchSpec:
    """What a job makes. Its identity (the job id) is a hash of how it was asked for."""
    brief: str                       # as typed
    prompt: str                      # what is sent: the brief with the kit's style and words to avoid
    products: tuple[str, ...]        # product asset ids, in order
    with_refs: tuple[str, ...]       # added to every request, after the product
    variations: int
    model: str
    aspect: str | None
    selector: dict                   # how products were chosen: {"tag": T} or {"ref_each": [ids]}
    kit: dict | None = None          # the kit as it was when the job was made (Kit.to_dict())
    skipped: tuple[dict, ...] = ()   # products left out: {"reference", "reason"}
    salt: str = ""                   # set by --new: a job of its own, even with the same parameters
    size: str | None = None          # image_config.image_size (None: the model's default)

    def identity(self) -> str:
        key = {"brief": self.brief, "selector": self.selector, "with_refs": list(self.with_refs),
               "kit": (self.kit or {}).get("name"), "variations": self.variations, "model": self.model,
               "aspect": self.aspect, "salt": self.salt}
        if self.size:  # absent from older jobs' keys: their ids stay the same
            key["size"] = self.size
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:10]

    @property
    def kit_references(self) -> tuple[str, ...]:
        return tuple((self.kit or {}).get("reference_ids", ()))

    def references_for(self, product: str) -> list[str]:
        """One request's references: the product first, then --with-ref, then the kit's."""
        return list(dict.fromkeys([product, *self.with_refs, *self.kit_references]))


@dataclass
class Take:
    """One request: a product's n-th variation, and what became of it."""
    product: str
    variation: int                 # 0-based
    status: str = PENDING          # pending | done | failed
    image: str = ""                # file name in the job's images/ folder
    mime: str = ""
    reason: str = ""               # why it failed
    usage: dict = field(default_factory=dict)
    cost_usd: float | None = None
    seconds: float = 0.0
    review: str = ""               # "" | approved | rejected
    saved: str = ""                # the library asset, once approved

    @property
    def key(self) -> tuple[str, int]:
        return self.product, self.variation


@dataclass
class BatchJob:
    id: str
    spec: BatchSpec
    takes: list[Take]
    created_at: int
    error: str = ""                # why the last run stopped early (e.g. the key was refused)
    folder: Path = Path()

    @property
    def tag(self) -> str:
        """The tag its approved images get in the library."""
        return f"batch-{self.id}"

    def take(self, product: str, variation: int) -> Take:
        for take in self.takes:
            if take.key == (product, variation):
                return take
        raise BatchError(f"Job {self.id} has no variation {variation + 1} of product {product[:12]}….")

    def counts(self) -> dict[str, int]:
        return status_counts(self.takes)

    @property
    def finished(self) -> bool:
        return all(take.status != PENDING for take in self.takes)

    @property
    def cost_usd(self) -> float | None:
        """What the done takes cost; None (unknown) when the model has no price."""
        return sum_costs([t.cost_usd for t in self.takes if t.status == DONE])

    def products(self) -> list[tuple[str, list[Take]]]:
        """Takes grouped by product, in the job's order."""
        return [(product, [t for t in self.takes if t.product == product]) for product in self.spec.products]

    def image_path(self, take: Take) -> Path:
        return self.folder / "images" / take.image

    def to_dict(self) -> dict:
        return {"format": FORMAT, "id": self.id, "created_at": self.created_at, "error": self.error,
                "spec": {**asdict(self.spec), "products": list(self.spec.products),
                         "with_refs": list(self.spec.with_refs), "skipped": list(self.spec.skipped)},
                "takes": [asdict(t) for t in self.takes]}


def _job_from_dict(data: dict, folder: Path) -> BatchJob:
    spec = data["spec"]
    spec = BatchSpec(**{**spec, "products": tuple(spec["products"]), "with_refs": tuple(spec["with_refs"]),
                        "skipped": tuple(spec.get("skipped", ()))})
    return BatchJob(id=data["id"], spec=spec, takes=[Take(**t) for t in data["takes"]],
                    created_at=int(data["created_at"]), error=data.get("error", ""), folder=folder)


def item_status(takes: Sequence[Take]) -> str:
    """A product's state over its variations: pending, done, failed, or partial (some failed)."""
    statuses = {t.status for t in takes}
    if PENDING in statuses:
        return PENDING
    return statuses.pop() if len(statuses) == 1 else "partial"


# ----------------------------------------------------------------------------- on disk
class JobStore:
    """The batch jobs of one library: RAGKIT_DATA_DIR/jobs/<id>/.

    Other resumable jobs (ragkit.studio.describe) subclass it with their own folder, noun and record."""
    SUBDIR = JOBS_DIR
    NOUN = "batch job"
    COMMAND = "batch"

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / self.SUBDIR

    @staticmethod
    def _from_dict(data: dict, folder: Path):
        return _job_from_dict(data, folder)

    def job_folder(self, job_id: str) -> Path:
        if not (len(job_id) == 10 and all(c in "0123456789abcdef" for c in job_id)):
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

    def load(self, job_id: str) -> BatchJob:
        path = self.job_folder(job_id) / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BatchError(f"No {self.NOUN} {job_id} in {self.folder} (was it deleted?).") from None
        except ValueError as exc:
            raise BatchError(f"The state of {self.NOUN} {job_id} ({path}) is damaged ({exc}). Delete the folder "
                             "to start the job again.") from None
        return self._from_dict(data, path.parent)

    def list(self) -> list[BatchJob]:
        """Every job, newest first; a damaged one is skipped (and logged)."""
        jobs = []
        for path in self.folder.glob(f"*/{STATE_FILE}") if self.folder.is_dir() else []:
            try:
                jobs.append(self.load(path.parent.name))
            except (BatchError, KeyError, TypeError) as exc:
                log.warning("skipping the %s in %s: %s", self.NOUN, path.parent, exc)
        return sorted(jobs, key=lambda job: job.created_at, reverse=True)

    def create(self, spec: BatchSpec) -> BatchJob:
        """The job for `spec`: the existing one if these parameters made one before, else a new one."""
        job_id = spec.identity()
        with self._flock(job_id, "state.lock"):
            if self.exists(job_id):
                return self.load(job_id)
            takes = [Take(product, v) for product in spec.products for v in range(spec.variations)]
            job = BatchJob(job_id, spec, takes, int(time.time() * 1000), folder=self.job_folder(job_id))
            self._write(job)
            return job

    def update(self, job_id: str, change: Callable[[BatchJob], Any]) -> BatchJob:
        """Apply `change` to the job as it is on disk now, and write it back atomically (under the lock,
        so the runner, a reviewer in the app and one in another process never overwrite each other)."""
        with self._flock(job_id, "state.lock"):
            job = self.load(job_id)
            change(job)
            self._write(job)
            return job

    def _write(self, job: BatchJob) -> None:
        data = json.dumps(job.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        write_atomic(job.folder / STATE_FILE, data)

    def is_running(self, job_id: str) -> bool:
        """True while some process (this one included) runs the job."""
        if not self.exists(job_id):
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
        """Remove a job and its result images (approved ones stay in the library)."""
        if self.is_running(job_id):
            raise BatchError(f"{self.NOUN.capitalize()} {job_id} is running; stop it before deleting it.")
        shutil.rmtree(self.job_folder(job_id), ignore_errors=False)


def job_store(settings) -> JobStore:
    return JobStore(settings.data_dir)


# ----------------------------------------------------------------------------- making a job
def plan_batch(library, brief: str, *, tag: str | None = None, ref_each: Sequence[str] = (),
               with_refs: Sequence[str] = (), kit: Kit | None = None, variations: int = 1,
               model: str | None = None, aspect: str | None = None, new: bool = False,
               now_ms: int | None = None, size: str | None = None) -> BatchSpec:
    """The job's parameters, checked before anything is sent: products that exist and may be used
    (the others are listed as skipped), references within the model's limit, a usable kit."""
    brief = (brief or "").strip()
    if not brief:
        raise BatchError("The brief is empty: say what every product's picture should show.")
    if bool(tag) == bool(ref_each):
        raise BatchError("Choose the products either by a tag (--tag) or by id (--ref-each), not both or neither.")
    if not 1 <= variations <= MAX_VARIATIONS:
        raise BatchError(f"Ask for 1 to {MAX_VARIATIONS} variations per product (got {variations}).")
    model = default_model(model or library.settings.gemini_model)
    with_refs = tuple(dict.fromkeys(validate_sha256(s) for s in with_refs))
    if kit is not None:
        check_usable(library, kit)
    _check_shared_references(library, with_refs, now_ms)
    refs_per_request = len(references_with_kit(["product", *with_refs], kit))
    size, aspect = normalise_size(size), aspect or (kit.aspect if kit else None)
    if problem := check_output(model_info(model), aspect, size):
        raise BatchError(problem)
    if too_many := too_many_references(refs_per_request, model_info(model)):
        raise BatchError(f"Each request would carry {refs_per_request} references (the product, "
                         f"{len(with_refs)} added and {len(kit.reference_ids) if kit else 0} from the kit): {too_many}")
    candidates = (library.store.matching_ids(tags=[tag]) if tag
                  else list(dict.fromkeys(validate_sha256(s) for s in ref_each)))
    products, skipped = _usable_products(library, candidates, now_ms)
    if len(products) > MAX_PRODUCTS:
        raise BatchError(f"{len(products)} products is more than one job takes ({MAX_PRODUCTS}); split them by tag.")
    if not products:
        what = f"tagged {tag!r}" if tag else "given"
        why = f" ({'; '.join(s['reason'] for s in skipped[:3])})" if skipped else ""
        raise BatchError(f"No usable product images {what}{why}. Tag the product shots, or pass their ids with "
                         "--ref-each.")
    return BatchSpec(brief=brief, prompt=kit.prompt_for(brief) if kit else brief, products=tuple(products),
                     with_refs=with_refs, variations=variations, model=model,
                     aspect=aspect, size=size,
                     selector={"tag": tag} if tag else {"ref_each": list(candidates)},
                     kit=kit.to_dict() if kit else None, skipped=tuple(skipped),
                     salt=hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:8] if new else "")


def _check_shared_references(library, with_refs: Sequence[str], now_ms: int | None) -> None:
    found = {a.sha256: a for a in library.get_many(list(with_refs))}
    for sha in with_refs:
        asset = found.get(sha)
        reason = ("it is not in the library" if asset is None else "it is in the trash" if asset.trashed
                  else not_usable_reason(asset, now_ms))
        if reason:
            raise BatchError(f"The reference {sha[:12]}… added to every request can't be used: {reason}.")


def _usable_products(library, candidates: Sequence[str], now_ms: int | None) -> tuple[list[str], list[dict]]:
    """The candidates that may be products, in order, and the others with the reason."""
    found = {a.sha256: a for a in library.get_many(list(candidates))}
    products, skipped = [], []
    for sha in candidates:
        asset: Asset | None = found.get(sha)
        reason = ("not in the library" if asset is None else "in the trash" if asset.trashed
                  else not_usable_reason(asset, now_ms))
        if reason:
            skipped.append({"reference": sha, "reason": reason})
        else:
            products.append(sha)
    return products, skipped


# ----------------------------------------------------------------------------- running a job
class Backoff:
    """Shared by a job's workers: a 429's retry delay pauses them all (the generator's `sleep`)."""

    def __init__(self, stop: threading.Event) -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self._stop = stop

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)
        self.wait()

    def wait(self) -> None:
        """Return once no back-off is pending (or the job is being stopped)."""
        while (remaining := self._until - time.monotonic()) > 0 and not self._stop.is_set():
            self._stop.wait(min(remaining, 0.5))


@dataclass
class BatchRun:
    """A job being run in this process: live numbers for the progress display, and a stop switch."""
    job_id: str
    total: int
    to_do: int                     # takes pending when this run started
    started_at: float = field(default_factory=time.monotonic)
    finished_this_run: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    _sending: set[tuple[str, int]] = field(default_factory=set)  # the takes whose request is on its way
    _sending_lock: threading.Lock = field(default_factory=threading.Lock)

    def sending(self) -> frozenset[tuple[str, int]]:
        """The takes whose request is on its way now (the others pending are queued)."""
        with self._sending_lock:
            return frozenset(self._sending)

    def mark_sending(self, take: "Take", on_its_way: bool) -> None:
        with self._sending_lock:
            (self._sending.add if on_its_way else self._sending.discard)(take.key)

    def stop(self) -> None:
        """Send no more requests; those in flight finish and are kept."""
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set() and not self.done

    def eta_s(self) -> float | None:
        """Seconds left at this run's pace; None until a take has finished."""
        if not self.finished_this_run:
            return None
        pace = (time.monotonic() - self.started_at) / self.finished_this_run
        return max(0.0, (self.to_do - self.finished_this_run) * pace)


_runs: dict[str, BatchRun] = {}   # the jobs this process runs now
_runs_lock = threading.Lock()


def live_run(job_id: str) -> BatchRun | None:
    """The run of this job in this process, if there is one."""
    with _runs_lock:
        return _runs.get(job_id)


def batch_generator(settings, sleep: Callable[[float], None], backoff_s: float = BACKOFF_S) -> ImageGenerator:
    """A Gemini client of its own for one run: its retries sleep on the job's shared back-off."""
    return ImageGenerator(settings.gemini_api_key, model=settings.gemini_model, base_url=settings.gemini_base_url,
                          max_retries=BATCH_RETRIES, backoff_s=backoff_s, sleep=sleep)


def run_batch(store: JobStore, job_id: str, library, *, concurrency: int = DEFAULT_CONCURRENCY,
              approve: bool = False, retry_failed: bool = False, backoff_s: float = BACKOFF_S,
              on_progress: Callable[[int, int], None] | None = None,
              on_run: Callable[[BatchRun], None] | None = None) -> BatchJob:
    """Send the job's unfinished takes (and, with retry_failed, the failed ones) and wait for them.

    Completed takes are never sent again. With `approve` (the CLI's --approve), the job's images not yet
    approved or rejected are saved to the library once the takes are sent; otherwise they wait for review. `on_run` gets the live BatchRun
    (to stop it). Raises BatchError if another process runs the job, or its references can't be sent.
    """
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise BatchError(f"Run 1 to {MAX_CONCURRENCY} requests at a time (got {concurrency}).")
    settings = library.settings
    prices = prices_for(settings)  # a malformed RAGKIT_PRICES stops here, before anything is paid
    with store.running(job_id):
        if retry_failed:
            store.update(job_id, _reset_failed)
        job = store.update(job_id, lambda j: setattr(j, "error", ""))
        to_do = [t for t in job.takes if t.status == PENDING]
        run = BatchRun(job_id, len(job.takes), len(to_do))
        if on_run:
            on_run(run)
        with _runs_lock:
            _runs[job_id] = run
        try:
            if to_do:
                _send(store, job, to_do, library, prices, run, concurrency, backoff_s, on_progress)
            if approve:
                approve_all(store, job_id, library)
        finally:
            run.done = True
            with _runs_lock:
                _runs.pop(job_id, None)
    return store.load(job_id)


def _reset_failed(job: BatchJob) -> None:
    for take in job.takes:
        if take.status == FAILED:
            take.status, take.reason = PENDING, ""


def _send(store: JobStore, job: BatchJob, to_do: list[Take], library, prices: PriceTable, run: BatchRun,
          concurrency: int, backoff_s: float, on_progress: Callable[[int, int], None] | None) -> None:
    spec = job.spec
    shared = _load_shared(library, spec)
    backoff = Backoff(run.stop_event)
    finished = [len(job.takes) - len(to_do)]
    lock = threading.Lock()
    progress = on_progress or (lambda done, total: None)
    progress(finished[0], len(job.takes))

    def one(take: Take) -> None:
        if run.stop_event.is_set():
            return
        backoff.wait()
        if run.stop_event.is_set():
            return
        run.mark_sending(take, True)
        ended = False
        try:
            ended = _run_take(store, job, take, library, generator, prices, shared, run)
        finally:
            run.mark_sending(take, False)
            with lock:
                if ended:
                    run.finished_this_run += 1
                    finished[0] += 1
                    progress(finished[0], len(job.takes))

    with batch_generator(library.settings, backoff.pause, backoff_s) as generator, \
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"batch-{job.id}") as pool:
        futures = [pool.submit(one, take) for take in to_do]
        try:
            wait(futures)
        except BaseException:  # Ctrl-C: send nothing more; what is in flight finishes and is kept
            run.stop()
            raise
        for future in futures:
            if future.exception() is not None:
                raise future.exception()  # a bug in our own code: not a take's failure


def _load_shared(library, spec: BatchSpec) -> list[ReferenceImage]:
    """The references every request carries (after its product), read once per run."""
    try:
        return load_references(library, list(dict.fromkeys([*spec.with_refs, *spec.kit_references])))
    except (AssetNotFoundError, InvalidImageError) as exc:
        raise BatchError(f"The references added to every request can't be read any more: {exc} The job is "
                         "kept; restore the image, or start a new batch without it.") from None


_FATAL = (InvalidApiKeyError, MissingApiKeyError, ModelGoneError)  # every other take would fail the same way


def _run_take(store: JobStore, job: BatchJob, take: Take, library, generator: ImageGenerator,
              prices: PriceTable, shared: list[ReferenceImage], run: BatchRun) -> bool:
    """Send one take and record its outcome; False if it stays pending (the whole job had to stop)."""
    spec = job.spec
    started = time.monotonic()
    try:
        product = load_references(library, [take.product])
        others = [ref for ref in shared if ref.sha256 != take.product]  # as spec.references_for(product)
        generation = generator.generate(spec.prompt, [*product, *others], model=spec.model,
                                        aspect_ratio=spec.aspect, variations=1, size=spec.size)
    except _FATAL as exc:
        run.stop()  # the take stays pending: fixed key, Resume finishes the job
        store.update(job.id, lambda j: setattr(j, "error", user_message(exc, library.settings)))
        return False
    except (GenerationError, AssetNotFoundError, InvalidImageError) as exc:
        reason = user_message(exc, library.settings)
        store.update(job.id, lambda j: _mark(j, take, status=FAILED, reason=reason,
                                             seconds=time.monotonic() - started))
        return True
    image = generation.images[0]
    name = f"{take.product[:12]}-{take.variation + 1}{EXTENSION_BY_MIME.get(image.mime, '.png')}"
    write_atomic(job.folder / "images" / name, image.data)  # before the state says done: a kill re-sends it
    cost = record_generation(library.settings, prices, generation.model, generation.usage, source="batch",
                             job=job.id, kit=(spec.kit or {}).get("name"), size=spec.size)
    store.update(job.id, lambda j: _mark(j, take, status=DONE, image=name, mime=image.mime,
                                         usage=dict(generation.usage), cost_usd=cost,
                                         seconds=time.monotonic() - started))
    return True


def _mark(job: BatchJob, take: Take, **changes: Any) -> None:
    current = job.take(*take.key)
    for name, value in changes.items():
        setattr(current, name, value)


# ----------------------------------------------------------------------------- review
def approve(store: JobStore, job_id: str, product: str, variation: int, library) -> Asset:
    """Save one take's image to the library with its provenance and the job's tag (once)."""
    job = store.load(job_id)
    take = job.take(product, variation)
    if take.saved:
        existing = library.store.get(take.saved)
        if existing is not None:
            return existing
    if take.status != DONE or take.review == REJECTED:
        raise BatchError(f"Variation {variation + 1} of product {product[:12]}… has no image to approve "
                         f"({take.reason or take.review or take.status}).")
    asset = library.save_generated(job.image_path(take).read_bytes(), take.mime, _provenance(job, take),
                                   tags=[job.tag], name=_saved_name(library, job, take))
    store.update(job_id, lambda j: _mark(j, take, review=APPROVED, saved=asset.sha256))
    return asset


def approve_all(store: JobStore, job_id: str, library) -> list[Asset]:
    """Approve every image not yet approved or rejected."""
    job = store.load(job_id)
    return [approve(store, job_id, t.product, t.variation, library)
            for t in job.takes if t.status == DONE and not t.saved and t.review != REJECTED]


def reject(store: JobStore, job_id: str, product: str, variation: int) -> None:
    """Drop one take's image (an approved one stays in the library)."""
    def drop(job: BatchJob) -> None:
        take = job.take(product, variation)
        if take.status == DONE and not take.saved:
            job.image_path(take).unlink(missing_ok=True)
            take.review = REJECTED
    store.update(job_id, drop)


def _provenance(job: BatchJob, take: Take) -> Provenance:
    spec = job.spec
    details = {"job": job.id, "brief": spec.brief, "variation": take.variation + 1,
               "usage": dict(take.usage), "cost_usd": take.cost_usd}
    if spec.size:
        details["size"] = spec.size
    if spec.kit:
        details.update({"kit": spec.kit["name"], "kit_version": spec.kit["version"]})
    return Provenance(spec.prompt, spec.model, tuple(spec.references_for(take.product)), details=details)


def _saved_name(library, job: BatchJob, take: Take) -> str:
    """'batch-3fa2c1d0ab-red-sneaker-2.png': the job, the product's name, the variation."""
    product = library.store.get(take.product)
    stem = Path(product.filename).stem[:40] if product else take.product[:12]
    return f"{job.tag}-{stem}-{take.variation + 1}{EXTENSION_BY_MIME.get(take.mime, '.png')}"


def approved_zip(job: BatchJob) -> bytes:
    """The approved images of a job and a manifest.json (brief, model, kit, and per image its product)."""
    buffer = io.BytesIO()
    manifest = {"job": job.id, "brief": job.spec.brief, "prompt": job.spec.prompt, "model": job.spec.model,
                "kit": job.spec.kit and {k: job.spec.kit[k] for k in ("name", "version")}, "images": []}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs don't compress further
        for take in job.takes:
            path = job.image_path(take)
            if take.review != APPROVED or not path.is_file():
                continue
            archive.write(path, take.image)
            manifest["images"].append({"file": take.image, "product": take.product, "variation": take.variation + 1,
                                       "sha256": take.saved, "cost_usd": take.cost_usd})
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    return buffer.getvalue()


# ----------------------------------------------------------------------------- reporting
def job_report(job: BatchJob) -> dict:
    """The JSON `batch --json` prints: the job, one item per product, the cost so far."""
    items = []
    for product, takes in job.products():
        failed = [t.reason for t in takes if t.status == FAILED]
        items.append({"reference": product, "status": item_status(takes),
                      "images": [_image_entry(job, t) for t in takes if t.status == DONE and t.review != REJECTED],
                      "reason": failed[0] if failed else None})
    for skipped in job.spec.skipped:
        items.append({"reference": skipped["reference"], "status": "skipped", "images": [],
                      "reason": skipped["reason"]})
    return {"job": job.id, "tag": job.tag, "brief": job.spec.brief, "model": job.spec.model,
            "kit": job.spec.kit and {k: job.spec.kit[k] for k in ("name", "version")},
            "error": job.error or None, "items": items, "cost_usd": job.cost_usd}


def _image_entry(job: BatchJob, take: Take) -> dict:
    entry: dict[str, Any] = {"path": str(job.image_path(take)), "variation": take.variation + 1,
                             "cost_usd": take.cost_usd}
    if take.saved:
        entry["sha256"] = take.saved
    return entry

