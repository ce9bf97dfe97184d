"""Re-index the library with another embedding model while the current one keeps serving search.

`python -m ragkit reindex --model ARCH --pretrained TAG_OR_PATH`, and the app's Settings, run:

1. **Start.** The new model's collection is made beside the current one (or reopened, to resume)
   and marked incomplete; the reindex is recorded in the library (ragkit.lifecycle.active_model), so `stats`
   and the app, in any process, show it with its progress.
2. **Fill.** Every original the new collection lacks is read from the blob store and embedded by
   the ingest pipeline (ragkit.ingest.pipeline.Reembed: the same reading, decoding, preprocessing and batched
   embedding); its row keeps every field of the asset, only the vector is new. Then fields changed
   since they were copied (tags, trash, rights, captions) are copied again, with the new vector,
   and rows deleted from the library are deleted. Passes repeat until one finds nothing to do, so
   what other processes add or change meanwhile is caught up: no process needs to know that a
   reindex runs (ingest embeds with the current model only, once; no dual write, no second model
   loaded in every process).
3. **Verify.** Both collections hold the same ids, and a sample of assets, embedded afresh from
   their originals, each finds itself first in the new collection.
4. **Switch.** The old collection is marked superseded (a process still writing to it gets
   StoreSupersededError: reload and redo), the new one complete, and the record names the new model
   active: from then on every process that opens the library uses it, the app at its next page view.
5. **Catch up.** After a moment (for writes already in flight), what processes still on the old
   model changed there since the last pass is applied to the new collection, unless the new one was
   changed since (a three-way comparison, by a digest of every field of each row).

A kill at any point loses nothing: until step 4 the library uses the old model, and the next run
resumes (ids are content hashes, writes are upserts, a pass embeds only what the new collection
lacks). The old collection stays, as it was, until `reindex --drop-old`.
"""
from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

from ragkit.lifecycle import active_model as records
from ragkit.storage import schema as schemas
from ragkit.lifecycle.active_model import ModelChoice, ReindexState
from ragkit.ingest.embedder import ClipEmbedder
from ragkit.ingest.weights_cache import CACHE_FOLDER
from ragkit.storage import collections
from ragkit.errors import ReindexError
from ragkit.ingest.pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, IngestPipeline, Reembed, embed_query_image
from ragkit.lifecycle.migrate import all_ids
from ragkit.records import Asset, Rejected
from ragkit.storage.store import AssetStore

ProgressCallback = Callable[[int, int], None]

MAX_PASSES = 5            # fill passes before the switch; later changes are caught up after it
SETTLE_SECONDS = 1.0      # for writes sent to the old collection just before it was marked superseded
EMBED_BLOCK = 512         # assets read from the old collection per pipeline run (bounded memory)
READ_BATCH = 1000         # rows per read when comparing the collections
SPOT_CHECKS = 16          # assets embedded afresh in the verification
SCORE_TIE = 1e-4          # an identical picture stored twice may come first: its score ties
RECORD_EVERY_S = 2.0      # how often the progress is written to the record, for other processes


@dataclass
class ReindexReport:
    model: str               # the model the library uses now
    previous: str            # the model it used before
    collection: str          # the new model's collection
    assets: int              # rows in it (the trash included)
    embedded: int = 0        # assets embedded by this run (the rest were there from an earlier run)
    updated: int = 0         # rows whose fields changed during the reindex, copied again
    removed: int = 0         # rows deleted from the library during the reindex
    verified: int = 0        # assets that found themselves first with the new model
    seconds: float = 0.0
    switched: bool = True    # False: the library already used this model
    random_weights: bool = False
    dropped: list[str] = field(default_factory=list)  # collections dropped (--drop-old)

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds and self.embedded else 0.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "images_per_second": round(self.images_per_second, 2)}


@dataclass
class _Pass:
    embedded: int = 0
    updated: int = 0
    removed: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    digests: dict[str, bytes] = field(default_factory=dict)  # the old collection's rows as this pass left them

    @property
    def changes(self) -> int:
        return self.embedded + self.updated + self.removed


