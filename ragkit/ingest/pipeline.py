"""Files -> validated images -> dedup -> thumbnails -> batched embeddings -> store.

A pipeline of small stages, in the spirit of clip-retrieval's reader -> mapper -> writer:

1. *collect*: expand folders into image files (named files are always tried).
2. *load*: read bytes and hash them (worker threads).
3. *dedup*: drop ids seen earlier in this run or already stored (one query per chunk).
4. *prepare*: decode, validate, thumbnail and preprocess for the model (worker threads),
   running ahead of step 5 so decoding overlaps the model's forward pass.
5. *embed + write*: one model call per batch; originals and thumbnails are written
   (atomically) before the DB rows, so a crash never leaves a row without its files and
   a re-run simply completes the work: identity is the content hash, writes are upserts.
"""
from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
import unicodedata
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from ragkit.storage.blobs import BlobStore
from ragkit.errors import DiskFullError, InvalidImageError
from ragkit.storage.files import is_disk_full
from ragkit.ingest.images import decode_image, make_thumbnail
from ragkit.records import SOURCE_UPLOAD, Asset, IngestReport, Rejected
from ragkit.storage.store import AssetStore
from ragkit.tags import normalise_tags

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff",
                    ".ico", ".ppm", ".pgm", ".pbm", ".avif", ".heic", ".heif", ".jfif", ".mpo"}
MAX_FILE_BYTES = 256 * 1024 * 1024
DEFAULT_BATCH_SIZE = 32
DEFAULT_WORKERS = 2

ProgressCallback = Callable[["IngestProgress"], None]


@dataclass(frozen=True)
class Upload:
    """An in-memory file, e.g. from the browser. ``name`` is untrusted user text.

    The optional fields carry per-file metadata (import of an export, recovery); when
    unset, the values given to the whole ingest run apply.
    """
    name: str
    data: bytes
    tags: tuple[str, ...] = ()
    source: str | None = None
    provenance: "Provenance | None" = None
    created_at: int | None = None


@dataclass(frozen=True)
class Provenance:
    """Where a generated asset came from; stored on the asset."""
    prompt: str
    model: str
    reference_ids: tuple[str, ...] = ()
    details: dict = field(default_factory=dict, hash=False)  # more provenance: brand kit, job, usage, cost


@dataclass(frozen=True)
class IngestProgress:
    done: int        # inputs finished (added, duplicate or rejected)
    total: int
    added: int
    duplicates: int
    rejected: int
    current: str     # display name of the last finished input


@dataclass(frozen=True)
class Reembed:
    """An original already in the library, to embed again with another model (ragkit.lifecycle.reindex).

    It is read from its blob file and decoded and preprocessed like any input; its row keeps
    every field of `asset` (only the vector is new) and its files are left as they are."""
    path: Path
    asset: Asset


Source = Union[Path, Upload, Reembed]


@dataclass
class _Loaded:
    label: str       # what the report calls this input (path or upload name)
    filename: str    # safe display name stored on the asset
    data: bytes
    sha256: str
    upload: Upload | None = None  # per-file metadata, when the input carried any
    stored: Asset | None = None   # a library asset being embedded again (Reembed)


@dataclass
class _Prepared:
    loaded: _Loaded
    asset: Asset
    thumbnail: bytes  # empty for a re-embedded asset: its files exist
    tensor: object   # torch.Tensor, preprocessed for the model


def safe_display_name(name: str) -> str:
    """A user-supplied filename reduced to something safe to show and store.

    Directory parts (either slash), control characters and surrounding dots/spaces go;
    the result is never used as a path on disk (blobs are addressed by hash).
    """
    base = name.replace("\\", "/").split("/")[-1]
    base = "".join(ch for ch in unicodedata.normalize("NFC", base)
                   if unicodedata.category(ch)[0] != "C")
    base = base.strip(" .")
    return base[:200] or "unnamed"


