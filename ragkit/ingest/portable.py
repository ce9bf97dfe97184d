"""Export the library to a zip a team can take away, and import it back.

The zip holds ``originals/<sha256><ext>`` and ``metadata.json`` (one entry per asset:
filename, tags, source, dates and provenance). Import reads entries in memory, never
extracts names from the archive to disk (no zip-slip), checks each file's hash against
its metadata and goes through the normal ingest path, so imported assets are validated,
deduplicated, thumbnailed and embedded with the current model.

An archive is untrusted input. Import reads every size from the stream, never from the zip's
headers alone: metadata.json is read up to a cap, each member up to the per-file limit, and the
whole archive may unpack to a bounded multiple of its own size. Members go to ingest in small
batches bounded by bytes, so memory never holds more than about one batch. One bad entry is
rejected with its reason and the others are imported; a manifest that is not an export at all
is one InvalidInputError.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from ragkit.errors import InvalidInputError
from ragkit.storage.filters import Filters, validate_sha256
from ragkit.ingest.images import EXTENSION_BY_MIME
from ragkit.ingest.pipeline import MAX_FILE_BYTES, Provenance, Upload
from ragkit.records import SOURCES, IngestReport, Rejected, plausible_created_at

FORMAT = "ragkit-export"
FORMAT_VERSION = 1
# A real export's metadata.json weighs ~625 bytes and ~20 JSON values per asset: 60 MiB and 2M
# values at 100k assets (measured on a generated export). json.loads builds ~75 bytes of Python
# objects per value, and a dense file ('[{},{},...]') would cost 25 times its size; so both the
# bytes and the values are capped, with room for 100k assets with long prompts or many tags.
MAX_METADATA_BYTES = 256 * 2**20
MAX_METADATA_VALUES = 5_000_000
# Export stores originals uncompressed, so a genuine archive unpacks to about its own size; a
# re-zipped one may shrink a little. Anything unpacking to much more is a zip bomb.
MAX_UNPACK_RATIO = 8
UNPACK_ALLOWANCE = 2**30
IMPORT_BATCH = 64                  # entries per ingest run...
IMPORT_BATCH_BYTES = 128 * 2**20   # ...or fewer, so that one batch's members stay this small
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError)


@dataclass
class ExportReport:
    path: str
    assets: int
    bytes: int
    missing: list[str] = field(default_factory=list)  # rows whose original file is gone

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def export_library(library, out: Path | str, *, tags: Iterable[str] = (), source: str | None = None,
                   filters: Filters | None = None, ids: Iterable[str] | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write originals + metadata.json for every asset matching the filters (`filters`, or tags and
    source), or for these `ids` (a selection); never what is in the trash."""
    out = Path(out)
    if ids is None:
        ids = library.store.matching_ids(tags, source, filters=filters)
    else:
        ids = list(dict.fromkeys(validate_sha256(sha) for sha in ids))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    entries, missing = [], []
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for start in range(0, len(ids), 256):
            for asset in library.get_many(ids[start:start + 256]):
                if asset.trashed:  # a selection may hold an asset moved to the trash since
                    continue
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


def import_library(library, archive_path: Path | str,
                   on_progress: Callable | None = None) -> IngestReport:
    """Bring an export back: tags, source, dates and provenance included."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(f"{archive_path} is not a ragkit export (.zip): {exc}") from None
    with archive:
        entries = _read_manifest(archive, archive_path)
        run = _ImportRun(library, archive, _unpack_budget(Path(archive_path)), on_progress)
        for number, raw in enumerate(entries, 1):
            run.add(number, raw)
        return run.finish()


def _unpack_budget(path: Path) -> int:
    return MAX_UNPACK_RATIO * path.stat().st_size + UNPACK_ALLOWANCE


_NOT_AN_EXPORT = "was it made by `python -m ragkit export`?"
_EXPORT_IN_PARTS = "export the library in parts (`python -m ragkit export --tag …`)"


def _read_manifest(archive: zipfile.ZipFile, archive_path) -> list:
    """metadata.json's list of entries; one InvalidInputError naming what is wrong with the whole file."""
    text = _manifest_text(archive, archive_path)
    try:
        manifest = json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"{archive_path}: metadata.json is nested too deeply to be an export; "
                                f"{_NOT_AN_EXPORT}") from None
    except ValueError as exc:
        raise InvalidInputError(f"{archive_path}: metadata.json is not valid JSON ({exc}); {_NOT_AN_EXPORT}") from None
    if not isinstance(manifest, dict):
        raise InvalidInputError(f"{archive_path}: metadata.json is {_kind(manifest)}, not an object; {_NOT_AN_EXPORT}")
    if manifest.get("format") != FORMAT:
        raise InvalidInputError(f"{archive_path} is not a ragkit export (format {str(manifest.get('format'))[:40]!r}); "
                                f"{_NOT_AN_EXPORT}")
    entries = manifest.get("assets")
    if not isinstance(entries, list):
        raise InvalidInputError(f"{archive_path}: metadata.json's \"assets\" must be a list of entries, "
                                f"not {_kind(entries)}; {_NOT_AN_EXPORT}")
    return entries


