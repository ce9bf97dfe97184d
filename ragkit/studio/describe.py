"""Describe: a caption and suggested tags for many images, in the background, resumable after a kill.

Built on the batch jobs' core (ragkit.studio.batch): the same on-disk job state (``JobStore``, here in
``RAGKIT_DATA_DIR/captions/<id>/state.json``, one runner per job across processes), the same shared
429 back-off (``Backoff``: a RetryInfo delay pauses every worker), the same live run (``BatchRun``) and
the same cost ledger (one line per answered request, source "describe").

What to describe:

* ``--all`` / ``--tag T``: the assets without a caption, skipping those whose last description failed
  (a refusal, say) unless ``retry_failed``. The library itself is the progress record: a caption is
  written to its asset as soon as it arrives, so a re-run after a kill describes only the rest.
* explicit ids (a selection, one asset's "Describe" button, ``ingest --describe``): those assets, with a
  caption or not. Run the same command again and a finished job is not sent again (``new`` makes a
  new one), an unfinished one sends only what is not done.

Work goes in jobs of at most JOB_SIZE assets, since each item's outcome rewrites the job's state file.

A caption lands on the asset (``caption``, which the keyword route searches, since ``keywords`` is
derived from it on every write) with ``details["describe"]`` (model, date, usage, cost). Suggested tags
go to ``details["suggested_tags"]``, never onto the asset until someone accepts them
(``resolve_suggested_tags``). A refusal, an unfinished or a malformed answer is recorded on the asset
(``details["describe"]`` with status "failed" and the reason) and in the job; the asset keeps working
as before, without a caption.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ragkit.errors import (AssetNotFoundError, BatchError, GenerationError, InvalidApiKeyError, InvalidImageError,
                      MissingApiKeyError, ModelGoneError)
from ragkit.storage.filters import LIVE, validate_sha256
from ragkit.messages import user_message
from ragkit.records import Asset
from ragkit.tags import normalise_tags
from ragkit.studio.batch import (BACKOFF_S, BATCH_RETRIES, DONE, FAILED, MAX_CONCURRENCY, PENDING, Backoff, BatchRun, JobStore,
                    status_counts)
from ragkit.studio.captions import CAPTION_MAX_SIDE, CaptionProblem, Captioner, Description
from ragkit.studio.cost import PriceTable, prices_for, record_generation, sum_costs
from ragkit.studio.models import bare_id
from ragkit.studio.references import prepare_reference

CAPTIONS_DIR = "captions"
FORMAT = 1
DEFAULT_CONCURRENCY = 4
JOB_SIZE = 500
DETAILS_KEY = "describe"             # asset.details[...]: how its caption came about (or why not)
SUGGESTED_KEY = "suggested_tags"     # asset.details[...]: tags offered, not applied


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class DescribeSpec:
    selector: dict                   # {"all": True}, {"tag": T} or {"ids": True}
    assets: tuple[str, ...]          # this job's assets, in order
    model: str
    skipped: tuple[dict, ...] = ()   # {"sha256", "reason"}
    salt: str = ""                   # `new`: a job of its own, even for assets described before

    def identity(self) -> str:
        key = {"selector": self.selector, "assets": sorted(self.assets), "model": self.model, "salt": self.salt}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:10]


@dataclass
class Item:
    sha256: str
    status: str = PENDING
    caption: str = ""
    suggested_tags: list[str] = field(default_factory=list)
    reason: str = ""
    usage: dict = field(default_factory=dict)
    cost_usd: float | None = None
    seconds: float = 0.0

    def to_report(self) -> dict:
        return {"sha256": self.sha256, "status": self.status, "caption": self.caption or None,
                "suggested_tags": self.suggested_tags, "reason": self.reason or None, "cost_usd": self.cost_usd}


@dataclass
class DescribeJob:
    id: str
    spec: DescribeSpec
    items: list[Item]
    created_at: int
    error: str = ""                  # why the last run stopped early (e.g. the key was refused)
    folder: Path = Path()

    def item(self, sha256: str) -> Item:
        for item in self.items:
            if item.sha256 == sha256:
                return item
        raise BatchError(f"Describe job {self.id} has no asset {sha256[:12]}….")

    def counts(self) -> dict[str, int]:
        return status_counts(self.items)

    @property
    def finished(self) -> bool:
        return all(item.status != PENDING for item in self.items)

    @property
    def cost_usd(self) -> float | None:
        """What its answered requests cost (failed answers were billed too); None when unpriced."""
        return sum_costs([i.cost_usd for i in self.items if i.status != PENDING and i.usage])

    def to_dict(self) -> dict:
        return {"format": FORMAT, "id": self.id, "created_at": self.created_at, "error": self.error,
                "spec": {**asdict(self.spec), "assets": list(self.spec.assets), "skipped": list(self.spec.skipped)},
                "items": [asdict(i) for i in self.items]}


def _job_from_dict(data: dict, folder: Path) -> DescribeJob:
    spec = data["spec"]
    spec = DescribeSpec(**{**spec, "assets": tuple(spec["assets"]), "skipped": tuple(spec.get("skipped", ()))})
    return DescribeJob(data["id"], spec, [Item(**i) for i in data["items"]], int(data["created_at"]),
                       data.get("error", ""), folder)


class DescribeStore(JobStore):
    """The describe jobs of one library: RAGKIT_DATA_DIR/captions/<id>/ (the batch jobs' store)."""
    SUBDIR = CAPTIONS_DIR
    NOUN = "describe job"
    COMMAND = "describe"
    _from_dict = staticmethod(_job_from_dict)

    def create(self, spec: DescribeSpec) -> DescribeJob:  # type: ignore[override]
        """The job for `spec`: the one these parameters made before (finished or not), else a new one."""
        job_id = spec.identity()
        with self._flock(job_id, "state.lock"):
            if self.exists(job_id):
                return self.load(job_id)
            job = DescribeJob(job_id, spec, [Item(sha) for sha in spec.assets], int(time.time() * 1000),
                              folder=self.job_folder(job_id))
            self._write(job)
            return job


def describe_store(settings) -> DescribeStore:
    return DescribeStore(settings.data_dir)


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Plan:
    specs: list[DescribeSpec]        # one per job of at most JOB_SIZE assets
    skipped: list[dict]

    @property
    def assets(self) -> int:
        return sum(len(spec.assets) for spec in self.specs)


def plan_describe(library, *, everything: bool = False, tag: str | None = None, ids: Sequence[str] = (),
                  retry_failed: bool = False, new: bool = False, model: str | None = None) -> Plan:
    """What to describe: every asset without a caption, those with a tag and no caption, or these ids
    (with `model`, or RAGKIT_CAPTION_MODEL)."""
    if sum((bool(everything), bool(tag), bool(ids))) != 1:
        raise BatchError("Say what to describe: --all, --tag TAG, or asset ids (one of them).")
    if library.needs_upgrade:
        raise BatchError("This library was made by an older ragkit and has no room for captions: run "
                         "`python -m ragkit upgrade` first.")
    model = bare_id(model or library.settings.caption_model)
    if ids:
        chosen, skipped = _explicit(library, list(dict.fromkeys(validate_sha256(s) for s in ids)))
        selector: dict = {"ids": True}
    else:
        chosen, skipped = _without_caption(library, tag, retry_failed)
        selector = {"all": True} if everything else {"tag": tag}
    salt = hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:8] if new else ""
    specs = [DescribeSpec(selector, tuple(chosen[start:start + JOB_SIZE]), model,
                          tuple(skipped) if start == 0 else (), salt)
             for start in range(0, len(chosen), JOB_SIZE)]
    return Plan(specs, skipped)