def collect_sources(paths: Iterable[str | Path]) -> tuple[list[Path], list[Rejected]]:
    """Expand folders recursively (image extensions only, hidden entries skipped).

    A named path that is not a folder is always tried (reading it says why it can't be used);
    a path that can't be looked at, or a folder (or subfolder) that can't be listed, is rejected
    with the reason instead of silently contributing nothing.
    """
    files: list[Path] = []
    rejected: list[Rejected] = []
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except FileNotFoundError:
            if os.path.islink(path):
                files.append(path)  # a broken link: reading it says so
            else:
                rejected.append(Rejected(str(raw), "no such file or folder"))
            continue
        except OSError as exc:
            rejected.append(Rejected(str(raw), f"cannot open it ({exc.strerror or exc})"))
            continue
        if is_dir:
            files.extend(_walk_images(path, rejected))
        else:
            files.append(path)
    return files, rejected


def _walk_images(folder: Path, rejected: list[Rejected]) -> list[Path]:
    """Image files under folder, sorted; folders that can't be listed go to `rejected`."""
    def unlistable(exc: OSError) -> None:
        hint = "; check its permissions" if isinstance(exc, PermissionError) else ""
        rejected.append(Rejected(str(exc.filename or folder), f"cannot list this folder ({exc.strerror or exc}){hint}"))

    found = []
    for root, dirs, names in os.walk(folder, onerror=unlistable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(root) / name)
    return found


def _too_big(size: int, limit: int) -> InvalidImageError:
    return InvalidImageError(f"file is {size / 2**20:.0f} MiB; the limit is {limit // 2**20} MiB")


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _require_regular(mode: int, path: Path) -> None:
    if not stat.S_ISREG(mode):
        via = " (through a symbolic link)" if os.path.islink(path) else ""
        raise InvalidImageError(f"{_file_kind(mode)}{via}, not a regular file; only image files are read")


