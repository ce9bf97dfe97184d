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
import threading
import time
import unicodedata
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from .blobs import BlobStore
from .errors import InvalidImageError
from .images import decode_image, make_thumbnail
from .records import SOURCE_UPLOAD, Asset, IngestReport, Rejected
from .store import AssetStore, normalise_tags

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


@dataclass(frozen=True)
class IngestProgress:
    done: int        # inputs finished (added, duplicate or rejected)
    total: int
    added: int
    duplicates: int
    rejected: int
    current: str     # display name of the last finished input


Source = Union[Path, Upload]


@dataclass
class _Loaded:
    label: str       # what the report calls this input (path or upload name)
    filename: str    # safe display name stored on the asset
    data: bytes
    sha256: str
    upload: Upload | None = None  # per-file metadata, when the input carried any


@dataclass
class _Prepared:
    loaded: _Loaded
    asset: Asset
    thumbnail: bytes
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
    """Expand folders recursively (image extensions only, hidden entries skipped)."""
    files: list[Path] = []
    rejected: list[Rejected] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                        found.append(Path(root) / name)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            rejected.append(Rejected(str(raw), "no such file or folder"))
    return files, rejected


def _load(source: Source) -> _Loaded | Rejected:
    if isinstance(source, Upload):
        label, filename, data = source.name, safe_display_name(source.name), source.data
    else:
        label, filename = str(source), safe_display_name(source.name)
        try:
            size = source.stat().st_size
            if size > MAX_FILE_BYTES:
                return Rejected(label, f"file is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB")
            data = source.read_bytes()
        except OSError as exc:
            return Rejected(label, f"cannot read file ({exc.strerror or exc})")
    if len(data) > MAX_FILE_BYTES:
        return Rejected(label, f"file is {len(data) / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB")
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
            thumbnail = make_thumbnail(decoded.image)
            tensor = self.embedder.preprocess(decoded.image)
        except InvalidImageError as exc:
            return Rejected(loaded.label, str(exc))
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
        )
        return _Prepared(loaded, asset, thumbnail, tensor)

    def _stream(self, sources: Sequence[Source], pool: ThreadPoolExecutor, tags: tuple[str, ...],
                source: str, provenance: Provenance | None) -> Iterator[_Prepared | Rejected | tuple[str, str]]:
        """Yield, in input order, each input's outcome: prepared, rejected or (label, sha) duplicate."""
        seen: set[str] = set()
        chunk_size = self.batch_size * 4
        for start in range(0, len(sources), chunk_size):
            loaded = list(pool.map(_load, sources[start:start + chunk_size]))
            candidates = [item for item in loaded if isinstance(item, _Loaded)]
            stored = self.store.existing([item.sha256 for item in candidates])
            pending: list[Future | _Prepared | Rejected | tuple[str, str]] = []
            for item in loaded:
                if isinstance(item, Rejected):
                    pending.append(item)
                elif item.sha256 in stored or item.sha256 in seen:
                    pending.append((item.label, item.sha256))
                else:
                    seen.add(item.sha256)
                    pending.append(pool.submit(self._prepare, item, tags, source, provenance))
            for entry in pending:
                yield entry.result() if isinstance(entry, Future) else entry

    def run(self, sources: Sequence[Source], *, tags: Iterable[str] = (), source: str = SOURCE_UPLOAD,
            provenance: Provenance | None = None, on_progress: ProgressCallback | None = None,
            pre_rejected: Sequence[Rejected] = ()) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport(rejected=list(pre_rejected))
        clean_tags = normalise_tags(tags)
        total = len(sources) + len(pre_rejected)
        done = len(pre_rejected)
        batch: list[_Prepared] = []

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
            assets = []
            for prepared in batch:
                self.blobs.put(prepared.asset.sha256, prepared.loaded.data, prepared.thumbnail)
                created_at = prepared.asset.created_at or _clock.next()  # imports keep their date
                assets.append(Asset(**{**prepared.asset.__dict__, "created_at": created_at}))
            self.store.upsert(assets, vectors)
            report.added.extend((p.loaded.label, a) for p, a in zip(batch, assets))
            done += len(batch)
            last = batch[-1].loaded.filename
            batch.clear()
            progress(last)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="ragkit-ingest") as pool:
            for outcome in self._stream(list(sources), pool, clean_tags, source, provenance):
                if isinstance(outcome, _Prepared):
                    batch.append(outcome)
                    if len(batch) >= self.batch_size:
                        flush_batch()
                    continue
                if isinstance(outcome, Rejected):
                    report.rejected.append(outcome)
                    label = outcome.path
                else:
                    report.duplicates.append(outcome)
                    label = outcome[0]
                done += 1
                progress(label)
            flush_batch()
        if report.added:
            self.store.flush()
        report.seconds = time.perf_counter() - started
        return report


def embed_query_image(data: bytes, embedder, max_pixels: int) -> np.ndarray:
    """Decode an example image the same way ingest does and embed it (for search by image)."""
    try:
        decoded = decode_image(data, max_pixels=max_pixels, min_short=getattr(embedder, "image_size", 224))
    except InvalidImageError as exc:
        raise InvalidImageError(f"The example image can't be used: {exc}") from None
    return embedder.embed_images([decoded.image])[0]


__all__ = ["IngestPipeline", "Upload", "Provenance", "IngestProgress", "collect_sources",
           "safe_display_name", "embed_query_image"]