def _manifest_text(archive: zipfile.ZipFile, archive_path) -> str:
    """metadata.json as text, read within MAX_METADATA_BYTES and MAX_METADATA_VALUES."""
    try:
        info = archive.getinfo("metadata.json")
    except KeyError:
        raise InvalidInputError(f"{archive_path} has no metadata.json; {_NOT_AN_EXPORT}") from None
    too_big = (f"{archive_path}: metadata.json is larger than {MAX_METADATA_BYTES // 2**20} MiB, more than an "
               f"export of a few hundred thousand assets needs; {_EXPORT_IN_PARTS}")
    if info.file_size > MAX_METADATA_BYTES:
        raise InvalidInputError(too_big)
    try:
        with archive.open(info) as stream:
            raw = stream.read(MAX_METADATA_BYTES + 1)  # the header's size is not trusted
    except _READ_ERRORS as exc:
        raise InvalidInputError(f"{archive_path}: metadata.json cannot be read ({exc}); {_NOT_AN_EXPORT}") from None
    if len(raw) > MAX_METADATA_BYTES:
        raise InvalidInputError(too_big)
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")  # each element or member but a first follows a comma
    if values > MAX_METADATA_VALUES:
        raise InvalidInputError(f"{archive_path}: metadata.json holds more than {MAX_METADATA_VALUES:,} JSON "
                                f"values; {_EXPORT_IN_PARTS}")
    try:
        return raw.decode("utf-8")  # the bytes are freed on return: one copy while parsing
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{archive_path}: metadata.json is not UTF-8 text ({exc}); {_NOT_AN_EXPORT}") from None


@dataclass(frozen=True)
class _Entry:
    """One metadata.json entry, checked: the member to read and what to store with it."""
    file: str
    sha256: str
    filename: str
    tags: tuple[str, ...]
    source: str | None
    provenance: Provenance | None
    created_at: int | None

    def upload(self, data: bytes) -> Upload:
        return Upload(self.filename, data, tags=self.tags, source=self.source, provenance=self.provenance,
                      created_at=self.created_at)


def _parse_entry(raw: object) -> _Entry:
    """An entry as export writes it; InvalidInputError saying which field is wrong, and how."""
    if not isinstance(raw, dict):
        raise InvalidInputError(f"is {_kind(raw)}, not an object")
    file = _text(raw, "file", required=True)
    sha256 = _text(raw, "sha256", required=True)
    try:
        sha256 = validate_sha256(sha256)
    except InvalidInputError:
        raise InvalidInputError(f"\"sha256\" must be 64 hex digits, not {sha256[:80]!r}") from None
    source = _text(raw, "source") or None
    if source is not None and source not in SOURCES:
        raise InvalidInputError(f"\"source\" must be one of {', '.join(SOURCES)}, not {source[:40]!r}")
    tags = _strings(raw, "tags")
    references = _strings(raw, "reference_ids")
    try:
        references = tuple(validate_sha256(r) for r in references)
    except InvalidInputError as exc:
        raise InvalidInputError(f"\"reference_ids\" must be asset ids: {exc}") from None
    prompt, model = _text(raw, "prompt"), _text(raw, "model")
    provenance = Provenance(prompt, model, references) if prompt or model else None
    filename = _text(raw, "filename") or PurePosixPath(file).name
    return _Entry(file, sha256, filename, tags, source, provenance, _created_at(raw.get("created_at")))


def _text(raw: dict, key: str, required: bool = False) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidInputError(f"\"{key}\" must be a string, not {_kind(value)}")
    return value


def _strings(raw: dict, key: str) -> tuple[str, ...]:
    """A list of strings; a lone string is refused, never split into its letters."""
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInputError(f"\"{key}\" must be a list of strings, not {_kind(value)}")
    return tuple(value)


def _created_at(value: object) -> int | None:
    """Epoch milliseconds of an ISO 8601 date within 1970..2199; None (the import time) when absent."""
    if value is None:
        return None
    try:
        epoch_ms = int(datetime.fromisoformat(value).timestamp() * 1000)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"\"created_at\" must be an ISO 8601 date such as "
                                f"2024-05-01T10:00:00+00:00, not {_kind(value)}") from None
    if not plausible_created_at(epoch_ms):
        raise InvalidInputError(f"\"created_at\" {value[:40]!r} is outside 1970..2199; correct it, or remove "
                                "it to import the image with today's date")
    return epoch_ms


