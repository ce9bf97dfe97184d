"""The trash: deleting an asset moves it here, Restore brings it back, emptying deletes it for good.

An asset is in the trash when its row's `trashed_at` (epoch ms) is not 0. Moving it there and back
rewrites that one field, through one upsert per step of many assets: the vector, tags, provenance
and files stay exactly as they were, and every read of the library (search, listing, counts,
export, suggestions) leaves it out. Emptying deletes for good in the one safe order, files first,
then rows (Library.delete), a step at a time. So a kill at any point loses nothing that was not
meant to go, and leaves only states `doctor` reads one way:

* killed while moving to or from the trash: each row is either moved or not, with all its files;
* killed while emptying: a trashed row whose original is gone was being deleted for good, and
  `doctor --repair` finishes it (the same rule as any row without its original).

Assets trashed more than RAGKIT_TRASH_DAYS ago are emptied when a process opens the library
(`expire`, one query that is usually empty). A library of schema 1 (made by an older ragkit) has
no trash: there deleting is for good, and `python -m ragkit upgrade` adds the trash.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable

from ragkit.errors import UpgradeNeededError
from ragkit.records import BulkResult
from ragkit.storage.store import NOT_IN_TRASH
from ragkit.rights import DAY_MS, now_ms

EMPTY_BATCH = 256  # assets deleted for good per step (files, then their rows)

IN_TRASH_ALREADY = "already in the trash"
SKIP_IN_TRASH = "in the trash (restore it first)"  # why an edit skipped an asset
NO_TRASH = ("This library was made by an older ragkit and has no trash: deleting there is for good. "
            "Run `python -m ragkit upgrade` (or the app's Upgrade button) to get the trash.")


def require_trash(library) -> None:
    if not library.has_trash:
        raise UpgradeNeededError(NO_TRASH)


def move_to_trash(library, sha256s: Iterable[str], now: int | None = None) -> BulkResult:
    """Move these assets to the trash (those already there are skipped)."""
    require_trash(library)
    stamp = max(1, now_ms() if now is None else int(now))  # 0 means "in the library"
    result = library.store.update_many(sha256s, lambda asset: dataclasses.replace(asset, trashed_at=stamp),
                                       applies=lambda asset: IN_TRASH_ALREADY if asset.trashed else None)
    library.store.flush()
    return result


def restore(library, sha256s: Iterable[str]) -> BulkResult:
    """Bring these assets back from the trash exactly as they were."""
    require_trash(library)
    result = library.store.restore_from_trash(sha256s, lambda sha: library.blobs.original_path(sha).is_file())
    library.store.flush()
    return result


def empty(library, sha256s: Iterable[str] | None = None,
          on_progress: Callable[[int, int], None] | None = None) -> BulkResult:
    """Delete for good everything in the trash, or these assets of it (others are skipped).

    Each step is checked again just before it is deleted, under the row lock (ragkit.storage.row_lock),
    so an asset restored meanwhile, by any process, stays; and a restore waits, then finds it gone."""
    require_trash(library)
    ids = library.store.trashed_ids() if sha256s is None else list(dict.fromkeys(sha256s))
    result = BulkResult()
    for start in range(0, len(ids), EMPTY_BATCH):
        step = ids[start:start + EMPTY_BATCH]
        with library.store.rows_locked():
            found = {asset.sha256: asset for asset in library.store.get_many(step, latest=True)}
            doomed = [found[sha] for sha in step if sha in found and found[sha].trashed]
            library.delete([asset.sha256 for asset in doomed])  # files first, then rows
        result.missing += [sha for sha in step if sha not in found]
        result.skipped.update({sha: NOT_IN_TRASH for sha in step if sha in found and not found[sha].trashed})
        result.done += doomed
        if on_progress:
            on_progress(min(start + len(step), len(ids)), len(ids))
    return result


def expiry_cutoff(now: int, days: int) -> int:
    """Assets trashed before this instant have been in the trash longer than `days`."""
    return now - days * DAY_MS


def remove(library, sha256s: Iterable[str]) -> BulkResult:
    """The one "delete" a person asks for: to the trash, or for good on a library that has no trash
    yet (schema 1). Every page and command that deletes goes through here."""
    ids = list(dict.fromkeys(sha256s))
    if library.has_trash:
        return library.trash(ids)
    found = library.get_many(ids)
    library.delete([asset.sha256 for asset in found])
    have = {asset.sha256 for asset in found}
    return BulkResult(done=found, missing=[sha for sha in ids if sha not in have])


def removal_question(library, what_md: str) -> str:
    """The confirmation a person reads before `remove` (Markdown; `what_md` is already escaped)."""
    if library.has_trash:
        return (f"Move **{what_md}** to the trash? You can restore it from Library › Trash for "
                f"{library.settings.trash_days} days; after that it is deleted for good.")
    return (f"Delete **{what_md}** for good? This library has no trash yet (run `python -m ragkit upgrade` to get "
            "one): the originals and thumbnails are removed from disk.")


def removal_done(library, count: int) -> str:
    noun = f"{count:,} image{'s' if count != 1 else ''}"
    return f"Moved {noun} to the trash" if library.has_trash else f"Deleted {noun} for good"


def days_left(trashed_at: int, now: int, days: int) -> int:
    """Whole days until an asset trashed at `trashed_at` is deleted for good (0: at the next opening)."""
    return max(0, math.ceil((trashed_at - expiry_cutoff(now, days)) / DAY_MS))


def expire(library, now: int | None = None) -> BulkResult:
    """Delete for good what has been in the trash longer than RAGKIT_TRASH_DAYS."""
    if not library.has_trash:
        return BulkResult()
    cutoff = expiry_cutoff(now_ms() if now is None else int(now), library.settings.trash_days)
    expired = library.store.trashed_before(cutoff)
    return empty(library, expired) if expired else BulkResult()