def _explicit(library, ids: list[str]) -> tuple[list[str], list[dict]]:
    found = {asset.sha256: asset for asset in library.get_many(ids)}
    chosen, skipped = [], []
    for sha in ids:
        asset = found.get(sha)
        if asset is None or asset.trashed:
            skipped.append({"sha256": sha, "reason": "not in the library" if asset is None else "in the trash"})
        else:
            chosen.append(sha)
    return chosen, skipped


def _without_caption(library, tag: str | None, retry_failed: bool) -> tuple[list[str], list[dict]]:
    """Live assets without a caption (with the tag), oldest first; those whose description failed
    before are skipped with their reason unless `retry_failed`."""
    store = library.store
    rows = store.scan(f'{LIVE} and caption == ""', fields=["created_at", "tags", "details"])
    wanted = normalise_tags([tag]) if tag else ()
    chosen, skipped = [], []
    for row in sorted(rows, key=lambda r: (r.get("created_at", 0), r["sha256"])):
        if wanted and not set(wanted) <= set(row.get("tags") or ()):
            continue
        last = (row.get("details") or {}).get(DETAILS_KEY) or {}
        if last.get("status") == FAILED and not retry_failed:
            skipped.append({"sha256": row["sha256"],
                            "reason": f"described before and failed ({last.get('reason', '?')}); --retry-failed sends it again"})
        else:
            chosen.append(row["sha256"])
    return chosen, skipped


