"""The asset store: one Milvus collection per embedding model, through pymilvus MilvusClient.

Its one job is the collection: schema, writes, reads and search. The same code serves Milvus
Lite (a local ``.db`` path, ragkit.storage.milvus_lite holds its quirks) and a Milvus server or cluster
(``http://host:19530``). The schema is explicit: every field we filter on or show is a typed
column, never a dynamic field.

Consistency on a server (Milvus defaults to Bounded: a read may miss the last seconds of writes):
reads are *Session*, so a process sees its own writes at once (the uploader's grid, count, search);
other processes' writes are visible ~0.3 s later (measured on Milvus 2.3.5, docs/performance.md).
Duplicate detection is *Strong* (it waits for every write, any process's: ~0.35 s a query), so a
picture another process already stored is found; two processes upserting one id at the same
instant still end with one row, since the primary key is the content hash.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ragkit.storage import collections, lite_reads
from ragkit.storage import schema as schemas
from ragkit.storage.listing import FIELDS as LISTING_FIELDS, Listing, entry_of
from ragkit.storage.connection import short
from ragkit.errors import AssetNotFoundError, ModelMismatchError, ReadOnlyDataError, StoreError, StoreSupersededError
from ragkit.storage.filters import (IN_TRASH_FILTER, LIVE, Filters, as_filters, ids_filter, rights_filter, rights_matcher,
                      validate_sha256)
from ragkit.storage.milvus_lite import RecentWrites
from ragkit.storage.row_lock import RowLock
from ragkit.records import Asset, BulkResult, Page, SearchHit
from ragkit.limits import MAX_HITS, QUERY_WINDOW  # larger scans go through query_iterator
from ragkit.tags import normalise_tags

# Index choice, measured by bench/ (docs/performance.md): HNSW. In Milvus Lite every search
# also pays a per-row Python pass over all rows, so HNSW and IVF_FLAT search alike (~90 ms at
# 100k vs ~250 ms for FLAT) with recall@10 >= 0.999; HNSW needs no training (IVF's k-means on
# small segments prints faiss warnings to stderr) and keeps its recall on any distribution.
DEFAULT_INDEX = {"index_type": "HNSW", "params": {"M": 16, "efConstruction": 200}}
LISTING_REFRESH_SECONDS = 30.0  # on a shared server: how stale other people's tag edits may be
READ_CONSISTENCY = "Session"    # server reads: own writes at once (see the module docstring)
DEDUP_CONSISTENCY = "Strong"    # server duplicate checks: every write of every process
OVER_FETCH_MIN_SHARE = 0.05     # server filtered search: see _server_filtered_search
LOAD_WAIT_SECONDS = 20.0        # a collection another process is still making (see _load)
# Changes to many assets (tags, trash, rights) read and re-upsert this many rows (vectors included:
# ~1 MB at 512-d) per step: one upsert per step, and a kill between steps leaves whole steps done.
UPDATE_BATCH = 512

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model_id: str
    count: int
    complete: bool = True  # False while an upgrade or a reindex is still filling it


NOT_IN_TRASH = "not in the trash"
FILE_GONE = ("its original was already deleted by an emptying of the trash that did not finish; "
             "`python -m ragkit doctor --repair` completes it")


class AssetStore:
    """CRUD + vector search over the asset collection of one embedding model.

    `embedded` says which engine serves `client`: Milvus Lite (True) or a server (False)."""

    def __init__(self, client, collection: str, dim: int, model_id: str,
                 index: dict | None = None, embedded: bool = True, version: int = schemas.LATEST,
                 complete: bool = True) -> None:
        """Opens `collection`, or creates it with schema `version` (`complete=False`: an upgrade
        is about to fill it). An existing collection keeps the version it was made with."""
        self._client = client
        self.collection = collection
        self.dim = dim
        self.model_id = model_id
        self.embedded = embedded
        self._index = index or DEFAULT_INDEX
        self.version = version
        self.full_text = False  # BM25 over `keywords` (schema.py); set from the collection
        self._read = {} if embedded else {"consistency_level": READ_CONSISTENCY}
        self._dedup_read = {} if embedded else {"consistency_level": DEDUP_CONSISTENCY}
        # The Library page's listing (ragkit.storage.listing): one scan, then our own writes.
        self._listing = Listing(lambda: self.scan("", self._listing_fields),
                                refresh_seconds=None if embedded else LISTING_REFRESH_SECONDS)
        self._recent = RecentWrites() if embedded else None  # Lite's stale reads (existing())
        self._write_lock = threading.Lock()  # a write and its note in the listing stay in order
        # Read-modify-write of rows, across processes: the Library gives its data folder's lock
        # (ragkit.storage.row_lock); without one, only this process's threads are ordered.
        self.row_lock = RowLock(None)
        self._ensure_collection(complete)
        self.fields = schemas.OUTPUT_FIELDS[self.version]
        self._live = LIVE if self.has_trash else ""  # what every read of the library keeps
        self._listing_fields = [*LISTING_FIELDS] + (["trashed_at"] if self.has_trash else [])

    @property
    def has_trash(self) -> bool:
        return schemas.has_trash(self.version)

    @property
    def has_rights(self) -> bool:
        return schemas.has_rights(self.version)

    # --- set-up -------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            if "No space left on device" in str(exc):  # the embedded engine's own write: say it plainly
                raise StoreError(f"Milvus could not {what}: the disk holding the library's database is full. "
                                 "What was stored before is kept. Free some space (`df -h` on the data folder) and run "
                                 "the same command again.") from None
            if "Read-only file system" in str(exc):
                raise ReadOnlyDataError(f"Milvus could not {what}: the library's database is on a read-only "
                                        "file system. Make the data folder writable, then try again.") from None
            raise StoreError(f"Milvus could not {what}: {short(str(exc))}") from None

    def _ensure_collection(self, complete: bool) -> None:
        client = self._client
        if self._call("list collections", client.has_collection, self.collection):
            self._check_compatible()
        else:
            self._create(complete)
        self._load()

    def _load(self) -> None:
        """A new process must load the collection before it can search (Milvus Lite 3.x too). Another
        process may have made it a moment ago and not yet built its index: wait for that, briefly."""
        deadline = time.monotonic() + LOAD_WAIT_SECONDS
        while True:
            try:
                self._client.load_collection(self.collection)
                return
            except Exception as exc:  # noqa: BLE001
                if "index not found" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"Milvus could not load the asset collection: {short(str(exc))}") from None
                time.sleep(0.2)

    def _create(self, complete: bool) -> None:
        """Make the collection in one call, its properties included: another process that finds it a
        moment later must read the same schema version (two first uploads at once, on a server)."""
        client = self._client
        full_text = schemas.has_keywords_field(self.version) and self._engine_has_full_text()
        index_params = client.prepare_index_params()
        index_params.add_index("vector", metric_type="COSINE", **self._index)
        if full_text:
            index_params.add_index(schemas.KEYWORDS_SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        properties = {schemas.PROP_MODEL: self.model_id, schemas.PROP_VERSION: str(self.version),
                      schemas.PROP_KEYWORDS: "bm25" if full_text else "none",
                      schemas.PROP_COMPLETE: "1" if complete else "0"}
        try:
            client.create_collection(self.collection, schema=schemas.build_schema(self.version, self.dim, full_text),
                                     index_params=index_params, properties=properties)
        except Exception as exc:  # noqa: BLE001
            if not client.has_collection(self.collection):
                raise StoreError(f"Milvus could not create the asset collection: {short(str(exc))}") from None
            # Another process made it first (or ours exists without its index): use what is there.
            self._check_compatible()
            return
        self.full_text = full_text

    def _engine_has_full_text(self) -> bool:
        """BM25 full-text search needs Milvus 2.5 or later; Milvus Lite 3.x has it. Asked before
        creating, because Milvus 2.3 makes the collection and only then refuses the sparse index:
        a collection made and dropped again would break a process that found it in between."""
        if self.embedded:
            return True
        try:
            version = str(self._client.get_server_version())
        except Exception:  # noqa: BLE001 - an engine that can't say: the plain schema works everywhere
            return False
        if version.startswith("milvus_lite"):
            return True
        numbers = re.findall(r"\d+", version)[:2]
        return len(numbers) == 2 and (int(numbers[0]), int(numbers[1])) >= (2, 5)

    def _properties(self) -> dict:
        info = self._call("describe the asset collection", self._client.describe_collection, self.collection)
        return info.get("properties") or {}

    def _check_compatible(self) -> None:
        info = self._call("describe the asset collection", self._client.describe_collection, self.collection)
        properties = info.get("properties") or {}
        self.version = int(properties.get(schemas.PROP_VERSION) or 1)
        self.full_text = properties.get(schemas.PROP_KEYWORDS) == "bm25"
        stored_model = properties.get(schemas.PROP_MODEL, "")
        vector_dim = next((int(f["params"]["dim"]) for f in info["fields"] if f["name"] == "vector"), None)
        if (stored_model and stored_model != self.model_id) or vector_dim != self.dim:
            raise ModelMismatchError(
                f"Collection {self.collection} holds vectors of model {stored_model or '?'} "
                f"({vector_dim}-d), but the configured model is {self.model_id} ({self.dim}-d). "
                "Vectors of two models can't be compared: set RAGKIT_CLIP_MODEL / RAGKIT_CLIP_PRETRAINED "
                "back, or re-ingest your images under the new model.")

    @property
    def index(self) -> dict:
        """The vector index parameters this collection was opened with."""
        return self._index

    def sibling(self, name: str, dim: int, model_id: str, complete: bool = False) -> "AssetStore":
        """Another ragkit collection on the same Milvus, with the same index and engine (an upgrade's
        or a reindex's target)."""
        return AssetStore(self._client, name, dim, model_id, index=self._index, embedded=self.embedded,
                          complete=complete)

    def drop_other(self, name: str) -> bool:
        """Drop another ragkit collection of this Milvus, if it exists (never this one's)."""
        if name == self.collection or not collections.is_ragkit_collection(name):
            raise ValueError(f"refusing to drop {name!r}")
        if not self._call("look for a collection", self._client.has_collection, name):
            return False
        self._call("drop a collection", self._client.drop_collection, name)
        return True

    def other_collections(self) -> list[CollectionInfo]:
        """Libraries indexed with other models (to explain an empty library after a model change)."""
        found = []
        for name in self._call("list collections", self._client.list_collections):
            if name == self.collection or not collections.is_ragkit_collection(name):
                continue
            props = self._client.describe_collection(name).get("properties") or {}
            found.append(CollectionInfo(name, props.get(schemas.PROP_MODEL, "?"), self._rows_in(name),
                                        props.get(schemas.PROP_COMPLETE, "1") != "0"))
        return found

    def _rows_in(self, name: str) -> int:
        """Rows of another collection. A server's collection statistics count only flushed segments
        (Milvus 2.3: 0 for rows written since, and ragkit does not flush on servers): ask a loaded
        collection itself; Milvus Lite's statistics are exact."""
        if not self.embedded:
            try:
                rows = self._client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
                return int(rows[0]["count(*)"]) if rows else 0
            except Exception:  # noqa: BLE001 - not loaded (no process uses it): the statistics say enough
                pass
        return int(self._client.get_collection_stats(name).get("row_count", 0))

    # --- writes -------------------------------------------------------------------------
    def upsert(self, assets: Sequence[Asset], vectors: np.ndarray) -> None:
        if len(assets) != len(vectors):
            raise ValueError("one vector per asset")
        if not assets:
            return
        with self._write_lock:
            self._upsert_locked(assets, vectors)

    def _upsert_locked(self, assets: Sequence[Asset], vectors) -> None:
        """(Write lock held.) Store these rows, and note them in the listing (which knows the trash)."""
        rows = [self._row(asset, vector) for asset, vector in zip(assets, vectors)]
        self._refuse_if_superseded()
        self._call("store the assets", self._client.upsert, self.collection, rows)
        self._listing.note([("put", row["sha256"], entry_of(row)) for row in rows])
        if self._recent is not None:
            self._recent.remember(row["sha256"] for row in rows)

    def _row(self, asset: Asset, vector: np.ndarray) -> dict:
        if vector.shape != (self.dim,):
            raise ModelMismatchError(f"vector has shape {vector.shape}, the collection expects ({self.dim},)")
        return schemas.asset_row(asset, vector, self.version)

    def flush(self) -> None:
        """After a batch of writes: Milvus Lite searches unsealed rows slowly until a flush seals
        them. A server seals on its own, and a flush there costs seconds, so it is skipped."""
        if self.embedded:
            self._call("flush the asset collection", self._client.flush, self.collection)

    def rows_locked(self):
        """Hold the row lock (ragkit.storage.row_lock): no other writer of the library, in any process,
        reads-and-rewrites or deletes rows meanwhile. Reads that decide a write pass `latest=True`."""
        return self.row_lock.held()

    def delete(self, sha256s: Iterable[str]) -> int:
        ids = [validate_sha256(s) for s in sha256s]
        if not ids:
            return 0
        with self.rows_locked(), self._write_lock:
            self._refuse_if_superseded()
            result = self._call("delete assets", self._client.delete, self.collection, ids=ids)
            if not self.embedded:
                # Milvus 2.3 answers a Session read right after a delete without it (count and
                # listing still show the rows; seen every time); one Strong read waits it in.
                self._call("confirm the delete", self._client.query, self.collection, filter="",
                           output_fields=["count(*)"], consistency_level=DEDUP_CONSISTENCY)
            self._listing.note([("remove", sha, None) for sha in ids])
            if self._recent is not None:
                self._recent.forget(ids)
        return int(result.get("delete_count", len(ids))) if isinstance(result, dict) else len(ids)

    def restore_from_trash(self, sha256s: Iterable[str], original_exists: Callable[[str], bool]) -> BulkResult:
        """The one restore rule: rows come back from the trash exactly as they were (tags, provenance),
        unless they are not in the trash or their original was deleted by an unfinished emptying."""
        def applies(asset: Asset) -> str | None:
            if not asset.trashed:
                return NOT_IN_TRASH
            return None if original_exists(asset.sha256) else FILE_GONE
        return self.update_many(sha256s, lambda asset: dataclasses.replace(asset, trashed_at=0), applies)

    def update_many(self, sha256s: Iterable[str], change: Callable[[Asset], Asset],
                    applies: Callable[[Asset], str | None] = lambda asset: None) -> BulkResult:
        """Change many assets, UPDATE_BATCH at a time: read their rows (vectors included: Milvus has
        no partial update), apply `change`, upsert the step's rows at once. `applies(asset)` is None
        for an asset the change is for, else why not (it is skipped). Read and write of a step hold
        the row lock and read every writer's last write, so two changes never undo each other, in one
        process or several (ragkit.storage.row_lock)."""
        ids = list(dict.fromkeys(validate_sha256(s) for s in sha256s))
        result = BulkResult()
        for start in range(0, len(ids), UPDATE_BATCH):
            step = ids[start:start + UPDATE_BATCH]
            with self.rows_locked(), self._write_lock:
                rows = {row["sha256"]: row for row in self._get_rows(step, with_vector=True, latest=True)}
                changed, vectors = [], []
                for sha in step:
                    row = rows.get(sha)
                    if row is None:
                        result.missing.append(sha)
                        continue
                    asset = self._asset(row)
                    why_not = applies(asset)
                    if why_not:
                        result.skipped[sha] = why_not
                        continue
                    updated = change(asset)
                    result.done.append(updated)
                    if updated != asset:
                        changed.append(updated)
                        vectors.append(row["vector"])
                if changed:
                    self._upsert_locked(changed, np.asarray(vectors, dtype=np.float32))
        return result

    def update_tags(self, sha256: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Asset:
        """Add/remove tags on one asset."""
        result = self.update_many([sha256], tag_change(add, remove))
        if not result.done:
            raise AssetNotFoundError(f"No asset {sha256} in the library.")
        return result.done[0]

    def update(self, sha256: str, change: Callable[[Asset], Asset]) -> Asset:
        """Rewrite one asset as `change` makes it (Milvus has no partial update: the row is re-upserted
        with its vector; derived fields such as `keywords` follow the new values)."""
        result = self.update_many([sha256], change)
        if not result.done:
            raise AssetNotFoundError(f"No asset {sha256} in the library.")
        return result.done[0]

    # --- reads --------------------------------------------------------------------------
    def _asset(self, row: dict) -> Asset:
        return schemas.row_asset(row)

    def _get_rows(self, sha256s: Sequence[str], with_vector: bool = False, latest: bool = False) -> list[dict]:
        """`latest`: every process's last write (Strong on a server), for a read that decides a write."""
        ids = [validate_sha256(s) for s in sha256s]
        if not ids:
            return []
        fields = self.fields + (["vector"] if with_vector else [])
        return list(self._call("read assets", self._client.get, self.collection, ids=ids,
                               output_fields=fields, **(self._dedup_read if latest else self._read)))

    def get(self, sha256: str) -> Asset | None:
        rows = self._get_rows([sha256])
        return self._asset(rows[0]) if rows else None

    def get_many(self, sha256s: Sequence[str], latest: bool = False) -> list[Asset]:
        """Assets in the order asked for; unknown ids are skipped. `latest`: see _get_rows."""
        by_id = {row["sha256"]: self._asset(row)
                 for row in self._get_rows(list(dict.fromkeys(sha256s)), latest=latest)}
        return [by_id[s] for s in sha256s if s in by_id]

    def existing(self, sha256s: Sequence[str]) -> set[str]:
        """Which of these ids are already stored (duplicate detection), by any process."""
        ids = list(dict.fromkeys(sha256s))
        found = self._query_existing(ids)
        if self._recent is not None:
            found = self._recent.confirm(ids, found, self._query_existing)
        return found

    def _query_existing(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            rows = self._call("check for duplicates", self._client.query, self.collection,
                              filter=ids_filter(chunk), output_fields=["sha256"], limit=len(chunk),
                              **self._dedup_read)
            found.update(row["sha256"] for row in rows)
        return found

    def assets_with_vectors(self, sha256s: Sequence[str]) -> tuple[list[Asset], np.ndarray]:
        """Assets and their stored vectors (copies between collections); unknown ids are skipped."""
        rows = self._get_rows(sha256s, with_vector=True)
        vectors = np.asarray([row["vector"] for row in rows], dtype=np.float32).reshape(len(rows), self.dim)
        return [self._asset(row) for row in rows], vectors

    def get_vector(self, sha256: str) -> np.ndarray:
        rows = self._get_rows([sha256], with_vector=True)
        if not rows:
            raise AssetNotFoundError(f"No asset {sha256} in the library.")
        return np.asarray(rows[0]["vector"], dtype=np.float32)

    def count(self, tags: Iterable[str] = (), source: str | None = None, filters: Filters | None = None) -> int:
        """Assets in the library (not in the trash) that pass the filters (or have all these tags
        and this source)."""
        filters = as_filters(filters, tags, source)
        if filters:
            return len(self._ordered_ids(filters))
        if not self._live:
            return self._rows()
        if not self.embedded:  # a server counts through a filter in its engine
            rows = self._call("count assets", self._client.query, self.collection, filter=self._live,
                              output_fields=["count(*)"], **self._read)
            return int(rows[0]["count(*)"]) if rows else 0
        # Milvus Lite counts through a filter by building every matching row: 14 s at 100k. The
        # listing knows; before it is built, all rows minus the trash (which is small) is 0.4 s.
        total = self._rows()
        known = self._listing.count_if_current(total)
        if known is not None:
            return known
        trashed = self._call("count the trash", self._client.query, self.collection, filter=IN_TRASH_FILTER,
                             output_fields=["count(*)"], **self._read)
        return total - (int(trashed[0]["count(*)"]) if trashed else 0)

    def is_empty(self) -> bool:
        """No row at all, not even in the trash."""
        return self._rows() == 0

    def _rows(self) -> int:
        """Every row, the trash included."""
        rows = self._call("count assets", self._client.query, self.collection, filter="",
                          output_fields=["count(*)"], **self._read)
        return int(rows[0]["count(*)"]) if rows else 0

    def _expr(self, filters: Filters) -> str:
        """The Milvus filter for `filters` (tags normalised the way they are stored: 'Red ' finds
        'red'), over the assets that are not in the trash."""
        return filters.expression(live=bool(self._live))

    def search(self, vector: np.ndarray, k: int = 6, tags: Iterable[str] = (), source: str | None = None,
               min_score: float | None = None, filters: Filters | None = None, usable_at: int | None = None,
               for_reference: bool = False) -> list[SearchHit]:
        """Top-k by cosine similarity, best first, optionally filtered (`filters`, or tags and source).
        With `usable_at` (epoch ms), only assets within their usage rights then; with `for_reference`,
        only assets that may be sent as references (not marked "do not use as a reference")."""
        filters = as_filters(filters, tags, source)
        k = max(1, min(int(k), MAX_HITS))
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ModelMismatchError(f"query vector is {query.shape[1]}-d, the collection is {self.dim}-d")
        rights = rights_filter(usable_at, for_reference) if self.has_rights else ""
        if filters and self.embedded:  # Milvus Lite's own tag filters are slow (ragkit.storage.lite_reads)
            matching, total = self._listing_view(filters)
            found = lite_reads.filtered_search(lambda e, limit, ef: self._search_raw(query, _both(self._live, rights, e),
                                                                                     limit, ef),
                                               matching, total, k, filters, self._search_params(k).get("ef", 0),
                                               exact=lambda ids: self._exact_hits(query, ids, rights_matcher(usable_at, for_reference)))
        elif filters:
            found = self._server_filtered_search(query, k, filters, rights)
        else:
            found = self._search_raw(query, self._live_and(rights), k)
        hits = [SearchHit(self._asset(hit["entity"]), float(hit["distance"])) for hit in found]
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        return hits

    def _exact_hits(self, query: np.ndarray, ids: Sequence[str], keep: Callable[[dict], bool]) -> list[dict]:
        """These assets as hits, best first, by cosine computed here (ragkit.storage.lite_reads' exact route);
        `keep` applies the usage-rights filters (filters.rights_matcher)."""
        rows = [row for row in self._get_rows(ids, with_vector=True) if not row.get("trashed_at") and keep(row)]
        if not rows:
            return []
        vectors = np.asarray([row.pop("vector") for row in rows], dtype=np.float32)
        q = query.reshape(-1)
        scores = vectors @ q / np.maximum(np.linalg.norm(vectors, axis=1) * np.linalg.norm(q), 1e-12)
        return [{"distance": float(scores[i]), "entity": rows[i]} for i in np.argsort(-scores, kind="stable")]

    def _server_filtered_search(self, query: np.ndarray, k: int, filters: Filters, rights: str = "") -> list[dict]:
        """A filtered search on a Milvus server. Milvus filters in its engine, fast, but HNSW with a
        filter that keeps some percent of the rows loses recall (Milvus 2.3.5 at 100k: 0.90 for a 10 %
        filter at ef 128, still 0.97 at ef 1500), while a narrow one (1-3 %) is searched exactly. So a
        filter that keeps >= OVER_FETCH_MIN_SHARE of the library is an unfiltered search deep enough for
        k matches, checked here (recall 1.0); a narrower one is Milvus' own filtered search."""
        matching, total = self._listing_view(filters)
        share = len(matching) / max(total, 1)
        if share >= OVER_FETCH_MIN_SHARE:
            limit = lite_reads.over_fetch_limit(k, share)
            if limit <= lite_reads.MAX_LIMIT:
                # Only what the check needs comes back with the deep search; the k kept get the rest.
                hits = self._search_raw(query, self._live_and(rights), limit, fields=["sha256", *LISTING_FIELDS])
                keeps = lite_reads.matcher(filters)
                kept = [hit for hit in hits if keeps(hit["entity"])][:k]
                if len(kept) >= k or len(hits) < limit:  # enough, or every asset was looked at
                    rows = {row["sha256"]: row for row in self._get_rows([h["entity"]["sha256"] for h in kept])}
                    return [{"distance": h["distance"], "entity": rows[h["entity"]["sha256"]]}
                            for h in kept if h["entity"]["sha256"] in rows]
        # A narrow filter: Milvus searches it exactly (below ~7 % of a segment, knowhere leaves HNSW).
        return self._search_raw(query, _both(self._expr(filters), rights), k)

    def keyword_search(self, text: str, limit: int, tags: Iterable[str] = (), source: str | None = None,
                       filters: Filters | None = None, usable_at: int | None = None,
                       for_reference: bool = False) -> list[dict]:
        """Rows whose name, tags, brief or caption contain words of `text` (Milvus full-text search,
        BM25), best first, with their `keywords` and `vector` (ragkit.search.hybrid orders and fuses them).
        [] where the collection has no full-text index (schema 1, or Milvus before 2.5). The usage-rights
        filters are those of `search`."""
        if not self.full_text:
            return []
        filters = as_filters(filters, tags, source)
        # On Milvus Lite a tag filter is its slow row-wise path (lite_reads): filter the hits here instead.
        post_filter = self.embedded and bool(filters)
        rights = rights_filter(usable_at, for_reference)  # full text implies schema 2 or later
        expr = _both(self._live if post_filter else self._expr(filters), rights)
        results = self._call("search by words", self._client.search, self.collection,
                             data=[schemas.keyword_query(text)], anns_field=schemas.KEYWORDS_SPARSE,
                             limit=max(1, min(int(limit), MAX_HITS)), filter=expr,
                             output_fields=[*self.fields, "keywords", "vector"],
                             search_params={"metric_type": "BM25"}, **self._read)
        rows = [hit["entity"] for hit in results[0]]
        if post_filter:
            keeps = lite_reads.matcher(filters)
            rows = [row for row in rows if keeps(row)]
        return rows

    def _live_and(self, expr: str) -> str:
        """`expr` over the assets that are not in the trash."""
        return _both(self._live, expr)

    def _search_raw(self, query: np.ndarray, expr: str, limit: int, min_ef: int = 0,
                    fields: list[str] | None = None) -> list[dict]:
        params = self._search_params(limit)
        if "ef" in params:
            params["ef"] = max(params["ef"], min_ef)
        results = self._call("search", self._client.search, self.collection, data=query.tolist(),
                             anns_field="vector", limit=limit, filter=expr, output_fields=fields or self.fields,
                             search_params={"metric_type": "COSINE", "params": params}, **self._read)
        return list(results[0])

    def _search_params(self, k: int) -> dict:
        index_type = self._index.get("index_type")
        if index_type in ("HNSW", "HNSW_SQ", "AUTOINDEX"):
            # ef 128 costs ~0.1 ms more than 64 in faiss (nothing next to Milvus Lite's per-search
            # overhead) and buys recall margin: 0.9985 vs 0.997 on one 100k segment (bench/).
            return {"ef": max(128, 2 * k)}
        if index_type and index_type.startswith("IVF"):
            nlist = int((self._index.get("params") or {}).get("nlist", 128))
            return {"nprobe": self._index.get("search_nprobe", min(nlist, max(16, nlist // 8)))}
        return {}

    # --- listing: newest first, filtered, tag counts (ragkit.storage.listing) ----------------------
    def drop_listing(self) -> None:
        """Forget the catalog: the next listing rescans (benchmarks, tests)."""
        self._listing.drop()

    def _listing_view(self, filters: Filters) -> tuple[list[str], int]:
        """Ids matching the filter and the number of assets, from the listing as it stands (built if
        needed, not re-counted: on Milvus Lite a count(*) costs as much as a search)."""
        return self._listing.as_it_stands(filters)

    def _ordered_ids(self, filters: Filters) -> list[str]:
        """Ids matching the filter, newest first (Milvus cannot ORDER BY)."""
        return self._listing.ordered(self._rows(), filters)

    def matching_ids(self, tags: Iterable[str] = (), source: str | None = None,
                     filters: Filters | None = None) -> list[str]:
        """Every asset in the library that passes the filters, newest first (export)."""
        return list(self._ordered_ids(as_filters(filters, tags, source)))

    def scan(self, expr: str = "", fields: Sequence[str] = ("created_at",)) -> list[dict]:
        """Every matching row (chosen fields), however many there are."""
        output = list(dict.fromkeys(["sha256", *fields]))
        if self.embedded:  # Milvus Lite: a few big queries, not an iterator (ragkit.storage.lite_reads)
            return lite_reads.scan(lambda e: self._call("list assets", self._client.query, self.collection,
                                                        filter=e, output_fields=output), expr, self._rows())
        rows = self._call("list assets", self._client.query, self.collection, filter=expr,
                          output_fields=output, limit=QUERY_WINDOW, **self._read)
        if len(rows) < QUERY_WINDOW:
            return list(rows)
        rows = []
        iterator = self._call("list assets", self._client.query_iterator, self.collection,
                              batch_size=4096, filter=expr, output_fields=output)
        try:
            while batch := iterator.next():
                rows.extend(batch)
        finally:
            iterator.close()
        return rows

    def page(self, offset: int = 0, limit: int = 24, tags: Iterable[str] = (),
             source: str | None = None, filters: Filters | None = None) -> Page:
        """One page of assets that pass the filters, newest first."""
        ordered = self._ordered_ids(as_filters(filters, tags, source))
        offset = max(0, int(offset))
        window = ordered[offset:offset + limit]
        return Page(assets=self.get_many(window), total=len(ordered), offset=offset, limit=limit)

    # --- the trash (schema 2 and later; a schema-1 library has none) -----------------------
    def trashed(self) -> list[Asset]:
        """What is in the trash, most recently trashed first (empty for a schema-1 library)."""
        ids = self.trashed_ids()
        found: list[Asset] = []
        for start in range(0, len(ids), 1000):
            found += self.get_many(ids[start:start + 1000])
        return found

    def trashed_ids(self) -> list[str]:
        """Ids in the trash, most recently trashed first."""
        if not self.has_trash:
            return []
        return self._listing.trashed(self._rows())

    def trashed_page(self, offset: int = 0, limit: int = 24) -> Page:
        ordered = self.trashed_ids()
        offset = max(0, int(offset))
        return Page(assets=self.get_many(ordered[offset:offset + limit]), total=len(ordered), offset=offset,
                    limit=limit)

    def trash_count(self) -> int:
        if not self.has_trash:
            return 0
        if self.embedded:  # Milvus Lite counts through a filter by building every matching row (see count)
            known = self._listing.trashed_if_current(self._rows())
            if known is not None:
                return len(known)
        rows = self._call("count the trash", self._client.query, self.collection, filter=IN_TRASH_FILTER,
                          output_fields=["count(*)"], **self._read)
        return int(rows[0]["count(*)"]) if rows else 0

    def trashed_before(self, cutoff_ms: int) -> list[str]:
        """Ids moved to the trash before `cutoff_ms` (epoch ms): one filtered query, usually empty."""
        if not self.has_trash:
            return []
        if self.embedded:  # the listing knows, once built (a long-running app asks on every Trash view)
            known = self._listing.trashed_if_current(self._rows(), before=int(cutoff_ms))
            if known is not None:
                return known
        return [row["sha256"] for row in self.scan(f"{IN_TRASH_FILTER} and trashed_at < {int(cutoff_ms)}", ["trashed_at"])]

    def trashed_among(self, sha256s: Sequence[str]) -> set[str]:
        """Which of these (stored) ids are in the trash; read like a duplicate check (every write seen)."""
        if not self.has_trash or not sha256s:
            return set()
        found: set[str] = set()
        ids = list(dict.fromkeys(sha256s))
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            rows = self._call("look in the trash", self._client.query, self.collection,
                              filter=f"{ids_filter(chunk)} and {IN_TRASH_FILTER}", output_fields=["sha256"],
                              limit=len(chunk), **self._dedup_read)
            found.update(row["sha256"] for row in rows)
        return found

    # --- upgrades (ragkit.lifecycle.upgrade) ----------------------------------------------------------
    @property
    def complete(self) -> bool:
        """False while an upgrade is still copying into this collection."""
        return self._properties().get(schemas.PROP_COMPLETE, "1") != "0"

    def mark_complete(self) -> None:
        self._call("mark the collection complete", self._client.alter_collection_properties,
                   self.collection, properties={schemas.PROP_COMPLETE: "1"})

    def mark_filling(self) -> None:
        """A reindex fills it (again, after it served once): not complete, and open to writes."""
        self._call("mark the collection as being filled", self._client.alter_collection_properties,
                   self.collection, properties={schemas.PROP_COMPLETE: "0", schemas.PROP_SUPERSEDED_BY: ""})

    def mark_superseded(self, by: str) -> None:
        """From now on writes here are refused: they would not reach the collection that replaced it."""
        self._call("mark the collection as replaced", self._client.alter_collection_properties,
                   self.collection, properties={schemas.PROP_SUPERSEDED_BY: by})

    def superseded_by(self) -> str:
        return self._properties().get(schemas.PROP_SUPERSEDED_BY, "")

    def _refuse_if_superseded(self) -> None:
        """(Write lock held.) Another process may have upgraded the library, or re-indexed it with another
        model, since we opened it (one property read: ~1 ms on Milvus Lite, per batch of writes)."""
        if self.superseded_by():
            raise StoreSupersededError(
                "The library was upgraded by another process (to a new format, or re-indexed with another "
                "embedding model) while this one had it open, so this change was not saved. Reload the page "
                "(or run the command again) and redo it.")

    def all_tags(self) -> list[tuple[str, int]]:
        """Every tag with its number of assets, most used first (for filter pickers)."""
        return self._listing.tag_counts(self._rows())

    # --- near-duplicates (ragkit.search.duplicates) -----------------------------------------------
    # HNSW breadth for neighbour searches: a near-duplicate sits very close, the easiest query there
    # is; at 100k the same pairs came back at ef 16-128, and 64 costs half of 128 (bench/duplicates_bench.py).
    NEIGHBOUR_EF = 64

    def vector_batches(self, batch_size: int = 4096) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every asset's id and stored vector, one batch at a time (as Python lists, the vectors of a
        100k library would take ~2 GB)."""
        iterator = self._call("read the vectors", self._client.query_iterator, self.collection,
                              batch_size=batch_size, filter=self._live, output_fields=["sha256", "vector"])
        try:
            while batch := self._call("read the vectors", iterator.next):
                vectors = np.asarray([row["vector"] for row in batch], dtype=np.float32)
                yield [row["sha256"] for row in batch], vectors.reshape(len(batch), self.dim)
        finally:
            iterator.close()

    def neighbours(self, vectors: np.ndarray, k: int, min_score: float) -> list[list[tuple[str, float]]]:
        """For each query vector, up to k stored ids with cosine >= min_score, best first.

        One search call for the whole batch: Milvus Lite pays a per-row pass over the
        collection once per call, however many vectors it carries. A plain top-k with the cut
        done here, not a range search: Lite's range search is this same top-k (over-fetched 5x,
        so slower), and both engines answer it alike (bench/duplicates_bench.py)."""
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not len(queries):
            return []
        k = max(1, min(int(k), MAX_HITS))
        params = self._search_params(k)
        if "ef" in params:
            params["ef"] = max(self.NEIGHBOUR_EF, k)
        results = self._call("search for near-duplicates", self._client.search, self.collection,
                             data=queries.tolist(), anns_field="vector", limit=k, output_fields=["sha256"],
                             filter=self._live, search_params={"metric_type": "COSINE", "params": params},
                             **self._read)
        return [[(hit["sha256"], float(hit["distance"])) for hit in hits if hit["distance"] >= min_score]
                for hits in results]


def _both(*exprs: str) -> str:
    """The conjunction of these filter expressions ('' = no filter)."""
    return " and ".join(f"({part})" for part in exprs if part)


def tag_change(add: Iterable[str] = (), remove: Iterable[str] = ()) -> Callable[[Asset], Asset]:
    """The change that adds and removes these tags (normalised; a tag both added and removed goes)."""
    added, removed = normalise_tags(add), set(normalise_tags(remove))

    def change(asset: Asset) -> Asset:
        tags = tuple(t for t in normalise_tags([*asset.tags, *added]) if t not in removed)
        return asset if tags == asset.tags else dataclasses.replace(asset, tags=tags)
    return change
