"""The asset store: one Milvus collection per embedding model, through pymilvus MilvusClient.

Milvus Lite (a local ``.db`` path) by default; the same code talks to a Milvus server
when the URI is ``http://host:19530``. The schema is explicit: every field we filter on
or show is a typed column, never a dynamic field.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .config import redact_uri
from .errors import AssetNotFoundError, ModelMismatchError, StoreError, StoreLockedError
from .catalog import Catalog, Change, entry_of
from . import lite_reads
from .filters import asset_filter, ids_filter, validate_sha256
from .records import Asset, Page, SearchHit

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_REFERENCES = 16
MAX_FILENAME_BYTES = 512
MAX_PROMPT_BYTES = 8192
# Milvus caps offset+limit of a single query; larger scans go through query_iterator.
QUERY_WINDOW = 16384
METADATA_FIELDS = ["sha256", "filename", "mime", "width", "height", "size_bytes", "tags", "source",
                   "created_at", "prompt", "model", "reference_ids"]
# Index choice, measured by bench/ (docs/performance.md): HNSW. In Milvus Lite every search
# also pays a per-row Python pass over all rows, so HNSW and IVF_FLAT search alike (~90 ms at
# 100k vs ~250 ms for FLAT) with recall@10 >= 0.999; HNSW needs no training (IVF's k-means on
# small segments prints faiss warnings to stderr) and keeps its recall on any distribution.
DEFAULT_INDEX = {"index_type": "HNSW", "params": {"M": 16, "efConstruction": 200}}
ORDER_CACHE_SECONDS = 30.0
RECENT_WRITE_SECONDS = 10.0                         # see existing()
STALE_READ_RETRIES_S = (0.02, 0.05, 0.1, 0.2, 0.4)  # ~0.8 s in all, only for ids written moments ago


# gRPC's C core prints keepalive chatter ("GOAWAY ... too_many_pings") straight to stderr,
# past Python logging; this must be set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def quiet_milvus_logging() -> None:
    """pymilvus logs full tracebacks even for errors we handle; users should see our message only."""
    for name in ("pymilvus", "milvus_lite", "grpc", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def normalise_tag(tag: str) -> str:
    """Tags are case-insensitive words: trimmed, single-spaced, lower-case, at most 64 chars."""
    cleaned = " ".join(str(tag).split()).lower()
    cleaned = "".join(ch for ch in cleaned if ch.isprintable())
    return _truncate_utf8(cleaned, MAX_TAG_CHARS).strip()


def normalise_tags(tags: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = normalise_tag(tag)
        if cleaned:
            seen.setdefault(cleaned)
    return tuple(list(seen)[:MAX_TAGS])


def _filter(tags: Iterable[str], source: str | None) -> str:
    """Filter with tags normalised the same way they were stored ('Red ' finds 'red')."""
    return asset_filter(normalise_tags(tags), source)


# Milvus Lite runs in this process: pymilvus hands a ``.db`` path to milvus_lite's ServerManager,
# which starts one gRPC server per path (holding an flock on ``<path>/LOCK``) and reuses it for
# every later client of that path. MilvusClient.close() never stops it (only exit does), so the
# file would stay locked for other processes. We count our clients per path and stop the server
# when the last one closes (disconnect()).
_embedded_lock = threading.Lock()
_embedded_clients: dict[str, int] = {}


def _lite_path(uri: str) -> str | None:
    """For a URI pymilvus serves with Milvus Lite (it ends in .db), the path milvus_lite's
    ServerManager keys its server by; None for a server URI."""
    return os.path.abspath(uri) if uri.endswith(".db") else None


def _release_lite_server(path: str) -> None:
    """Stop the in-process Milvus Lite server of this file: frees its LOCK (caller holds _embedded_lock)."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover - pymilvus without milvus-lite cannot open a .db
        return
    server_manager_instance.release_server(path)