def read_image_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or InvalidImageError saying why not.

    Only regular files are read (a link to one is fine): a link to /dev/zero would be read
    until memory runs out, and opening a FIFO waits for a writer forever. The file is opened
    non-blocking and checked again on the open descriptor (a file swapped after the first
    look can't sneak in), and at most limit+1 bytes are read (a file that grows is caught).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InvalidImageError("broken symbolic link (what it points to does not exist)") from None
        raise InvalidImageError("the file disappeared before it could be read") from None
    except OSError as exc:
        raise InvalidImageError(f"cannot read file ({exc.strerror or exc})") from None
    _require_regular(info.st_mode, path)
    if info.st_size > limit:
        raise _too_big(info.st_size, limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidImageError(f"cannot read file ({exc.strerror or exc})") from None
    try:
        opened = os.fstat(fd)
        _require_regular(opened.st_mode, path)
        if opened.st_size > limit:
            raise _too_big(opened.st_size, limit)
        data = _read_at_most(fd, limit + 1, expected=opened.st_size)
    except OSError as exc:
        raise InvalidImageError(f"cannot read file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InvalidImageError(f"file grew past the {limit // 2**20} MiB limit while it was read")
    return data


def _read_at_most(fd: int, most: int, expected: int) -> bytes:
    """Up to `most` bytes: one read when the file is the size fstat said, chunks if it grows."""
    chunks: list[bytes] = []
    total, want = 0, expected + 1
    while total < most:
        chunk = os.read(fd, min(want, most - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        want = 1 << 20
    return b"".join(chunks)  # one chunk is returned as is, not copied


def _load_stored(source: Reembed) -> _Loaded | Rejected:
    """A library original, checked against its id (a damaged file must not get another's vector)."""
    asset = source.asset
    if not source.path.is_file():
        return Rejected(asset.sha256, "its original is missing from the blob store (`python -m ragkit doctor` "
                                      "lists such rows; `doctor --repair` removes them)")
    try:
        data = read_image_file(source.path, MAX_FILE_BYTES)
    except InvalidImageError as exc:
        return Rejected(asset.sha256, f"its original can't be read: {exc}")
    if hashlib.sha256(data).hexdigest() != asset.sha256:
        return Rejected(asset.sha256, "its original no longer matches its id (the file was damaged on disk): "
                                      "restore it from a backup, or delete the asset")
    return _Loaded(asset.sha256, asset.filename, data, asset.sha256, stored=asset)


def _load(source: Source) -> _Loaded | Rejected:
    if isinstance(source, Reembed):
        return _load_stored(source)
    if isinstance(source, Upload):
        label, filename, data = source.name, safe_display_name(source.name), source.data
    else:
        label, filename = str(source), safe_display_name(source.name)
        try:
            data = read_image_file(source, MAX_FILE_BYTES)
        except InvalidImageError as exc:
            return Rejected(label, str(exc))
    if len(data) > MAX_FILE_BYTES:
        return Rejected(label, str(_too_big(len(data), MAX_FILE_BYTES)))
    if not data:
        return Rejected(label, "empty file")
    upload = source if isinstance(source, Upload) else None
    return _Loaded(label, filename, data, hashlib.sha256(data).hexdigest(), upload)


class _Clock:
    """Strictly increasing millisecond timestamps, so 'newest first' keeps upload order."""
    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(int(time.time() * 1000), self._last + 1)
            return self._last


_clock = _Clock()


class _Claims:
    """Ids being ingested in this process right now, so that overlapping runs (two browser tabs
    dropping the same picture) never both add it: Milvus upserts, so the second write would
    silently replace the first one's tags and name while both runs report "added".

    A run claims an id before checking the store for it and releases it once its row is written.
    An id claimed by another run is put aside; after releasing all its own claims (so no two runs
    ever wait on each other), the run waits for it and checks again: stored by then means a
    duplicate, not stored (the other run failed) means it is this run's to add.
    """

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], object] = {}
        self._changed = threading.Condition()

    def claim(self, scope: str, ids: Iterable[str], owner: object) -> set[str]:
        """Claim what is free; returns the ids this owner now holds."""
        held = set()
        with self._changed:
            for sha in ids:
                if self._owners.setdefault((scope, sha), owner) is owner:
                    held.add(sha)
        return held

    def release(self, scope: str, ids: Iterable[str], owner: object) -> None:
        with self._changed:
            for sha in ids:
                if self._owners.get((scope, sha)) is owner:
                    del self._owners[(scope, sha)]
            self._changed.notify_all()

    def wait_free(self, scope: str, ids: Iterable[str], timeout: float) -> None:
        keys = [(scope, sha) for sha in ids]
        with self._changed:
            self._changed.wait_for(lambda: not any(k in self._owners for k in keys), timeout)


_claims = _Claims()
CLAIM_WAIT_S = 600.0  # an other run's batch is at most a few seconds of work; this only bounds a hang


class IngestPipeline:
    def __init__(self, store: AssetStore, blobs: BlobStore, embedder, *, max_pixels: int,
                 batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS) -> None:
        self.store = store
        self.blobs = blobs
        self.embedder = embedder
        self.max_pixels = max_pixels
        self.batch_size = max(1, batch_size)
        self.workers = max(1, workers)

    def _prepare(self, loaded: _Loaded, tags: tuple[str, ...], source: str,
                 provenance: Provenance | None) -> _Prepared | Rejected:
        try:
            decoded = decode_image(loaded.data, max_pixels=self.max_pixels,
                                   min_short=getattr(self.embedder, "image_size", 224))
            thumbnail = make_thumbnail(decoded.image) if loaded.stored is None else b""
            tensor = self.embedder.preprocess(decoded.image)
        except InvalidImageError as exc:
            return Rejected(loaded.label, str(exc))
        if loaded.stored is not None:
            return _Prepared(loaded, loaded.stored, thumbnail, tensor)
        upload = loaded.upload
        if upload is not None:
            tags = normalise_tags([*tags, *upload.tags])
            source = upload.source or source
            provenance = upload.provenance or provenance
        asset = Asset(
            sha256=loaded.sha256, filename=loaded.filename, mime=decoded.mime,
            width=decoded.width, height=decoded.height, size_bytes=len(loaded.data),
            tags=tags, source=source, created_at=(upload.created_at or 0) if upload else 0,
            prompt=provenance.prompt if provenance else "",
            model=provenance.model if provenance else "",
            reference_ids=provenance.reference_ids if provenance else (),
            details=dict(provenance.details) if provenance else {},
        )
        return _Prepared(loaded, asset, thumbnail, tensor)

    def _stream(self, sources: Sequence[Source], pool: ThreadPoolExecutor, tags: tuple[str, ...],
                source: str, provenance: Provenance | None, owner: object, held: set[str],
                contested: list[tuple[Source, str]]) -> Iterator[_Prepared | _Restored | Rejected | tuple[str, str]]:
        """Yield, in input order, each input's outcome: prepared, rejected, restored from the trash,
        or (label, sha) duplicate.

        Ids this run claims go into `held`; inputs whose id another run holds go into `contested`
        (and yield nothing now). A later input with the bytes of an earlier one shares its fate:
        a duplicate if the first was prepared, rejected with the same reason if it was not."""
        seen: set[str] = set()
        rejected_why: dict[str, str] = {}  # sha -> why its first input was rejected
        scope = _scope(self.store, self.blobs)
        chunk_size = self.batch_size * 4
        for start in range(0, len(sources), chunk_size):
            chunk = sources[start:start + chunk_size]
            loaded = list(pool.map(_load, chunk))
            fresh = {item.sha256 for item in loaded if isinstance(item, _Loaded) and item.sha256 not in seen}
            claimed = _claims.claim(scope, fresh, owner)  # claim first, then look
            held.update(claimed)
            stored = self.store.existing(sorted(claimed))
            in_trash = self.store.trashed_among(sorted(stored))
            stored -= {sha for sha in in_trash if not self.blobs.original_path(sha).is_file()}  # half-emptied: anew
            _claims.release(scope, stored, owner)
            held.difference_update(stored)
            restored = self._restore(in_trash & stored)
            pending: list[_Preparing | _Repeat | _Restored | Rejected | tuple[str, str]] = []
            for original, item in zip(chunk, loaded):
                if isinstance(item, Rejected):
                    pending.append(item)
                elif item.sha256 in restored and item.sha256 not in seen:
                    seen.add(item.sha256)  # a later copy in this run is a plain duplicate
                    pending.append(_Restored(item.label, item.sha256))
                elif item.sha256 in stored:
                    pending.append((item.label, item.sha256))
                elif item.sha256 in seen:
                    pending.append(_Repeat(item.label, item.sha256))
                elif item.sha256 not in claimed:
                    contested.append((original, item.sha256))
                else:
                    seen.add(item.sha256)
                    pending.append(_Preparing(item.sha256, pool.submit(self._prepare, item, tags, source,
                                                                         provenance)))
            for entry in pending:
                yield _settle(entry, rejected_why)

    def _restore(self, trashed: set[str]) -> set[str]:
        """A picture added again while it is in the trash comes back from it, as it was (tags,
        provenance); the ids that came back."""
        if not trashed:
            return set()
        back = self.store.restore_from_trash(sorted(trashed), lambda sha: self.blobs.original_path(sha).is_file())
        return {asset.sha256 for asset in back.done}

    def run(self, sources: Sequence[Source], *, tags: Iterable[str] = (), source: str = SOURCE_UPLOAD,
            provenance: Provenance | None = None, on_progress: ProgressCallback | None = None,
            pre_rejected: Sequence[Rejected] = ()) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport(rejected=list(pre_rejected))
        clean_tags = normalise_tags(tags)
        total = len(sources) + len(pre_rejected)
        done = len(pre_rejected)
        batch: list[_Prepared] = []
        scope, owner, held = _scope(self.store, self.blobs), object(), set()  # this run's claims (_Claims)

        def progress(current: str) -> None:
            if on_progress:
                on_progress(IngestProgress(done, total, len(report.added), len(report.duplicates),
                                           len(report.rejected), current))

        def flush_batch() -> None:
            nonlocal done
            if not batch:
                return
            import torch
            vectors = self.embedder.embed_tensors(torch.stack([p.tensor for p in batch]))
            assets, full = [], None
            for prepared in batch:
                try:
                    if prepared.loaded.stored is None:  # a re-embedded asset has its files
                        self.blobs.put(prepared.asset.sha256, prepared.loaded.data, prepared.thumbnail)
                except OSError as exc:
                    if not is_disk_full(exc):
                        raise
                    full = exc  # keep what landed: the images stored so far get their rows below
                    break
                created_at = prepared.asset.created_at or _clock.next()  # imports keep their date
                assets.append(Asset(**{**prepared.asset.__dict__, "created_at": created_at}))
            if full is not None:
                del batch[len(assets):]
                vectors = vectors[:len(assets)]
            if assets:
                self.store.upsert(assets, vectors)
            written = [a.sha256 for a in assets]
            _claims.release(scope, written, owner)  # stored: runs waiting on these find duplicates
            held.difference_update(written)
            report.added.extend((p.loaded.label, a) for p, a in zip(batch, assets))
            done += len(batch)
            last = batch[-1].loaded.filename if batch else ""
            batch.clear()
            progress(last)
            if full is not None:
                if report.added:
                    self.store.flush()
                raise DiskFullError(
                    f"The disk holding {self.blobs.root} is full ({full.filename or 'writing an image'}): "
                    f"{len(report.added)} image(s) were added before it filled and are kept; the rest were not. "
                    "Free some space and run the same command again: it adds the rest (those already added "
                    "count as duplicates).")

        to_do: list[Source] = list(sources)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="ragkit-ingest") as pool:
            try:
                while to_do:
                    contested: list[tuple[Source, str]] = []
                    for outcome in self._stream(to_do, pool, clean_tags, source, provenance, owner, held,
                                                contested):
                        if isinstance(outcome, _Prepared):
                            batch.append(outcome)
                            if len(batch) >= self.batch_size:
                                flush_batch()
                            continue
                        if isinstance(outcome, Rejected):
                            report.rejected.append(outcome)
                            label = outcome.path
                        elif isinstance(outcome, _Restored):
                            report.restored.append((outcome.label, outcome.sha256))
                            label = outcome.label
                        else:
                            report.duplicates.append(outcome)
                            label = outcome[0]
                        done += 1
                        progress(label)
                    flush_batch()
                    _claims.release(scope, held, owner)  # before waiting: runs never wait on each other
                    held.clear()
                    if contested:  # another run is adding these: wait for it, then look again
                        _claims.wait_free(scope, [sha for _, sha in contested], CLAIM_WAIT_S)
                    to_do = [original for original, _ in contested]
            except BaseException:
                # Ctrl-C or a failure: drop the queued reads and decodes instead of finishing
                # them on the way out; only the few already running are waited for.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            finally:
                _claims.release(scope, held, owner)  # a failed run frees its ids for the others
        if report.added:
            self.store.flush()
        report.seconds = time.perf_counter() - started
        return report


@dataclass
class _Preparing:
    sha256: str
    future: Future


@dataclass
class _Restored:
    """An input whose picture was in the trash, and is back in the library now."""
    label: str
    sha256: str


@dataclass
class _Repeat:
    """An input whose bytes an earlier input of this run already brought."""
    label: str
    sha256: str


def _settle(entry: "_Preparing | _Repeat | _Restored | Rejected | tuple[str, str]",
            rejected_why: dict[str, str]) -> "_Prepared | _Restored | Rejected | tuple[str, str]":
    """An input's outcome, once known; inputs come in order, so a repeat's first is settled already."""
    if isinstance(entry, _Preparing):
        outcome = entry.future.result()
        if isinstance(outcome, Rejected):
            rejected_why[entry.sha256] = outcome.reason
        return outcome
    if isinstance(entry, _Repeat):
        why = rejected_why.get(entry.sha256)
        return (entry.label, entry.sha256) if why is None else Rejected(entry.label, why)
    return entry


def _scope(store: AssetStore, blobs: BlobStore) -> str:
    """Which library an id is claimed in: its data folder and collection (tests open many)."""
    return f"{blobs.root.resolve()}::{store.collection}"


def embed_query_image(data: bytes, embedder, max_pixels: int) -> np.ndarray:
    """Decode an example image the same way ingest does and embed it (for search by image)."""
    try:
        decoded = decode_image(data, max_pixels=max_pixels, min_short=getattr(embedder, "image_size", 224))
    except InvalidImageError as exc:
        raise InvalidImageError(f"The example image can't be used: {exc}") from None
    return embedder.embed_images([decoded.image])[0]


__all__ = ["IngestPipeline", "Upload", "Reembed", "Provenance", "IngestProgress", "collect_sources",
           "read_image_file", "safe_display_name", "embed_query_image"]