def _digest(asset: Asset) -> bytes:
    """Every field of an asset but its vector, digested: which rows differ between collections."""
    return hashlib.blake2b(repr(asset).encode("utf-8"), digest_size=16).digest()


def _digests(store: AssetStore, ids: Sequence[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for start in range(0, len(ids), READ_BATCH):
        found.update((a.sha256, _digest(a)) for a in store.get_many(ids[start:start + READ_BATCH]))
    return found


def _batches(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Progress:
    """(done, total) to the caller, and every few seconds into the record for other processes."""

    def __init__(self, data_dir, state: ReindexState, callback: ProgressCallback | None) -> None:
        self._data_dir, self.state, self._callback = data_dir, state, callback
        self._written = 0.0
        self.recording = True  # until the switch, which ends the reindex in the record

    def __call__(self, done: int, total: int) -> None:
        if self._callback:
            self._callback(done, total)
        self.state = replace(self.state, done=done, total=total, updated_at=int(time.time()))
        if self.recording and time.monotonic() - self._written >= RECORD_EVERY_S:
            self.save()

    def save(self) -> None:
        record = records.read_record(self._data_dir)
        records.write_record(self._data_dir, replace(record, reindex=self.state))
        self._written = time.monotonic()


class _Reindex:
    """One run: the library (old collection), the new collection and its model."""

    def __init__(self, library, target: AssetStore, embedder, progress: _Progress, batch_size: int,
                 workers: int) -> None:
        self.library, self.source, self.target, self.embedder = library, library.store, target, embedder
        self.progress = progress
        self.pipeline = IngestPipeline(target, library.blobs, embedder, max_pixels=library.settings.max_image_pixels,
                                       batch_size=batch_size, workers=workers)

    # --- steps 2 and 5: passes ------------------------------------------------------------
    def sync_pass(self) -> _Pass:
        """Make the new collection hold what the old one holds (every field, new vectors)."""
        source_ids = all_ids(self.source)
        target_ids = set(all_ids(self.target))
        present = [sha for sha in source_ids if sha in target_ids]
        source_digests = _digests(self.source, present)
        target_digests = _digests(self.target, present)
        changed = [sha for sha, d in source_digests.items() if target_digests.get(sha, d) != d]
        known = set(source_ids)
        result = _Pass(digests=source_digests)
        self.progress(len(present) - len(changed), len(source_ids))
        self.embed([sha for sha in source_ids if sha not in target_ids], len(present) - len(changed),
                   len(source_ids), result)
        result.updated = self.copy_fields(changed)
        result.removed = self.remove([sha for sha in target_ids if sha not in known])
        self.progress(len(source_ids) - len(result.rejected), len(source_ids))
        return result

    def catch_up(self, base: dict[str, bytes]) -> _Pass:
        """After the switch: apply what changed in the old collection since `base` (the last pass),
        where the new collection still holds `base` (a change made there since wins)."""
        now = _digests(self.source, all_ids(self.source))
        target_ids = set(all_ids(self.target))
        held = _digests(self.target, [sha for sha in base if sha in target_ids])
        result = _Pass(digests=now)
        added = [sha for sha in now if sha not in base and sha not in target_ids]
        self.embed(added, len(now) - len(added), len(now), result)
        result.updated = self.copy_fields([sha for sha, d in now.items()
                                           if sha in base and d != base[sha] and held.get(sha) == base[sha]])
        result.removed = self.remove([sha for sha in base if sha not in now and held.get(sha) == base[sha]])
        return result

    def embed(self, ids: Sequence[str], done: int, total: int, result: _Pass) -> None:
        """Embed these assets' originals with the new model, keeping every field of their rows."""
        for block in _batches(ids, EMBED_BLOCK):
            assets = self.source.get_many(block)  # an asset deleted meanwhile is simply not there
            sources = [Reembed(self.library.blobs.original_path(a.sha256), a) for a in assets]
            report = self.pipeline.run(sources, on_progress=lambda p, base=done: self.progress(base + p.done, total))
            result.embedded += len(report.added)
            result.rejected.extend(self._still_in_library(report.rejected))
            result.digests.update((a.sha256, _digest(a)) for a in assets)
            done += len(block)

    def _still_in_library(self, rejected: list[Rejected]) -> list[Rejected]:
        """Failures that matter: an asset deleted while it was being read (its files go first) is no loss."""
        if not rejected:
            return []
        there = self.source.existing([r.path for r in rejected])  # Reembed labels rejections with the id
        return [r for r in rejected if r.path in there]

    def copy_fields(self, ids: Sequence[str]) -> int:
        """Rows whose fields changed in the old collection: the new fields, with the new vector."""
        copied = 0
        for batch in _batches(ids, READ_BATCH):
            fresh = {a.sha256: a for a in self.source.get_many(batch)}
            held, vectors = self.target.assets_with_vectors(batch)
            keep = [i for i, a in enumerate(held) if a.sha256 in fresh]
            self.target.upsert([fresh[held[i].sha256] for i in keep], vectors[keep])
            copied += len(keep)
        return copied

    def remove(self, ids: Sequence[str]) -> int:
        """Rows deleted from the library; each is looked up once more first (a read that raced a
        write must not delete a row of the new collection)."""
        if not ids:
            return 0
        still_there = self.source.existing(list(ids))
        gone = [sha for sha in ids if sha not in still_there]
        return self.target.delete(gone) if gone else 0

    # --- step 3 -------------------------------------------------------------------------
    def verify(self) -> int:
        """Same ids in both; a sample of assets, embedded afresh, each finds itself first."""
        source_ids, target_ids = set(all_ids(self.source)), set(all_ids(self.target))
        if source_ids != target_ids:
            raise ReindexError(
                f"The new collection differs from the library ({len(source_ids - target_ids)} assets missing, "
                f"{len(target_ids - source_ids)} extra) after the last pass; the library keeps using "
                f"{self.source.model_id}. Run the same command again.")
        candidates = sorted(target_ids)
        random.Random(len(candidates)).shuffle(candidates)
        checked = 0
        for sha in candidates:
            if checked >= SPOT_CHECKS:
                break
            asset = self.target.get(sha)
            if asset is None or asset.trashed:  # searches leave the trash out
                continue
            self._check_finds_itself(sha)
            checked += 1
        return checked

    def _check_finds_itself(self, sha: str) -> None:
        vector = embed_query_image(self.library.blobs.read_original(sha), self.embedder,
                                   self.library.settings.max_image_pixels)
        hits = self.target.search(vector, k=5)
        own = next((h.score for h in hits if h.asset.sha256 == sha), None)
        if not hits or own is None or own < hits[0].score - SCORE_TIE:
            found = hits[0].asset.sha256[:12] if hits else "nothing"
            raise ReindexError(
                f"Verification failed: asset {sha[:12]}…, embedded again from its original, found {found} first "
                f"in the new collection, not itself. The library keeps using {self.source.model_id}; run the "
                "same command again, and if this repeats, report it.")

    # --- step 4 -------------------------------------------------------------------------
    def switch(self, target: ModelChoice) -> None:
        """Superseded first: a kill right after leaves the old model active but refusing writes,
        which the next run (or its switch) ends; never a new model whose old one still takes writes."""
        self.source.mark_superseded(self.target.collection)
        self.target.mark_complete()
        self.progress.recording = False
        records.write_record(self.library.settings.data_dir, records.ModelRecord(active=target))


def reindex(library, model: str, pretrained: str, *, embedder=None, on_progress: ProgressCallback | None = None,
            drop_old: bool = False, batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS,
            settle_seconds: float = SETTLE_SECONDS) -> ReindexReport:
    """Embed every asset of `library` again with `model`/`pretrained` and switch the library to it
    (see the module docstring). `library` keeps serving its current model throughout, and after:
    processes (and the app) open the new model from the record."""
    started = time.perf_counter()
    wanted = records.choice(model, pretrained)
    source: AssetStore = library.store
    if wanted.model_id == source.model_id:
        dropped = drop_old_collections(library, source) if drop_old else []
        return ReindexReport(source.model_id, source.model_id, source.collection, len(all_ids(source)),
                             switched=False, random_weights=library.random_weights, dropped=dropped,
                             seconds=time.perf_counter() - started)
    if source.version < schemas.LATEST:
        raise ReindexError("This library was made by an older ragkit: run `python -m ragkit upgrade` first, "
                           "then the reindex.")
    embedder = embedder or ClipEmbedder(wanted.model, wanted.pretrained, library.settings.device,
                                        cache_dir=library.settings.data_dir / CACHE_FOLDER)
    target = _open_target(library, wanted, embedder)
    _refuse_to_empty(source, target)
    if source.superseded_by():  # a kill mid-switch left it refusing writes; it is still the library's
        source.mark_superseded("")
    data_dir = library.settings.data_dir
    records.write_record(data_dir, records.ModelRecord(
        active=records.read_record(data_dir).active or library.active_model.choice,
        reindex=ReindexState(wanted, source.model_id, int(time.time()), updated_at=int(time.time()))))
    progress = _Progress(data_dir, records.read_record(data_dir).reindex, on_progress)
    run = _Reindex(library, target, embedder, progress, batch_size, workers)
    report = ReindexReport(wanted.model_id, source.model_id, target.collection, 0,
                           random_weights=bool(getattr(embedder, "random_weights", False)))
    last = _fill(run, report)
    report.verified = run.verify()
    run.switch(wanted)
    time.sleep(settle_seconds)
    late = run.catch_up(last.digests)
    report.embedded += late.embedded
    report.updated += late.updated
    report.removed += late.removed
    target.flush()
    report.assets = len(all_ids(target))
    report.dropped = drop_old_collections(library, target) if drop_old else []
    report.seconds = time.perf_counter() - started
    return report


def _fill(run: _Reindex, report: ReindexReport) -> _Pass:
    """Passes until one finds nothing to do (step 2); refuses to go on with originals it can't embed."""
    for _ in range(MAX_PASSES):
        result = run.sync_pass()
        report.embedded += result.embedded
        report.updated += result.updated
        report.removed += result.removed
        if result.rejected:
            run.progress.save()
            raise _rejected_error(result.rejected, run.source.model_id)
        if not result.changes:
            break
    run.target.flush()
    return result


def _rejected_error(rejected: list[Rejected], model_id: str) -> ReindexError:
    shown = "; ".join(f"{r.path[:12]}…: {r.reason}" for r in rejected[:3])
    more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
    return ReindexError(
        f"{len(rejected)} asset(s) could not be embedded again: {shown}{more}. The library keeps using {model_id}, "
        "and what was embedded is kept: fix these (`python -m ragkit doctor --repair` removes rows whose original "
        "is gone), then run the same command again.")


def _open_target(library, wanted: ModelChoice, embedder) -> AssetStore:
    """The new model's collection at the current schema: made, or reopened to resume."""
    name = collections.versioned_name(collections.base_name(wanted.model_id), schemas.LATEST)
    source = library.store
    target = source.sibling(name, embedder.dim, wanted.model_id, complete=False)
    target.mark_filling()
    return target


def _refuse_to_empty(source: AssetStore, target: AssetStore) -> None:
    """Syncing an empty library would delete every row of a collection that has some: surely a mistake."""
    if target.count() and not source.count():
        raise ReindexError(
            f"The library (model {source.model_id}) is empty, but the collection of {target.model_id} holds "
            f"{target.count()} assets; a reindex would empty it. Nothing was changed.")


def drop_old_collections(library, active: AssetStore | None = None) -> list[str]:
    """Drop the collections of models other than that of `active` (default: the library's collection), except
    that of a reindex in progress. Older-schema collections of the active model are `upgrade --drop-old`'s."""
    active = active or library.store
    in_progress = records.read_record(library.settings.data_dir).reindex
    keep = {active.model_id, in_progress.target.model_id if in_progress else "", "?"}
    dropped = []
    for other in active.other_collections():
        if other.model_id not in keep:
            active.drop_other(other.name)
            dropped.append(other.name)
    return dropped


__all__ = ["reindex", "ReindexReport", "drop_old_collections"]