# ----------------------------------------------------------------------------- running
_runs: dict[str, BatchRun] = {}   # the describe jobs this process runs now
_runs_lock = threading.Lock()


def live_runs() -> list[BatchRun]:
    """The describe jobs running in this process (the app shows their progress)."""
    with _runs_lock:
        return list(_runs.values())


@dataclass
class Outcome:
    """What one `describe` did, over its jobs."""
    jobs: list[DescribeJob]
    skipped: list[dict]
    error: str = ""

    @property
    def items(self) -> list[Item]:
        return [item for job in self.jobs for item in job.items]

    def counts(self) -> dict[str, int]:
        return status_counts(self.items)

    @property
    def cost_usd(self) -> float | None:
        return sum_costs([job.cost_usd for job in self.jobs])

    def to_dict(self) -> dict:
        return {"jobs": [job.id for job in self.jobs], "model": self.jobs[0].spec.model if self.jobs else None,
                "items": [item.to_report() for item in self.items], "skipped": self.skipped,
                "counts": self.counts(), "cost_usd": self.cost_usd, "error": self.error or None}


def describe(library, plan: Plan, *, concurrency: int = DEFAULT_CONCURRENCY, retry_failed: bool = False,
             backoff_s: float = BACKOFF_S, on_progress: Callable[[int, int], None] | None = None,
             on_run: Callable[[BatchRun], None] | None = None) -> Outcome:
    """Run the plan's jobs one after the other (each sends only what it has not done); stops early when
    one had to stop (a refused key, a stop from the app)."""
    store = describe_store(library.settings)
    progress = on_progress or (lambda done, total: None)
    total, before = plan.assets, 0
    outcome = Outcome([], plan.skipped)
    for spec in plan.specs:
        job = store.create(spec)
        job = run_describe(store, job.id, library, concurrency=concurrency, retry_failed=retry_failed,
                           backoff_s=backoff_s, on_run=on_run,
                           on_progress=lambda done, _total, base=before: progress(base + done, total))
        outcome.jobs.append(job)
        before += len(job.items)
        if job.error or not job.finished:
            outcome.error = job.error or "stopped before every image was described"
            break
    progress(before, total)
    return outcome


