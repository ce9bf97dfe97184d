"""Describe: a caption and suggested tags for many images, in the background, resumable after a kill.

Built on the one resumable-job runner (ragkit.jobs.resumable): the same on-disk job state (``JobStore``,
here in ``RAGKIT_DATA_DIR/captions/<id>/state.json``, one runner per job across processes), the same
shared 429 back-off (a RetryInfo delay pauses every worker; a stop ends it), the same live run and the
same cost ledger (one line per answered request, source "describe"). ``DescribeRunner.process`` is what
one item does.

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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Sequence

from ragkit.errors import AssetNotFoundError, BatchError
from ragkit.jobs.resumable import (BACKOFF_S, DEFAULT_CONCURRENCY, DONE, FAILED, PENDING, RETRIES, JobRun,
                                   JobStore, ResumableJob, ResumableRunner, RunRegistry, checked, status_counts)
from ragkit.messages import user_message
from ragkit.records import Asset
from ragkit.storage.filters import LIVE, validate_sha256
from ragkit.studio.captions import CAPTION_MAX_SIDE, CaptionProblem, Captioner, Description
from ragkit.studio.cost import record_generation, sum_costs
from ragkit.studio.models import bare_id
from ragkit.studio.references import prepare_reference
from ragkit.tags import normalise_tags

BatchRun = JobRun

CAPTIONS_DIR = "captions"
FORMAT = 1
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

    @property
    def key(self) -> str:
        return self.sha256

    def to_report(self) -> dict:
        return {"sha256": self.sha256, "status": self.status, "caption": self.caption or None,
                "suggested_tags": self.suggested_tags, "reason": self.reason or None, "cost_usd": self.cost_usd}


@dataclass
class DescribeJob(ResumableJob):
    id: str
    spec: DescribeSpec
    items: list[Item]
    created_at: int
    error: str = ""                  # why the last run stopped early (e.g. the key was refused)
    folder: Path = Path()
    ENTRIES = "items"

    def item(self, sha256: str) -> Item:
        return self.entry(sha256)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "id": self.id, "created_at": self.created_at, "error": self.error,
                "spec": {**asdict(self.spec), "assets": list(self.spec.assets), "skipped": list(self.spec.skipped)},
                "items": [asdict(i) for i in self.items]}


def _job_from_dict(data: dict, folder: Path) -> DescribeJob:
    """The job in state.json, every field checked (JobStore.load turns an error into a clear line)."""
    spec = data["spec"]
    spec = DescribeSpec(**{**spec, "assets": tuple(spec["assets"]), "skipped": tuple(spec.get("skipped", ()))})
    if not isinstance(spec.model, str) or not all(isinstance(sha, str) for sha in spec.assets):
        raise ValueError("spec.model or spec.assets is not text")
    items = [checked(Item(**i)) for i in data["items"]]
    return checked(DescribeJob(data["id"], spec, items, data["created_at"], data.get("error", ""), folder))


class DescribeStore(JobStore):
    """The describe jobs of one library: RAGKIT_DATA_DIR/captions/<id>/ (ragkit.jobs.resumable.JobStore)."""
    SUBDIR = CAPTIONS_DIR
    NOUN = "describe job"
    COMMAND = "describe"

    def _from_dict(self, data: dict, folder: Path) -> DescribeJob:
        return _job_from_dict(data, folder)

    def _new(self, job_id: str, spec: DescribeSpec, folder: Path) -> DescribeJob:
        return DescribeJob(job_id, spec, [Item(sha) for sha in spec.assets], int(time.time() * 1000), folder=folder)


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
def live_runs() -> list[BatchRun]:
    """The describe jobs running in this process (the app shows their progress)."""
    return DescribeRunner.registry.all()


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
    runner = DescribeRunner(store, library, concurrency=concurrency, backoff_s=backoff_s, on_progress=on_progress,
                            on_run=on_run)
    return runner.run(job_id, retry_failed=retry_failed)


class DescribeRunner(ResumableRunner):
    """One item: the asset's picture to the caption model; the caption lands on the asset at once."""
    KIND = "describe"
    registry = RunRegistry()

    def client(self, job: DescribeJob, sleep: Callable[[float], None]) -> ContextManager[Captioner]:
        return Captioner.from_settings(self.settings, max_retries=RETRIES, backoff_s=self.backoff_s, sleep=sleep,
                                       model=job.spec.model)

    def cleanup(self) -> None:
        self.library.store.flush()  # Milvus Lite searches unsealed rows slowly

    def process(self, job: DescribeJob, item: Item, captioner: Captioner) -> dict[str, Any]:
        settings, started = self.settings, time.monotonic()
        try:
            description = captioner.describe(_load_image(self.library, item.sha256))
        except CaptionProblem as problem:  # answered, and billed, but no caption: recorded on the asset too
            reason, usage = user_message(problem, settings), dict(problem.usage)
            cost = record_generation(settings, self.prices, captioner.model, usage, source="describe", job=job.id)
            _update_asset(self.library, item.sha256, lambda a: _failed(a, reason, captioner.model, usage, cost))
            return {"status": FAILED, "reason": reason, "usage": usage, "cost_usd": cost}
        cost = record_generation(settings, self.prices, description.model, description.usage, source="describe",
                                 job=job.id)
        answered = {"usage": dict(description.usage), "cost_usd": cost}
        try:
            described = self.library.store.update(item.sha256, lambda a: _described(a, description, cost))
        except AssetNotFoundError:  # deleted while it was being described
            return {**answered, "status": FAILED, "reason": "deleted while it was being described"}
        return {**answered, "status": DONE, "caption": description.caption,
                "suggested_tags": list(described.details.get(SUGGESTED_KEY) or []),
                "seconds": time.monotonic() - started}


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