def connect(uri: str, token: str = "") -> "MilvusClient":  # noqa: F821
    """Open a MilvusClient, turning the common failures into messages that name the fix.

    Close it with disconnect(): for a Milvus Lite file that also frees the file once no other
    client of this process uses it."""
    from pymilvus import MilvusClient  # importing pymilvus resets its logger: quiet it afterwards
    quiet_milvus_logging()
    embedded = not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))
    if embedded:
        Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    lite = _lite_path(uri)
    try:
        if lite is None:
            return MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
        with _embedded_lock:
            try:
                # A dedicated channel: closing it closes it (a shared one would outlive the server).
                client = MilvusClient(uri=uri, dedicated=True)
            except BaseException:
                if not _embedded_clients.get(lite):  # a server started for nobody: stop it
                    _release_lite_server(lite)
                raise
            _embedded_clients[lite] = _embedded_clients.get(lite, 0) + 1
            return client
    except Exception as exc:  # noqa: BLE001 - pymilvus raises many types; we translate them all
        text = str(exc)
        if embedded and ("Open local milvus failed" in text or "lock" in text.lower()):
            raise StoreLockedError(
                f"The library database {uri} is open in another process (a running app or CLI). "
                "Stop that process, or share one server between them: run "
                f"`milvus-lite server --data-dir {Path(uri).parent} --port 19530` and set "
                "RAGKIT_MILVUS_URI=http://127.0.0.1:19530 for every process.") from None
        where = redact_uri(uri)
        raise StoreError(f"Cannot connect to Milvus at {where}: {_short(text)}. "
                         "Check RAGKIT_MILVUS_URI (and RAGKIT_MILVUS_TOKEN for a server).") from None


def disconnect(client, uri: str) -> None:
    """Close a client from connect() (once). The last one of this process on a Milvus Lite file
    stops that file's in-process server, so another process (or a later connect) can open it."""
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing after a server went away is harmless
        pass
    lite = _lite_path(uri)
    if lite is None:
        return
    with _embedded_lock:
        left = _embedded_clients.get(lite, 0) - 1
        if left > 0:
            _embedded_clients[lite] = left
            return
        _embedded_clients.pop(lite, None)
        try:
            _release_lite_server(lite)
        except Exception:  # noqa: BLE001 - the OS frees the lock at exit anyway
            log.warning("could not stop the Milvus Lite server of %s", uri, exc_info=True)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model_id: str
    count: int