def run_describe(store: DescribeStore, job_id: str, library, *, concurrency: int = DEFAULT_CONCURRENCY,
                 retry_failed: bool = False, backoff_s: float = BACKOFF_S,
                 on_progress: Callable[[int, int], None] | None = None,
                 on_run: Callable[[BatchRun], None] | None = None) -> DescribeJob:
    """Describe the job's pending assets (and, with retry_failed, the failed ones); never one that is done."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise BatchError(f"Describe 1 to {MAX_CONCURRENCY} images at a time (got {concurrency}).")
    prices = prices_for(library.settings)  # a malformed RAGKIT_PRICES stops here, before anything is paid
    with store.running(job_id):
        job = store.update(job_id, lambda j: _start_run(j, retry_failed))
        to_do = [item for item in job.items if item.status == PENDING]
        run = BatchRun(job_id, len(job.items), len(to_do))
        if on_run:
            on_run(run)
        with _runs_lock:
            _runs[job_id] = run
        try:
            if to_do:
                _send(store, job, to_do, library, prices, run, concurrency, backoff_s, on_progress)
        finally:
            run.done = True
            with _runs_lock:
                _runs.pop(job_id, None)
            library.store.flush()  # Milvus Lite searches unsealed rows slowly
    return store.load(job_id)


def _start_run(job: DescribeJob, retry_failed: bool) -> None:
    job.error = ""
    for item in job.items:
        if retry_failed and item.status == FAILED:
            item.status, item.reason = PENDING, ""


def _send(store: DescribeStore, job: DescribeJob, to_do: list[Item], library, prices: PriceTable, run: BatchRun,
          concurrency: int, backoff_s: float, on_progress: Callable[[int, int], None] | None) -> None:
    backoff = Backoff(run.stop_event)
    finished = [len(job.items) - len(to_do)]
    lock = threading.Lock()
    progress = on_progress or (lambda done, total: None)
    progress(finished[0], len(job.items))

    def one(item: Item) -> None:
        backoff.wait()
        if run.stop_event.is_set():
            return
        ended = False
        try:
            ended = _describe_item(store, job, item, library, captioner, prices, run)
        finally:
            with lock:
                if ended:
                    run.finished_this_run += 1
                    finished[0] += 1
                    progress(finished[0], len(job.items))

    with Captioner.from_settings(library.settings, max_retries=BATCH_RETRIES, backoff_s=backoff_s,
                                 sleep=backoff.pause, model=job.spec.model) as captioner, \
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"describe-{job.id}") as pool:
        futures = [pool.submit(one, item) for item in to_do]
        try:
            wait(futures)
        except BaseException:  # Ctrl-C: send nothing more; what is in flight finishes and is kept
            run.stop()
            raise
        for future in futures:
            if future.exception() is not None:
                raise future.exception()  # a bug in our own code: not an item's failure


_FATAL = (InvalidApiKeyError, MissingApiKeyError, ModelGoneError)  # every other item would fail the same way


def _describe_item(store: DescribeStore, job: DescribeJob, item: Item, library, captioner: Captioner,
                   prices: PriceTable, run: BatchRun) -> bool:
    """Describe one asset and record the outcome; False if it stays pending (the whole job had to stop)."""
    started = time.monotonic()
    settings = library.settings
    try:
        image = _load_image(library, item.sha256)
        description = captioner.describe(image)
    except _FATAL as exc:
        run.stop()  # the item stays pending: with the key fixed, a re-run finishes the job
        store.update(job.id, lambda j: setattr(j, "error", user_message(exc, settings)))
        return False
    except CaptionProblem as problem:  # answered, and billed, but no caption: recorded on the asset too
        reason = user_message(problem, settings)
        cost = record_generation(settings, prices, captioner.model, problem.usage, source="describe", job=job.id)
        _update_asset(library, item.sha256, lambda a: _failed(a, reason, captioner.model, problem.usage, cost))
        store.update(job.id, lambda j: _mark(j, item, status=FAILED, reason=reason, usage=dict(problem.usage),
                                             cost_usd=cost, seconds=time.monotonic() - started))
        return True
    except (GenerationError, AssetNotFoundError, InvalidImageError) as exc:  # not answered: nothing billed
        reason = user_message(exc, settings)
        store.update(job.id, lambda j: _mark(j, item, status=FAILED, reason=reason,
                                             seconds=time.monotonic() - started))
        return True
    cost = record_generation(settings, prices, description.model, description.usage, source="describe", job=job.id)
    try:
        described = library.store.update(item.sha256, lambda a: _described(a, description, cost))
    except AssetNotFoundError:  # deleted while it was being described
        store.update(job.id, lambda j: _mark(j, item, status=FAILED, reason="deleted while it was being described",
                                             usage=dict(description.usage), cost_usd=cost))
        return True
    suggested = list(described.details.get(SUGGESTED_KEY) or [])
    store.update(job.id, lambda j: _mark(j, item, status=DONE, caption=description.caption, suggested_tags=suggested,
                                         usage=dict(description.usage), cost_usd=cost,
                                         seconds=time.monotonic() - started))
    return True


def _load_image(library, sha256: str):
    asset = library.get(sha256)
    try:
        data = library.original_bytes(sha256)
    except AssetNotFoundError:
        raise AssetNotFoundError(f"{asset.filename} has no original file any more (`python -m ragkit doctor`).") from None
    return prepare_reference(data, asset.mime, sha256=sha256, max_side=CAPTION_MAX_SIDE)


def _update_asset(library, sha256: str, change: Callable[[Asset], Asset]) -> None:
    try:
        library.store.update(sha256, change)
    except AssetNotFoundError:
        pass  # deleted meanwhile: the job still records the outcome


def _mark(job: DescribeJob, item: Item, **changes: Any) -> None:
    current = job.item(item.sha256)
    for name, value in changes.items():
        setattr(current, name, value)


# ----------------------------------------------------------------------------- on the asset
def _described(asset: Asset, description: Description, cost: float | None) -> Asset:
    """The asset with its new caption; the suggested tags it doesn't have yet wait in its details."""
    details = dict(asset.details)
    details[DETAILS_KEY] = {"status": DONE, "model": description.model, "at": int(time.time() * 1000),
                            "usage": dict(description.usage), "cost_usd": cost}
    suggested = [tag for tag in description.tags if tag not in asset.tags]
    if suggested:
        details[SUGGESTED_KEY] = suggested
    else:
        details.pop(SUGGESTED_KEY, None)
    return dataclasses.replace(asset, caption=description.caption, details=details)