def _kind(value: object) -> str:
    """How a wrong JSON value is described in a message: its type, and a short preview of a scalar."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} ({repr(value)[:40]})" if isinstance(value, (str, int, float)) else kind


class _ImportRun:
    """One import: entries in, in order; members read one at a time within a byte budget, and
    handed to ingest in small batches bounded by count and bytes."""

    def __init__(self, library, archive: zipfile.ZipFile, budget: int, on_progress: Callable | None) -> None:
        self.library = library
        self.archive = archive
        self.members = {info.filename: info for info in archive.infolist()}
        self.left = budget  # uncompressed bytes this archive may still unpack to
        self.on_progress = on_progress
        self.report = IngestReport()
        self.batch: list[Upload] = []
        self.batch_bytes = 0
        self.queued: dict[str, tuple[str, int]] = {}  # member -> (sha256, entry number) of its first listing
        self.repeats: list[tuple[str, str, int, int]] = []  # (label, sha256, entry number, first's number)

    def add(self, number: int, raw: object) -> None:
        label = _label(number, raw)
        try:
            entry = _parse_entry(raw)
            if entry.file in self.queued:
                self._note_repeat(number, label, entry)
                return
            data = self._read(entry)
        except InvalidInputError as exc:
            where = f"metadata.json entry {number}"
            self.report.rejected.append(Rejected(label, str(exc) if label == where else f"{where}: {exc}"))
            return
        self.queued[entry.file] = (entry.sha256, number)
        self.batch.append(entry.upload(data))
        self.batch_bytes += len(data)
        if len(self.batch) >= IMPORT_BATCH or self.batch_bytes >= IMPORT_BATCH_BYTES:
            self._flush()

    def _note_repeat(self, number: int, label: str, entry: _Entry) -> None:
        """A member listed again is not read again; its outcome is its first listing's (see finish)."""
        sha256, first = self.queued[entry.file]
        if entry.sha256 != sha256:
            raise InvalidInputError(f"{_quoted(entry.file)}: content does not match its sha256 in metadata.json "
                                    f"(entry {first} lists the same file)")
        self.repeats.append((label, sha256, number, first))

    def _read(self, entry: _Entry) -> bytes:
        """The member's bytes, at most MAX_FILE_BYTES and within the budget, checked against its sha256."""
        info = self.members.get(entry.file)
        if info is None or info.is_dir():
            raise InvalidInputError(f"{_quoted(entry.file)} is listed but missing from the archive")
        limit = min(MAX_FILE_BYTES, self.left)
        if info.file_size > limit:
            raise InvalidInputError(self._too_big(info.file_size))
        try:
            with self.archive.open(info) as stream:
                data = stream.read(limit + 1)  # never more than the limit, whatever the header says
        except _READ_ERRORS as exc:
            self.left -= info.file_size
            raise InvalidInputError(f"{_quoted(entry.file)} cannot be read from the archive ({exc}); "
                                    "the zip is damaged: export it again") from None
        self.left -= len(data)
        if len(data) > limit:
            raise InvalidInputError(self._too_big(len(data)))
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise InvalidInputError(f"{_quoted(entry.file)}: content does not match its sha256 in metadata.json "
                                    "(corrupt archive?)")
        return data

    def _too_big(self, size: int) -> str:
        if size > MAX_FILE_BYTES:
            return f"file is larger than {MAX_FILE_BYTES // 2**20} MiB, the limit for one image"
        return ("not read: the archive already unpacked to more than a ragkit export of its size can hold "
                f"({MAX_UNPACK_RATIO}x its size + {UNPACK_ALLOWANCE // 2**20} MiB); a zip bomb? If it is a "
                "re-compressed export, unzip it and zip it again without compression (zip -0 -r)")

    def _flush(self) -> None:
        if not self.batch:
            return
        part = self.library.ingest_uploads(self.batch, on_progress=self.on_progress)
        self.report.added.extend(part.added)
        self.report.duplicates.extend(part.duplicates)
        self.report.rejected.extend(part.rejected)
        self.report.seconds += part.seconds
        self.batch, self.batch_bytes = [], 0

    def finish(self) -> IngestReport:
        """Ingest what is left, then settle the repeated listings against what the library now holds."""
        self._flush()
        stored = self.library.store.existing([sha for _, sha, _, _ in self.repeats]) if self.repeats else set()
        for label, sha256, number, first in self.repeats:
            if sha256 in stored:
                self.report.duplicates.append((label, sha256))
            else:
                self.report.rejected.append(Rejected(label, f"metadata.json entry {number}: the same file as entry "
                                                            f"{first}, which was not imported (see why there)"))
        return self.report


def _quoted(member: str) -> str:
    """A member name from the archive in a message: shortened, control characters escaped."""
    return repr(member[:200])


def _label(number: int, raw: object) -> str:
    """What the report calls an entry: its filename, else its member, else its number."""
    if isinstance(raw, dict):
        for key in ("filename", "file"):
            if isinstance(raw.get(key), str) and raw[key]:
                return raw[key][:200]
    return f"metadata.json entry {number}"