class AssetStore:
    """CRUD + vector search over the asset collection of one embedding model."""

    def __init__(self, client, collection: str, dim: int, model_id: str,
                 index: dict | None = None, shared: bool = False) -> None:
        self._client = client
        self.collection = collection
        self.dim = dim
        self.model_id = model_id
        self._index = index or DEFAULT_INDEX
        # The listing (dates, sources, tags of every asset; ragkit.catalog) comes from one scan and
        # then follows this store's own writes. It is rebuilt when the row count changes behind
        # our back (another store or process wrote) and, on a shared server, every 30 s so other
        # people's tag edits show up.
        self._shared = shared
        self._catalog: Catalog | None = None
        self._catalog_made_at = 0.0
        self._catalog_total: int | None = None    # the row count the catalog agrees with; None: re-read
        self._catalog_log: list[Change] | None = None  # own writes during a build
        self._catalog_lock = threading.Lock()     # guards the four fields above and the catalog
        self._catalog_build = threading.Lock()    # one build scan at a time
        self._lock = threading.Lock()             # writes; also guards _recent_writes
        self._recent_writes: dict[str, float] = {}  # id -> when this store upserted it (existing())
        self._ensure_collection()

    # --- set-up -------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"Milvus could not {what}: {_short(str(exc))}") from None

    def _ensure_collection(self) -> None:
        from pymilvus import DataType, MilvusClient
        client = self._client
        if self._call("list collections", client.has_collection, self.collection):
            self._check_compatible()
        else:
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("sha256", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            schema.add_field("filename", DataType.VARCHAR, max_length=MAX_FILENAME_BYTES)
            schema.add_field("mime", DataType.VARCHAR, max_length=64)
            schema.add_field("width", DataType.INT32)
            schema.add_field("height", DataType.INT32)
            schema.add_field("size_bytes", DataType.INT64)
            schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR,
                             max_capacity=MAX_TAGS, max_length=MAX_TAG_CHARS * 4)
            schema.add_field("source", DataType.VARCHAR, max_length=16)
            schema.add_field("created_at", DataType.INT64)
            schema.add_field("prompt", DataType.VARCHAR, max_length=MAX_PROMPT_BYTES)
            schema.add_field("model", DataType.VARCHAR, max_length=128)
            schema.add_field("reference_ids", DataType.ARRAY, element_type=DataType.VARCHAR,
                             max_capacity=MAX_REFERENCES, max_length=64)
            index_params = client.prepare_index_params()
            index_params.add_index("vector", metric_type="COSINE", **self._index)
            self._call("create the asset collection", client.create_collection,
                       self.collection, schema=schema, index_params=index_params)
            self._call("record the collection's model", client.alter_collection_properties,
                       self.collection, properties={"ragkit.model_id": self.model_id,
                                                    "ragkit.schema_version": SCHEMA_VERSION})
        # A new process must load the collection before it can search (Milvus Lite 3.x too).
        self._call("load the asset collection", client.load_collection, self.collection)

    def _check_compatible(self) -> None:
        info = self._call("describe the asset collection", self._client.describe_collection, self.collection)
        stored_model = (info.get("properties") or {}).get("ragkit.model_id", "")
        vector_dim = next((int(f["params"]["dim"]) for f in info["fields"] if f["name"] == "vector"), None)
        if (stored_model and stored_model != self.model_id) or vector_dim != self.dim:
            raise ModelMismatchError(
                f"Collection {self.collection} holds vectors of model {stored_model or '?'} "
                f"({vector_dim}-d), but the configured model is {self.model_id} ({self.dim}-d). "
                "Vectors of two models can't be compared: set RAGKIT_CLIP_MODEL / RAGKIT_CLIP_PRETRAINED "
                "back, or re-ingest your images under the new model.")

    def other_collections(self) -> list[CollectionInfo]:
        """Libraries indexed with other models (to explain an empty library after a model change)."""
        found = []
        for name in self._call("list collections", self._client.list_collections):
            if name == self.collection or not name.startswith("ragkit_"):
                continue
            props = self._client.describe_collection(name).get("properties") or {}
            count = self._client.get_collection_stats(name).get("row_count", 0)
            found.append(CollectionInfo(name, props.get("ragkit.model_id", "?"), int(count)))
        return found

    # --- writes -------------------------------------------------------------------------
    def upsert(self, assets: Sequence[Asset], vectors: np.ndarray) -> None:
        if len(assets) != len(vectors):
            raise ValueError("one vector per asset")
        if not assets:
            return
        rows = [self._row(asset, vector) for asset, vector in zip(assets, vectors)]
        with self._lock:
            self._call("store the assets", self._client.upsert, self.collection, rows)
            self._note_writes([("put", row["sha256"], entry_of(row)) for row in rows])
            now = time.monotonic()
            if len(self._recent_writes) > 10_000:
                self._recent_writes = {k: t for k, t in self._recent_writes.items()
                                       if now - t < RECENT_WRITE_SECONDS}
            self._recent_writes.update((row["sha256"], now) for row in rows)

    def _row(self, asset: Asset, vector: np.ndarray) -> dict:
        if vector.shape != (self.dim,):
            raise ModelMismatchError(f"vector has shape {vector.shape}, the collection expects ({self.dim},)")
        return {
            "sha256": validate_sha256(asset.sha256),
            "vector": np.asarray(vector, dtype=np.float32).tolist(),
            "filename": _truncate_utf8(asset.filename, MAX_FILENAME_BYTES),
            "mime": asset.mime[:64],
            "width": int(asset.width), "height": int(asset.height), "size_bytes": int(asset.size_bytes),
            "tags": list(normalise_tags(asset.tags)),
            "source": asset.source,
            "created_at": int(asset.created_at),
            "prompt": _truncate_utf8(asset.prompt, MAX_PROMPT_BYTES),
            "model": asset.model[:128],
            "reference_ids": [validate_sha256(r) for r in asset.reference_ids][:MAX_REFERENCES],
        }

    def flush(self) -> None:
        """Seal what was written so searches use the index (Milvus Lite searches growing data slowly)."""
        self._call("flush the asset collection", self._client.flush, self.collection)

    def delete(self, sha256s: Iterable[str]) -> int:
        ids = [validate_sha256(s) for s in sha256s]
        if not ids:
            return 0
        with self._lock:
            result = self._call("delete assets", self._client.delete, self.collection, ids=ids)
            self._note_writes([("remove", sha, None) for sha in ids])
            for sha in ids:
                self._recent_writes.pop(sha, None)
        return int(result.get("delete_count", len(ids))) if isinstance(result, dict) else len(ids)

    def update_tags(self, sha256: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Asset:
        """Add/remove tags on one asset (Milvus has no partial update: re-upsert the row)."""
        row = self._get_rows([sha256], with_vector=True)
        if not row:
            raise AssetNotFoundError(f"No asset {sha256} in the library.")
        current = row[0]
        removed = set(normalise_tags(remove))
        tags = [t for t in normalise_tags([*current["tags"], *add]) if t not in removed]
        asset = self._asset(current)
        updated = Asset(**{**asset.__dict__, "tags": tuple(tags)})
        self.upsert([updated], np.asarray([current["vector"]], dtype=np.float32))
        return updated

    # --- reads --------------------------------------------------------------------------
    def _asset(self, row: dict) -> Asset:
        return Asset(
            sha256=row["sha256"], filename=row.get("filename", ""), mime=row.get("mime", ""),
            width=int(row.get("width", 0)), height=int(row.get("height", 0)),
            size_bytes=int(row.get("size_bytes", 0)), tags=tuple(row.get("tags") or ()),
            source=row.get("source", "upload"), created_at=int(row.get("created_at", 0)),
            prompt=row.get("prompt", ""), model=row.get("model", ""),
            reference_ids=tuple(row.get("reference_ids") or ()),
        )

    def _get_rows(self, sha256s: Sequence[str], with_vector: bool = False) -> list[dict]:
        ids = [validate_sha256(s) for s in sha256s]
        if not ids:
            return []
        fields = METADATA_FIELDS + (["vector"] if with_vector else [])
        return list(self._call("read assets", self._client.get, self.collection, ids=ids, output_fields=fields))

    def get(self, sha256: str) -> Asset | None:
        rows = self._get_rows([sha256])
        return self._asset(rows[0]) if rows else None

    def get_many(self, sha256s: Sequence[str]) -> list[Asset]:
        """Assets in the order asked for; unknown ids are skipped."""
        by_id = {row["sha256"]: self._asset(row) for row in self._get_rows(list(dict.fromkeys(sha256s)))}
        return [by_id[s] for s in sha256s if s in by_id]

    def existing(self, sha256s: Sequence[str]) -> set[str]:
        """Which of these ids are already stored (duplicate detection).

        Milvus Lite can answer a query from another thread without a row whose upsert has already
        returned (seen: 1 in 30 three-way upload races). So an id this store wrote in the last
        RECENT_WRITE_SECONDS that the query misses is asked again for a moment; still missing
        means someone deleted it since."""
        ids = list(dict.fromkeys(sha256s))
        found = self._query_existing(ids)
        now = time.monotonic()
        with self._lock:
            recent = {sha for sha in ids if now - self._recent_writes.get(sha, -1e18) < RECENT_WRITE_SECONDS}
        for delay in STALE_READ_RETRIES_S:
            missed = recent - found
            if not missed:
                break
            time.sleep(delay)
            found |= self._query_existing(sorted(missed))
        return found

    def _query_existing(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            rows = self._call("check for duplicates", self._client.query, self.collection,
                              filter=ids_filter(chunk), output_fields=["sha256"], limit=len(chunk))
            found.update(row["sha256"] for row in rows)
        return found

    def get_vector(self, sha256: str) -> np.ndarray:
        rows = self._get_rows([sha256], with_vector=True)
        if not rows:
            raise AssetNotFoundError(f"No asset {sha256} in the library.")
        return np.asarray(rows[0]["vector"], dtype=np.float32)

    def count(self, tags: Iterable[str] = (), source: str | None = None) -> int:
        expr = _filter(tags, source)
        if not expr:
            rows = self._call("count assets", self._client.query, self.collection, filter="",
                              output_fields=["count(*)"])
            return int(rows[0]["count(*)"]) if rows else 0
        return len(self._ordered_ids(tags, source))

    def search(self, vector: np.ndarray, k: int = 6, tags: Iterable[str] = (), source: str | None = None,
               min_score: float | None = None) -> list[SearchHit]:
        """Top-k by cosine similarity, best first, optionally filtered."""
        k = max(1, min(int(k), 1024))
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ModelMismatchError(f"query vector is {query.shape[1]}-d, the collection is {self.dim}-d")
        expr = _filter(tags, source)
        if expr and not self._shared:  # embedded Milvus Lite: its own filters are slow (ragkit.lite_reads)
            matching, total = self._listing_view(tags, source)
            found = lite_reads.filtered_search(lambda e, limit, ef: self._search_raw(query, e, limit, ef), matching,
                                               total, k, normalise_tags(tags), source or None,
                                               self._search_params(k).get("ef", 0))
        else:
            found = self._search_raw(query, expr, k)
        hits = [SearchHit(self._asset(hit["entity"]), float(hit["distance"])) for hit in found]
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        return hits

    def _search_raw(self, query: np.ndarray, expr: str, limit: int, min_ef: int = 0) -> list[dict]:
        params = self._search_params(limit)
        if "ef" in params:
            params["ef"] = max(params["ef"], min_ef)
        results = self._call("search", self._client.search, self.collection, data=query.tolist(),
                             anns_field="vector", limit=limit, filter=expr, output_fields=METADATA_FIELDS,
                             search_params={"metric_type": "COSINE", "params": params})
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

    # --- the listing (ragkit.catalog) -----------------------------------------------------
    def _note_writes(self, changes: list[Change]) -> None:
        """Apply this store's own writes to the catalog (and to a build's log, if one runs)."""
        with self._catalog_lock:
            if self._catalog is not None:
                self._catalog.apply(changes)
                self._catalog_total = None  # the count it agrees with is read again next time
            if self._catalog_log is not None:
                self._catalog_log.extend(changes)

    def drop_listing(self) -> None:
        """Forget the catalog: the next listing rescans (benchmarks, tests)."""
        with self._catalog_lock:
            self._catalog = None

    def _listing(self) -> Catalog:
        """The catalog, up to date: built by one scan, then kept by our own writes."""
        total = self.count()
        with self._catalog_lock:
            if self._catalog_current(total):
                return self._catalog  # type: ignore[return-value]
        with self._catalog_build:
            with self._catalog_lock:
                if self._catalog_current(total):  # another thread built it meanwhile
                    return self._catalog  # type: ignore[return-value]
                self._catalog_log = []
            try:
                rows = self.scan("", ["created_at", "source", "tags"])
            except BaseException:
                with self._catalog_lock:
                    self._catalog_log = None
                raise
            with self._catalog_lock:
                catalog = Catalog(rows)
                catalog.apply(self._catalog_log or [])  # writes the scan may or may not have seen
                self._catalog, self._catalog_log = catalog, None
                self._catalog_made_at, self._catalog_total = time.monotonic(), total
                return catalog

    def _catalog_current(self, total: int) -> bool:
        """(Catalog lock held.) Does the catalog still describe the collection?"""
        if self._catalog is None:
            return False
        if self._shared and time.monotonic() - self._catalog_made_at >= ORDER_CACHE_SECONDS:
            return False
        if self._catalog_total is None:  # our own writes since: they are in it; note the new count
            self._catalog_total = total
        return self._catalog_total == total

    def _listing_view(self, tags: Iterable[str], source: str | None) -> tuple[list[str], int]:
        """Ids matching the filter and the number of assets, from the listing as it stands: built if
        needed, but not re-counted (on Milvus Lite a count(*) costs as much as a search)."""
        with self._catalog_lock:
            catalog = self._catalog
        if catalog is None:
            catalog = self._listing()
        with self._catalog_lock:
            return catalog.ordered(normalise_tags(tags), source or None), len(catalog)

    def _ordered_ids(self, tags: Iterable[str] = (), source: str | None = None) -> list[str]:
        """Ids matching the filter, newest first (Milvus cannot ORDER BY)."""
        _filter(tags, source)  # validates the source, like a query would
        catalog = self._listing()
        with self._catalog_lock:
            return catalog.ordered(normalise_tags(tags), source or None)

    def scan(self, expr: str = "", fields: Sequence[str] = ("created_at",)) -> list[dict]:
        """Every matching row (chosen fields), however many there are."""
        output = list(dict.fromkeys(["sha256", *fields]))
        if not self._shared:  # embedded Milvus Lite: a few big queries, not an iterator (ragkit.lite_reads)
            return lite_reads.scan(lambda e: self._call("list assets", self._client.query, self.collection,
                                                        filter=e, output_fields=output), expr, self.count())
        rows = self._call("list assets", self._client.query, self.collection, filter=expr,
                          output_fields=output, limit=QUERY_WINDOW)
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
             source: str | None = None) -> Page:
        """One page of assets, newest first."""
        ordered = self._ordered_ids(tags, source)
        offset = max(0, int(offset))
        window = ordered[offset:offset + limit]
        return Page(assets=self.get_many(window), total=len(ordered), offset=offset, limit=limit)

    def all_tags(self) -> list[tuple[str, int]]:
        """Every tag with its number of assets, most used first (for filter pickers)."""
        catalog = self._listing()
        with self._catalog_lock:
            return list(catalog.tag_counts())