def _failed(asset: Asset, reason: str, model: str, usage: dict, cost: float | None) -> Asset:
    """The asset as it was (a caption it had stays), with why describing it failed."""
    details = dict(asset.details)
    details[DETAILS_KEY] = {"status": FAILED, "reason": reason, "model": model, "at": int(time.time() * 1000),
                            "usage": dict(usage), "cost_usd": cost}
    return dataclasses.replace(asset, details=details)


def suggested_tags(asset: Asset) -> list[str]:
    """Tags the model suggested that the asset doesn't have (yet)."""
    return [tag for tag in asset.details.get(SUGGESTED_KEY) or [] if isinstance(tag, str) and tag not in asset.tags]


def last_failure(asset: Asset) -> str:
    """Why the last description of this asset failed ('' if it didn't)."""
    last = asset.details.get(DETAILS_KEY) or {}
    return str(last.get("reason") or "?") if isinstance(last, dict) and last.get("status") == FAILED else ""


def resolve_suggested_tags(library, sha256: str, accept: Iterable[str] = (), dismiss: Iterable[str] = ()) -> Asset:
    """Accept some suggested tags (they become the asset's tags) and dismiss others (forgotten)."""
    accepted, dismissed = set(normalise_tags(accept)), set(normalise_tags(dismiss))

    def change(asset: Asset) -> Asset:
        offered = suggested_tags(asset)
        unknown = accepted - set(offered) - set(asset.tags)
        if unknown:
            raise BatchError(f"{', '.join(sorted(unknown))} {'is' if len(unknown) == 1 else 'are'} not among the "
                             "suggested tags; add your own tags with Save tags (or `python -m ragkit tag`).")
        details = dict(asset.details)
        rest = [tag for tag in offered if tag not in accepted and tag not in dismissed]
        if rest:
            details[SUGGESTED_KEY] = rest
        else:
            details.pop(SUGGESTED_KEY, None)
        tags = normalise_tags([*asset.tags, *(tag for tag in offered if tag in accepted)])
        return dataclasses.replace(asset, tags=tags, details=details)

    return library.store.update(validate_sha256(sha256), change)
