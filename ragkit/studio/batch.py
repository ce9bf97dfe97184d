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

import hashlib
import io
import json
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from ragkit.errors import AssetNotFoundError, BatchError, InvalidImageError
from ragkit.ingest.images import EXTENSION_BY_MIME, decode_image
from ragkit.ingest.pipeline import MAX_FILE_BYTES, Provenance
from ragkit.jobs.resumable import (BACKOFF_S, DEFAULT_CONCURRENCY, DONE, FAILED, MAX_CONCURRENCY, PENDING,
                                   RETRIES as BATCH_RETRIES, JobRun, JobStore as _JobStore, ResumableJob,
                                   ResumableRunner, RunRegistry, checked, mark, status_counts)
from ragkit.limits import MAX_VARIATIONS
from ragkit.records import Asset
from ragkit.storage.blobs import write_atomic
from ragkit.storage.filters import validate_sha256
from ragkit.studio.cost import record_generation
from ragkit.studio.generation import GeneratedImage, ImageGenerator, ReferenceImage
from ragkit.studio.kits import Kit, check_usable, references_with_kit
from ragkit.studio.models import check_output, default_model, model_info, normalise_size, too_many_references
from ragkit.studio.references import load_references
from ragkit.studio.usability import not_usable_reason

__all__ = ["BACKOFF_S", "BATCH_RETRIES", "DEFAULT_CONCURRENCY", "DONE", "FAILED", "MAX_CONCURRENCY", "PENDING",
           "BatchRun", "JobStore", "status_counts"]

JOBS_DIR = "jobs"
FORMAT = 1
MAX_PRODUCTS = 1000

APPROVED, REJECTED = "approved", "rejected"
BatchRun = JobRun   # the live run of a batch job (ragkit.jobs.resumable)


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
    half_price: bool = False         # through Gemini's Batch API (ragkit.studio.half_price): results within a day
    size: str | None = None          # image_config.image_size (None: the model's default)

    def identity(self) -> str:
        key = {"brief": self.brief, "selector": self.selector, "with_refs": list(self.with_refs),
               "kit": (self.kit or {}).get("name"), "variations": self.variations, "model": self.model,
               "aspect": self.aspect, "salt": self.salt}
        if self.half_price:  # only then: the ids of jobs made before stay the same
            key["half_price"] = True
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
class BatchJob(ResumableJob):
    id: str
    spec: BatchSpec
    takes: list[Take]
    created_at: int
    error: str = ""                # why the last run stopped early (e.g. the key was refused)
    folder: Path = Path()
    remote_batch: str = ""         # half price: the Gemini batch ("batches/…") its pending takes are in
    ENTRIES = "takes"

    @property
    def tag(self) -> str:
        """The tag its approved images get in the library."""
        return f"batch-{self.id}"

    def take(self, product: str, variation: int) -> Take:
        for take in self.takes:
            if take.key == (product, variation):
                return take
        raise BatchError(f"Job {self.id} has no variation {variation + 1} of product {product[:12]}….")

    def products(self) -> list[tuple[str, list[Take]]]:
        """Takes grouped by product, in the job's order."""
        return [(product, [t for t in self.takes if t.product == product]) for product in self.spec.products]

    def image_path(self, take: Take) -> Path:
        return self.folder / "images" / take.image

    def to_dict(self) -> dict:
        return {"format": FORMAT, "id": self.id, "created_at": self.created_at, "error": self.error,
                "remote_batch": self.remote_batch,
                "spec": {**asdict(self.spec), "products": list(self.spec.products),
                         "with_refs": list(self.spec.with_refs), "skipped": list(self.spec.skipped)},
                "takes": [asdict(t) for t in self.takes]}


def _job_from_dict(data: dict, folder: Path) -> BatchJob:
    """The job in state.json, every field checked (JobStore.load turns an error into a clear line)."""
    spec = data["spec"]
    spec = BatchSpec(**{**spec, "products": tuple(spec["products"]), "with_refs": tuple(spec["with_refs"]),
                        "skipped": tuple(spec.get("skipped", ()))})
    for name in ("brief", "prompt", "model"):
        if not isinstance(getattr(spec, name), str):
            raise ValueError(f"spec.{name} is not text")
    if not all(isinstance(sha, str) for sha in (*spec.products, *spec.with_refs)):
        raise ValueError("spec.products holds something that is not an asset id")
    takes = [checked(Take(**t)) for t in data["takes"]]
    for take in takes:
        if take.review not in ("", APPROVED, REJECTED):
            raise ValueError(f"review {take.review!r} is not approved, rejected or empty")
        if take.image and Path(take.image).name != take.image:
            raise ValueError(f"image {take.image!r} is not a file name")
    return checked(BatchJob(id=data["id"], spec=spec, takes=takes, created_at=data["created_at"],
                            error=data.get("error", ""), folder=folder, remote_batch=data.get("remote_batch", "")))


