"""The library: one object the CLI and the pages use, tying settings, store, blobs and model together.

Opening a library is cheap (no model load): the collection is named and sized from the
model's config. The CLIP model is loaded on first use (search, ingest) and then kept.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ragkit.lifecycle import active_model as model_record
from ragkit.storage import milvus_lite
from ragkit.storage.blobs import BlobStore
from ragkit.config import Settings
from ragkit.ingest.embedder import ClipEmbedder, model_identity, weights_are_random
from ragkit.storage import collections
from ragkit.storage import schema as schemas
from ragkit.errors import AssetNotFoundError, RagkitError, UpgradeNeededError
from ragkit.ingest.images import EXTENSION_BY_MIME
from ragkit.ingest.pipeline import (IngestPipeline, IngestProgress, Provenance, Upload, collect_sources,
                     embed_query_image)
from ragkit.search import hybrid
from ragkit.lifecycle import trash as trash_bin
from ragkit.records import (ROUTE_KEYWORDS, SOURCE_GENERATED, SOURCE_UPLOAD, Asset, BulkResult, IngestReport, Page,
                      SearchHit)
from ragkit.rights import RightsChange
from ragkit.storage.connection import connect, disconnect
from ragkit.storage.schema import LATEST as LATEST_SCHEMA
from ragkit.storage.row_lock import RowLock
from ragkit.storage.store import AssetStore
from ragkit.lifecycle.upgrade import open_store

log = logging.getLogger(__name__)


def embedding_dim(model_name: str) -> int:
    """The vector size of an open_clip architecture, read from its config (no weights loaded).

    The JSON configs are read straight from disk when possible: importing open_clip pulls in
    torch (seconds), which `stats`, `tag` and `delete` should not pay for.
    """
    import importlib.util
    import json
    spec = importlib.util.find_spec("open_clip")
    folders = [Path(__file__).parent / "ingest" / "model_configs"]
    if spec and spec.submodule_search_locations:
        folders += [Path(p) / "model_configs" for p in spec.submodule_search_locations]
    for folder in folders:
        candidate = folder / f"{model_name}.json"
        if candidate.is_file():
            return int(json.loads(candidate.read_text())["embed_dim"])
    from ragkit.ingest.embedder import _register_bundled_configs, unknown_architecture
    _register_bundled_configs()
    import open_clip
    config = open_clip.get_model_config(model_name)
    if not config or "embed_dim" not in config:
        raise unknown_architecture(model_name)
    return int(config["embed_dim"])


@dataclass(frozen=True)
class LibraryStats:
    assets: int
    generated: int
    model: str
    random_weights: bool
    db_uri: str
    collection: str
    data_dir: str
    advice: str = ""  # e.g. an embedded library that has outgrown its engine
    # ragkit.lifecycle.active_model.describe: RAGKIT_CLIP_MODEL when it names another model than the library's,
    # a reindex in progress (target, done, total), and other models' collections (model, count).
    configured_model: str = ""
    reindex: dict | None = None
    other_collections: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Library:
    def __init__(self, settings: Settings, embedder: ClipEmbedder | None = None,
                 index: dict | None = None) -> None:
        # The library's model is the one recorded in its data folder; the environment chooses the
        # model of a new library only (ragkit.lifecycle.active_model).
        self.active_model = model_record.resolve(settings)
        self._client = connect(settings.milvus_uri, settings.milvus_token)
        self._closed = False
        try:
            differs = self.active_model.differs
            self._open_store(settings, None if differs else embedder, index)
            if differs and self.active_model.recorded and self.store.is_empty() \
                    and model_record.read_record(settings.data_dir).reindex is None:
                # A record without a vector behind it (an older ragkit recorded the model at the first
                # open, even when the first upload then failed): the library follows the configured model.
                self.active_model = model_record.unpinned(self.active_model)
                self._open_store(settings, embedder, index)
            elif differs and embedder is not None:
                self.active_model.check_embedder(embedder)
            if not self.active_model.recorded:
                self._record_model()
        except BaseException:
            self.close()  # e.g. a model mismatch: don't keep the Lite file open for nothing
            raise
        self.blobs = BlobStore(settings.data_dir)
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self._random_weights: bool | None = None
        self.expired_on_open = 0  # assets Library.open emptied from the trash (older than RAGKIT_TRASH_DAYS)

    def _open_store(self, settings: Settings, embedder: ClipEmbedder | None, index: dict | None) -> None:
        if embedder is not None:
            self.active_model.check_embedder(embedder)
        self.settings = self.active_model.apply(settings)
        self.model_id = model_identity(self.settings.clip_model, self.settings.clip_pretrained)
        self.dim = embedder.dim if embedder else embedding_dim(self.settings.clip_model)
        self.use_store(open_store(self._client, collections.base_name(self.model_id), self.dim, self.model_id,
                                  index=index, embedded=self.settings.is_embedded_db))

    def _record_model(self) -> None:
        """Record the library's model once the library holds a vector (ragkit.lifecycle.active_model)."""
        if model_record.record_new_library(self):
            self.active_model = replace(self.active_model, recorded=True)

    @classmethod
    def open(cls, settings: Settings | None = None, **kwargs) -> "Library":
        """Open the library, and empty from its trash what has been there longer than RAGKIT_TRASH_DAYS."""
        library = cls(settings or Settings.load(), **kwargs)
        try:
            library.expired_on_open = len(library.expire_trash().done)
        except RagkitError as exc:  # the library is usable; the next open tries again
            log.warning("could not empty the expired trash: %s", exc)
        return library

    # --- the collection's format (ragkit.lifecycle.upgrade) ---------------------------------------------
    @property
    def needs_upgrade(self) -> bool:
        """Made by an older ragkit: works, but without the trash, rights, captions and keyword search
        until `python -m ragkit upgrade` (or the app's Upgrade button) brings it to the latest schema."""
        return self.store.version < LATEST_SCHEMA

    def upgrade(self, on_progress=None, drop_old: bool = False, **options):
        from ragkit.lifecycle.upgrade import upgrade
        return upgrade(self, on_progress, drop_old=drop_old, **options)

    def use_store(self, store: AssetStore) -> None:
        """Switch to another collection of this library (after an upgrade). Its edits take the data
        folder's row lock, which every process of this library shares (ragkit.storage.row_lock)."""
        store.row_lock = RowLock.for_folder(self.settings.data_dir)
        self.store = store

    def follow_upgrade(self) -> bool:
        """If another process upgraded the library since it was opened, switch to the new collection
        (a long-running app calls this; a write to the old one would be refused). True if it switched."""
        if not self.needs_upgrade or not self.store.superseded_by():
            return False
        self.use_store(open_store(self._client, collections.base_name(self.model_id), self.dim, self.model_id,
                                  index=self.store.index, embedded=self.settings.is_embedded_db))
        return True

    def close(self) -> None:
        """Close the database connection. For a Milvus Lite file, the last Library of this process
        on it also stops its in-process server, which frees the file for other processes at once.
        Idempotent; the library is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        disconnect(self._client, self.settings.milvus_uri)

    # --- the model --------------------------------------------------------------------------
    @property
    def embedder(self) -> ClipEmbedder:
        with self._embedder_lock:
            if self._embedder is None:
                self.active_model.check_weights()
                self._embedder = ClipEmbedder.from_settings(self.settings)
            return self._embedder

    @property
    def random_weights(self) -> bool:
        """True when results come from an untrained model (demo/test), which every page must say."""
        if self._embedder is not None:
            return self._embedder.random_weights
        if self._random_weights is None:  # peeking into a checkpoint is not free: once per library
            self._random_weights = weights_are_random(self.settings.clip_pretrained)
        return self._random_weights

    # --- adding images ----------------------------------------------------------------------
    def _pipeline(self, **kwargs) -> IngestPipeline:
        return IngestPipeline(self.store, self.blobs, self.embedder,
                              max_pixels=self.settings.max_image_pixels, **kwargs)

    def _recorded(self, report: IngestReport) -> IngestReport:
        if report.added and not self.active_model.recorded:
            self._record_model()
        return report

    def ingest_paths(self, paths: Iterable[str | Path], *, tags: Iterable[str] = (),
                     on_progress=None, **pipeline_options) -> IngestReport:
        files, missing = collect_sources(paths)
        return self._recorded(self._pipeline(**pipeline_options).run(files, tags=tags, on_progress=on_progress,
                                                                     pre_rejected=missing))

    def ingest_uploads(self, uploads: Sequence[Upload], *, tags: Iterable[str] = (),
                       on_progress=None) -> IngestReport:
        return self._recorded(self._pipeline().run(list(uploads), tags=tags, on_progress=on_progress))

    def save_generated(self, data: bytes, mime: str, provenance: Provenance, *,
                       tags: Iterable[str] = (), name: str | None = None) -> Asset:
        """Store a generated image like any upload, with source 'generated' and its provenance."""
        extension = EXTENSION_BY_MIME.get(mime, ".png")
        filename = name or f"generated-{provenance.model}{extension}"
        report = self._recorded(self._pipeline().run([Upload(filename, data)], tags=tags, source=SOURCE_GENERATED,
                                                     provenance=provenance))
        if report.rejected:
            from ragkit.errors import InvalidImageError
            raise InvalidImageError(f"The generated image could not be saved: {report.rejected[0].reason}")
        if report.duplicates:
            existing = self.store.get(report.duplicates[0][1])
            if existing is None:
                raise AssetNotFoundError("The generated image vanished while it was being saved; try again.")
            return existing
        return report.added[0][1]

    # --- finding images ---------------------------------------------------------------------
    def search_text(self, text: str, k: int = 6, keywords: bool = True, **filters) -> list[SearchHit]:
        """By what the picture shows (CLIP) and, with `keywords`, by the words in names, tags, briefs
        and captions too (ragkit.search.hybrid), where the library has full-text search."""
        from ragkit.errors import InvalidInputError
        if not text.strip():
            raise InvalidInputError("Type what you are looking for, e.g. 'red silk cape with gold trim'.")
        vector = self.embedder.embed_texts([text.strip()])[0]
        if not keywords or not self.store.full_text:
            return self.store.search(vector, k, **filters)
        min_score = filters.pop("min_score", None)
        depth = hybrid.candidates(k)
        clip = self.store.search(vector, depth, **filters)
        rows = self.store.keyword_search(text, depth, **filters)  # tags, source and the rights filters
        hits = hybrid.fuse(clip, rows, vector, text, k)
        if min_score is not None:  # a similarity floor is about pictures: word matches stay
            hits = [h for h in hits if h.score >= min_score or ROUTE_KEYWORDS in h.routes]
        return hits

    def search_composed(self, *, image: bytes | None = None, similar: str | None = None, text: str = "",
                        text_weight: float = 0.5, not_text: str = "", k: int = 6, **filters) -> list[SearchHit]:
        """"Like this, but red": an example picture (uploaded bytes, or an asset's id) moved by words,
        and away from `not_text` (ragkit.search.hybrid.composed_vector). The example asset itself is left out."""
        if (image is None) == (similar is None):
            raise ValueError("give exactly one of image (bytes) or similar (an asset id)")
        if similar is not None:
            picture = self.store.get_vector(similar)
        else:
            picture = embed_query_image(image, self.embedder, self.settings.max_image_pixels)
        texts = [t.strip() for t in (text, not_text)]
        vectors = dict(zip([t for t in texts if t], self.embedder.embed_texts([t for t in texts if t]))) \
            if any(texts) else {}
        query = hybrid.composed_vector(picture, vectors.get(texts[0]), text_weight, vectors.get(texts[1]))
        hits = self.store.search(query, k + (1 if similar else 0), **filters)
        return [h for h in hits if h.asset.sha256 != similar][:k]

    @property
    def keyword_search_unavailable(self) -> str:
        """'' when text queries also match words; otherwise why not (for the UI and `stats`)."""
        if not schemas.has_keywords_field(self.store.version):
            return "this library was made by an older ragkit: run `python -m ragkit upgrade`"
        if not self.store.full_text:
            return "this Milvus has no full-text search (it needs Milvus 2.5 or later, or Milvus Lite)"
        return ""

    def search_image(self, data: bytes, k: int = 6, **filters) -> list[SearchHit]:
        vector = embed_query_image(data, self.embedder, self.settings.max_image_pixels)
        return self.store.search(vector, k, **filters)

    def search_similar(self, sha256: str, k: int = 6, include_self: bool = False, **filters) -> list[SearchHit]:
        vector = self.store.get_vector(sha256)
        hits = self.store.search(vector, k + (0 if include_self else 1), **filters)
        if not include_self:
            hits = [h for h in hits if h.asset.sha256 != sha256][:k]
        return hits

    def search_vector(self, vector: np.ndarray, k: int = 6, **filters) -> list[SearchHit]:
        return self.store.search(vector, k, **filters)

    # --- browsing and editing ---------------------------------------------------------------
    def page(self, offset: int = 0, limit: int = 24, **filters) -> Page:
        return self.store.page(offset, limit, **filters)

    def get(self, sha256: str) -> Asset:
        asset = self.store.get(sha256)
        if asset is None:
            raise AssetNotFoundError(f"No asset {sha256[:12]}… in the library (was it deleted?).")
        return asset

    def find(self, sha256: str) -> Asset | None:
        """The asset, or None if it is not in the library (a link to a deleted image)."""
        return self.store.get(sha256)

    def matching_ids(self, **filters) -> list[str]:
        """Every id the filters match, newest first (Select all N)."""
        return self.store.matching_ids(**filters)

    def has_original(self, sha256: str) -> bool:
        return self.blobs.original_path(sha256).is_file()

    @property
    def collection(self) -> str:
        """The Milvus collection the library reads and writes now."""
        return self.store.collection

    def other_collections(self):
        """Libraries indexed with other models (to explain an empty library after a model change)."""
        return self.store.other_collections()

    def get_many(self, sha256s: Sequence[str]) -> list[Asset]:
        return self.store.get_many(sha256s)

    def count(self, **filters) -> int:
        return self.store.count(**filters)

    def all_tags(self) -> list[tuple[str, int]]:
        return self.store.all_tags()

    def update_tags(self, sha256: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Asset:
        return self.store.update_tags(sha256, add, remove)

    def update_tags_many(self, sha256s: Iterable[str], add: Iterable[str] = (),
                         remove: Iterable[str] = ()) -> BulkResult:
        """Add and remove tags on many assets (one upsert per step of UPDATE_BATCH, not per asset);
        assets in the trash are skipped."""
        from ragkit.storage.store import tag_change
        return self.store.update_many(sha256s, tag_change(add, remove), applies=_live_only)

    def set_rights(self, sha256s: Iterable[str], change: RightsChange) -> BulkResult:
        """Set usage rights (ragkit.rights) on many assets; assets in the trash are skipped."""
        if not self.has_rights:
            raise UpgradeNeededError("This library was made by an older ragkit and has no usage rights yet: run "
                                     "`python -m ragkit upgrade` (or the app's Upgrade button) first.")
        return self.store.update_many(sha256s, change.apply, applies=_live_only)

    # --- the trash (ragkit.lifecycle.trash) -----------------------------------------------------------
    @property
    def has_trash(self) -> bool:
        """False for a library of schema 1: there, deleting is for good until it is upgraded."""
        return self.store.has_trash

    @property
    def has_rights(self) -> bool:
        return self.store.has_rights

    def trash(self, sha256s: Iterable[str], now: int | None = None) -> BulkResult:
        """Move assets to the trash: out of every view, restorable exactly as they were."""
        return trash_bin.move_to_trash(self, sha256s, now)

    def restore(self, sha256s: Iterable[str]) -> BulkResult:
        return trash_bin.restore(self, sha256s)

    def empty_trash(self, sha256s: Iterable[str] | None = None, on_progress=None) -> BulkResult:
        """Delete for good everything in the trash (or these assets of it)."""
        return trash_bin.empty(self, sha256s, on_progress)

    def expire_trash(self, now: int | None = None) -> BulkResult:
        """Delete for good what has been in the trash longer than RAGKIT_TRASH_DAYS."""
        return trash_bin.expire(self, now)

    def trashed(self) -> list[Asset]:
        return self.store.trashed()

    def trashed_ids(self) -> list[str]:
        """Ids in the trash, most recently trashed first."""
        return self.store.trashed_ids()

    def trashed_page(self, offset: int = 0, limit: int = 24) -> Page:
        """One page of the trash, most recently trashed first."""
        return self.store.trashed_page(offset, limit)

    def trash_count(self) -> int:
        return self.store.trash_count()

    def delete(self, sha256s: Iterable[str]) -> int:
        """Delete for good (the trash's Empty; a schema-1 library's delete): files first, then rows.
        A crash in between leaves a row without its original, which `doctor --repair` finishes
        deleting; so an orphan *file* always means an interrupted ingest, and doctor can safely
        adopt it instead of guessing. Files and rows go under the row lock, so an edit of these assets
        in another process waits and then finds them gone, instead of writing their rows back."""
        ids = list(sha256s)
        with self.store.rows_locked():
            for sha in ids:
                self.blobs.delete(sha)
            return self.store.delete(ids)

    def thumbnail_bytes(self, sha256: str) -> bytes:
        try:
            return self.blobs.read_thumbnail(sha256)
        except FileNotFoundError:
            raise AssetNotFoundError(
                f"The thumbnail of {sha256[:12]}… is missing; run `python -m ragkit doctor --repair`.") from None

    def original_bytes(self, sha256: str) -> bytes:
        try:
            return self.blobs.read_original(sha256)
        except FileNotFoundError:
            raise AssetNotFoundError(
                f"The original of {sha256[:12]}… is missing from {self.blobs.originals_dir}.") from None

    def scale_advice(self, assets: int) -> str:
        """'' unless the library has outgrown the embedded engine (then: what to do)."""
        return milvus_lite.scale_advice(assets) if self.settings.is_embedded_db else ""

    def stats(self) -> LibraryStats:
        assets = self.store.count()
        return LibraryStats(
            assets=assets,
            generated=self.store.count(source=SOURCE_GENERATED),
            model=self.model_id,
            random_weights=self.random_weights,
            db_uri=self.settings.milvus_uri_display,
            collection=self.store.collection,
            data_dir=str(self.settings.data_dir),
            advice=self.scale_advice(assets),
            **model_record.describe(self),
        )


def _live_only(asset: Asset) -> str | None:
    return trash_bin.SKIP_IN_TRASH if asset.trashed else None


__all__ = ["Library", "LibraryStats", "Upload", "Provenance", "IngestProgress", "SOURCE_UPLOAD",
           "SOURCE_GENERATED", "embedding_dim"]
