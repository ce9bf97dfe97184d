"""Export the library to a zip a team can take away, and import it back.

The zip holds ``originals/<sha256><ext>`` and ``metadata.json`` (one entry per asset:
filename, tags, source, dates and provenance). Import reads entries in memory, never
extracts names from the archive to disk (no zip-slip), checks each file's hash against
its metadata and goes through the normal ingest path, so imported assets are validated,
deduplicated, thumbnailed and embedded with the current model.
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from .errors import InvalidInputError
from .filters import validate_sha256
from .images import EXTENSION_BY_MIME
from .ingest import MAX_FILE_BYTES, Provenance, Upload
from .records import SOURCES, IngestReport, Rejected

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
FORMAT = "ragkit-export"
FORMAT_VERSION = 1
IMPORT_BATCH = 64


@dataclass
class ExportReport:
    path: str
    assets: int
    bytes: int
    missing: list[str] = field(default_factory=list)  # rows whose original file is gone

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def export_library(library, out: Path | str, *, tags: Iterable[str] = (), source: str | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write originals + metadata.json for every asset matching the filters."""
    out = Path(out)
    ids = [row["sha256"] for row in library.store.scan(_filter_expr(tags, source))]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    entries, missing = [], []
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for start in range(0, len(ids), 256):
            for asset in library.get_many(ids[start:start + 256]):
                path = library.blobs.original_path(asset.sha256)
                if not path.is_file():
                    missing.append(asset.sha256)
                    continue
                member = f"originals/{asset.sha256}{EXTENSION_BY_MIME.get(asset.mime, '')}"
                archive.write(path, member)
                entries.append({**asset.to_dict(), "file": member})
                if on_progress:
                    on_progress(len(entries) + len(missing), len(ids))
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "model": library.model_id,
                    "exported_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                    "assets": entries}
        archive.writestr("metadata.json", json.dumps(manifest, ensure_ascii=False, indent=1),
                         compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(out)  # a half-written export never has the final name
    return ExportReport(str(out), len(entries), out.stat().st_size, missing)


def _filter_expr(tags: Iterable[str], source: str | None) -> str:
    from .store import _filter
    return _filter(tags, source)


def _created_ms(text: str) -> int | None:
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def import_library(library, archive_path: Path | str,
                   on_progress: Callable | None = None) -> IngestReport:
    """Bring an export back: tags, source, dates and provenance included."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(f"{archive_path} is not a ragkit export (.zip): {exc}") from None
    with archive:
        try:
            manifest = json.loads(archive.read("metadata.json"))
        except (KeyError, ValueError) as exc:
            raise InvalidInputError(f"{archive_path} has no readable metadata.json ({exc}); "
                                    "was it made by `python -m ragkit export`?") from None
        if manifest.get("format") != FORMAT:
            raise InvalidInputError(f"{archive_path} is not a ragkit export (format {manifest.get('format')!r}).")
        members = {info.filename: info for info in archive.infolist()}
        total = IngestReport()
        uploads: list[Upload] = []

        def flush() -> None:
            if uploads:
                part = library.ingest_uploads(uploads, on_progress=on_progress)
                total.added.extend(part.added)
                total.duplicates.extend(part.duplicates)
                total.rejected.extend(part.rejected)
                total.seconds += part.seconds
                uploads.clear()

        for entry in manifest.get("assets", []):
            upload = _entry_upload(archive, members, entry, total)
            if upload is not None:
                uploads.append(upload)
            if len(uploads) >= IMPORT_BATCH:
                flush()
        flush()
    return total


def _entry_upload(archive: zipfile.ZipFile, members: dict, entry: dict, report: IngestReport) -> Upload | None:
    label = str(entry.get("file") or entry.get("filename") or "?")
    info = members.get(entry.get("file", ""))
    if info is None:
        report.rejected.append(Rejected(label, "listed in metadata.json but missing from the archive"))
        return None
    if info.file_size > MAX_FILE_BYTES:
        report.rejected.append(Rejected(label, f"file is larger than {MAX_FILE_BYTES // 2**20} MiB"))
        return None
    data = archive.read(info)
    try:
        expected = validate_sha256(str(entry.get("sha256", "")))
    except InvalidInputError:
        expected = ""
    if hashlib.sha256(data).hexdigest() != expected:
        report.rejected.append(Rejected(label, "content does not match its sha256 in metadata.json (corrupt archive?)"))
        return None
    source = entry.get("source") if entry.get("source") in SOURCES else None
    provenance = None
    if entry.get("prompt") or entry.get("model"):
        refs = tuple(r for r in entry.get("reference_ids", []) if isinstance(r, str) and _SHA256.match(r))
        provenance = Provenance(str(entry.get("prompt", "")), str(entry.get("model", "")), refs)
    return Upload(str(entry.get("filename") or label), data, tags=tuple(entry.get("tags") or ()),
                  source=source, provenance=provenance, created_at=_created_ms(entry.get("created_at")))