def item_status(takes: Sequence[Take]) -> str:
    """A product's state over its variations: pending, done, failed, or partial (some failed)."""
    statuses = {t.status for t in takes}
    if PENDING in statuses:
        return PENDING
    return statuses.pop() if len(statuses) == 1 else "partial"


# ----------------------------------------------------------------------------- on disk
class JobStore(_JobStore):
    """The batch jobs of one library: RAGKIT_DATA_DIR/jobs/<id>/ (ragkit.jobs.resumable.JobStore)."""
    SUBDIR = JOBS_DIR
    NOUN = "batch job"
    COMMAND = "batch"

    def _from_dict(self, data: dict, folder: Path) -> BatchJob:
        return _job_from_dict(data, folder)

    def _new(self, job_id: str, spec: BatchSpec, folder: Path) -> BatchJob:
        takes = [Take(product, v) for product in spec.products for v in range(spec.variations)]
        return BatchJob(job_id, spec, takes, int(time.time() * 1000), folder=folder)


def job_store(settings) -> JobStore:
    return JobStore(settings.data_dir)


# ----------------------------------------------------------------------------- making a job
def plan_batch(library, brief: str, *, tag: str | None = None, ref_each: Sequence[str] = (),
               with_refs: Sequence[str] = (), kit: Kit | None = None, variations: int = 1,
               model: str | None = None, aspect: str | None = None, new: bool = False,
               now_ms: int | None = None, size: str | None = None, half_price: bool = False) -> BatchSpec:
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
                     salt=hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:8] if new else "",
                     half_price=half_price)


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
def live_run(job_id: str) -> BatchRun | None:
    """The run of this job in this process, if there is one."""
    return BatchRunner.registry.get(job_id)


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
    approved or rejected are saved to the library once the takes are sent; otherwise they wait for review.
    `on_run` gets the live BatchRun (to stop it). Raises BatchError if another process runs the job, or its
    references can't be sent.
    """
    runner_class = BatchRunner
    if store.load(job_id).spec.half_price:
        from ragkit.studio.half_price import HalfPriceRunner
        runner_class = HalfPriceRunner
    runner = runner_class(store, library, concurrency=concurrency, backoff_s=backoff_s, on_progress=on_progress,
                          on_run=on_run, approve=approve)
    return runner.run(job_id, retry_failed=retry_failed)


class BatchRunner(ResumableRunner):
    """One take: the product first, the job's shared references after it; the answer checked like an upload."""
    KIND = "batch"
    registry = RunRegistry()

    def __init__(self, *args: Any, approve: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.approve = approve
        self.shared: list[ReferenceImage] = []

    def client(self, job: BatchJob, sleep: Callable[[float], None]) -> ContextManager[ImageGenerator]:
        return batch_generator(self.settings, sleep, self.backoff_s)

    def prepare(self, job: BatchJob) -> None:
        self.shared = _load_shared(self.library, job.spec)

    def process(self, job: BatchJob, take: Take, generator: ImageGenerator) -> dict[str, Any]:
        spec = job.spec
        # Usage rights may have changed since the job was made (or since the take failed): ask again.
        if blocked := _blocked_reference(self.library, spec.references_for(take.product)):
            return {"status": FAILED, "reason": blocked}
        product = load_references(self.library, [take.product])
        others = [ref for ref in self.shared if ref.sha256 != take.product]  # as spec.references_for(product)
        generation = generator.generate(spec.prompt, [*product, *others], model=spec.model,
                                        aspect_ratio=spec.aspect, variations=1, size=spec.size)
        return self.answered(job, take, generation.model, generation.images[0], generation.usage)

    SOURCE, RATE = "batch", 1.0   # what the ledger calls it, and the share of the list price paid

    def answered(self, job: BatchJob, take: Take, model: str, image: GeneratedImage,
                 usage: dict[str, int]) -> dict[str, Any]:
        """A take's answer recorded: its cost in the ledger, its image checked and kept; the take's changes."""
        cost = record_generation(self.settings, self.prices, model, usage, source=self.SOURCE, job=job.id,
                                 kit=(job.spec.kit or {}).get("name"), rate=self.RATE,
                                 size=job.spec.size)
        answered = {"usage": dict(usage), "cost_usd": cost}
        try:
            mime = check_answer(image.data, self.settings.max_image_pixels)
        except InvalidImageError as exc:  # answered (and billed) but unusable: failed, like a refusal
            return {**answered, "status": FAILED, "reason": f"The answer is not a usable image: {exc}."}
        name = f"{take.product[:12]}-{take.variation + 1}{EXTENSION_BY_MIME.get(mime, '.png')}"
        write_atomic(job.folder / "images" / name, image.data)  # before the state says done: a kill re-sends it
        return {**answered, "status": DONE, "image": name, "mime": mime}

    def after(self, job_id: str) -> None:
        if self.approve:
            approve_all(self.store, job_id, self.library)


def check_answer(data: bytes, max_pixels: int) -> str:
    """The MIME type of a generated image that passes what an upload must pass (size, a format Pillow
    reads, no decompression bomb, no sliver); InvalidImageError with the reason otherwise. The bytes
    decide the type, not what the answer claimed."""
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImageError(f"{len(data) / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit")
    decoded = decode_image(data, max_pixels=max_pixels)
    if decoded.mime not in EXTENSION_BY_MIME:
        raise InvalidImageError(f"a {decoded.mime} file, not an image format the library keeps")
    return decoded.mime


def _blocked_reference(library, references: Sequence[str], now_ms: int | None = None) -> str | None:
    """Why one of a request's references may not be sent now (usage rights, trash, gone); None if all may."""
    found = {a.sha256: a for a in library.get_many(list(references))}
    for sha in references:
        asset = found.get(sha)
        reason = ("it is not in the library" if asset is None else "it is in the trash" if asset.trashed
                  else not_usable_reason(asset, now_ms))
        if reason:
            return f"The reference {sha[:12]}… can't be sent any more: {reason}. Nothing was sent."
    return None


def _load_shared(library, spec: BatchSpec) -> list[ReferenceImage]:
    """The references every request carries (after its product), checked and read once per run."""
    shared = list(dict.fromkeys([*spec.with_refs, *spec.kit_references]))
    if blocked := _blocked_reference(library, shared):
        raise BatchError(f"{blocked} It is added to every request of this job (--with-ref or the brand kit); the "
                         "job is kept: allow the image again, or start a new batch without it.")
    try:
        return load_references(library, shared)
    except (AssetNotFoundError, InvalidImageError) as exc:
        raise BatchError(f"The references added to every request can't be read any more: {exc} The job is "
                         "kept; restore the image, or start a new batch without it.") from None


# ----------------------------------------------------------------------------- review
def approve(store: JobStore, job_id: str, product: str, variation: int, library) -> Asset:
    """Save one take's image to the library with its provenance, the product's tags and the job's tag (once)."""
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
                                   tags=_saved_tags(library, job, take), name=_saved_name(library, job, take))
    store.update(job_id, lambda j: mark(j, take.key, {"review": APPROVED, "saved": asset.sha256}))
    return asset


