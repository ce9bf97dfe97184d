"""Find and fix disagreements between the database rows and the files on disk.

Write order makes every disagreement unambiguous (see ingest.py, Library.delete and ragkit.lifecycle.trash):
- a file without a row  -> an ingest was interrupted after writing files: adopt it
  (embed it again and add the row, tagged ``recovered``);
- a row without its original -> a delete for good (an emptying of the trash) was interrupted
  after removing files: drop the row;
- a row whose thumbnail is missing -> rebuild the thumbnail from the original;
- ``.tmp-*`` files -> a write was interrupted: remove them.

Assets in the trash keep their rows and files until it is emptied: they are counted (in_trash),
and their files are not orphans.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ragkit.ingest.images import decode_image, make_thumbnail
from ragkit.ingest.pipeline import Upload
from ragkit.errors import InvalidImageError

RECOVERED_TAG = "recovered"


@dataclass
class DoctorReport:
    rows: int = 0
    files: int = 0
    in_trash: int = 0  # rows (counted in `rows`) whose asset is in the trash
    rows_without_original: list[str] = field(default_factory=list)
    rows_without_thumbnail: list[str] = field(default_factory=list)
    files_without_row: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not (self.rows_without_original or self.rows_without_thumbnail
                    or self.files_without_row or self.temp_files)

    def to_dict(self) -> dict:
        return {**self.__dict__, "healthy": self.healthy}


def check(library) -> DoctorReport:
    fields = ["trashed_at"] if library.has_trash else []
    scanned = library.store.scan("", fields)  # every row, the trash included
    rows = {row["sha256"] for row in scanned}
    originals = set(library.blobs.original_ids())
    thumbnails = set(library.blobs.thumbnail_ids())
    return DoctorReport(
        rows=len(rows), files=len(originals), in_trash=sum(1 for row in scanned if row.get("trashed_at")),
        rows_without_original=sorted(rows - originals),
        rows_without_thumbnail=sorted((rows & originals) - thumbnails),
        files_without_row=sorted(originals - rows),
        temp_files=sorted(str(p) for p in library.blobs.stale_temp_files()),
    )


def repair(library) -> DoctorReport:
    report = check(library)
    for path in report.temp_files:
        from pathlib import Path
        Path(path).unlink(missing_ok=True)
        report.actions.append(f"removed unfinished write {path}")
    if report.rows_without_original:
        trashed = library.store.trashed_among(report.rows_without_original)
        library.store.delete(report.rows_without_original)
        for sha in report.rows_without_original:
            library.blobs.delete(sha)  # a thumbnail may still be there
            report.actions.append(f"finished deleting {sha} from the trash" if sha in trashed
                                  else f"dropped row {sha} (its original was deleted)")
    for sha in report.rows_without_thumbnail:
        try:
            decoded = decode_image(library.blobs.read_original(sha), max_pixels=library.settings.max_image_pixels)
        except InvalidImageError as exc:
            report.actions.append(f"could not rebuild thumbnail of {sha}: {exc}")
            continue
        library.blobs.put_thumbnail(sha, make_thumbnail(decoded.image))
        report.actions.append(f"rebuilt thumbnail of {sha}")
    if report.files_without_row:
        uploads = [Upload(f"recovered-{sha[:12]}", library.blobs.read_original(sha), tags=(RECOVERED_TAG,))
                   for sha in report.files_without_row]
        outcome = library.ingest_uploads(uploads)
        for _, asset in outcome.added:
            report.actions.append(f"adopted file {asset.sha256} (tagged '{RECOVERED_TAG}')")
        for rejected in outcome.rejected:
            report.actions.append(f"could not adopt {rejected.path}: {rejected.reason}")
    return report
