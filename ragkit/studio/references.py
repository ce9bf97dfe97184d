"""References: library assets made ready to send with a brief, and the ones to suggest for it."""
from __future__ import annotations

from typing import Iterable, Sequence

from ragkit.errors import AssetNotFoundError, InvalidImageError
from ragkit.ingest.images import fit_for_model
from ragkit.records import SearchHit
from ragkit.rights import now_ms
from ragkit.studio.generation import ReferenceImage

REFERENCE_MAX_SIDE = 1536


def load_references(library, sha256s: Sequence[str]) -> list[ReferenceImage]:
    """Library assets -> downscaled reference images, in the order picked."""
    references = []
    for sha in sha256s:
        asset = library.get(sha)
        if asset.trashed:
            raise AssetNotFoundError(f"Reference {asset.filename} ({sha[:12]}…) is in the trash; restore it in the "
                                     "Library, or remove it from the tray.")
        try:
            data = library.original_bytes(sha)
        except AssetNotFoundError:
            raise AssetNotFoundError(f"Reference {asset.filename} ({sha[:12]}…) has no original file any more; "
                                     "remove it from the tray.") from None
        references.append(prepare_reference(data, asset.mime, sha256=sha))
    return references


def suggest_references(library, brief: str, k: int = 8, exclude: Iterable[str] = (),
                       now: int | None = None) -> list[SearchHit]:
    """The retrieval half of the loop: library images that match the brief itself, among those that
    may be used as references at `now` (not expired, not marked "do not use as a reference")."""
    skip = set(exclude)
    hits = library.search_text(brief, k + len(skip), usable_at=now_ms() if now is None else now,
                               for_reference=True)
    return [h for h in hits if h.asset.sha256 not in skip][:k]


def prepare_reference(data: bytes, mime: str | None = None, sha256: str | None = None,
                      max_side: int = REFERENCE_MAX_SIDE) -> ReferenceImage:
    """Image bytes made fit to send as a reference (see images.fit_for_model), with their asset.

    `mime` (what the library recorded) only names the file in an error: the bytes decide.
    """
    try:
        fitted = fit_for_model(data, max_side)
    except InvalidImageError as exc:
        declared = f" ({mime})" if mime else ""
        raise InvalidImageError(f"the reference image{declared} can't be used: {exc}") from None
    return ReferenceImage(data=fitted.data, mime=fitted.mime, sha256=sha256)