def approve_all(store: JobStore, job_id: str, library) -> list[Asset]:
    """Approve every image not yet approved or rejected. One that can't be saved (not a usable image, its
    file gone) doesn't stop the others: its take becomes failed with the reason, which the report shows."""
    job = store.load(job_id)
    saved = []
    for take in [t for t in job.takes if t.status == DONE and not t.saved and t.review != REJECTED]:
        try:
            saved.append(approve(store, job_id, take.product, take.variation, library))
        except (InvalidImageError, OSError) as exc:
            reason = (str(exc) if isinstance(exc, InvalidImageError) else
                      f"The image file {job.image_path(take)} can't be read ({exc.strerror or exc}); run the take again "
                      "with --retry-failed")
            store.update(job_id, lambda j, key=take.key, why=reason: mark(j, key, {"status": FAILED, "reason": why}))
    return saved


def reject(store: JobStore, job_id: str, product: str, variation: int) -> None:
    """Take one image out of the review (an approved one stays in the library). Its file is kept until the
    job is deleted, so `restore` can bring it back: it was paid for."""
    def drop(job: BatchJob) -> None:
        take = job.take(product, variation)
        if take.status == DONE and not take.saved:
            take.review = REJECTED
    store.update(job_id, drop)


def restore(store: JobStore, job_id: str, product: str, variation: int) -> None:
    """Undo a reject: the image is back in the review, waiting for Approve or Reject."""
    job = store.load(job_id)
    take = job.take(product, variation)
    if take.review != REJECTED:
        return
    if not job.image_path(take).exists():
        raise BatchError(f"Variation {variation + 1} of product {product[:12]}… can't be restored: its image file "
                         f"{job.image_path(take)} is gone (rejected before images were kept). Retry the failed "
                         "takes to draw it again.")
    store.update(job_id, lambda j: mark(j, take.key, {"review": ""}))


def _provenance(job: BatchJob, take: Take) -> Provenance:
    spec = job.spec
    details = {"job": job.id, "brief": spec.brief, "variation": take.variation + 1,
               "usage": dict(take.usage), "cost_usd": take.cost_usd}
    if spec.size:
        details["size"] = spec.size
    if spec.kit:
        details.update({"kit": spec.kit["name"], "kit_version": spec.kit["version"]})
    return Provenance(spec.prompt, spec.model, tuple(spec.references_for(take.product)), details=details)


def _saved_tags(library, job: BatchJob, take: Take) -> list[str]:
    """The product's own tags (a sneaker's 'sneakers', 'spring-2026'), then the job's tag."""
    product = library.store.get(take.product)
    own = [t for t in (product.tags if product else ()) if t != job.tag]
    return [*own, job.tag]


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

