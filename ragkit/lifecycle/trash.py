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
from typing import Callable, Iterable

from ragkit.errors import UpgradeNeededError
from ragkit.records import Asset, BulkResult
from ragkit.rights import DAY_MS, now_ms

EMPTY_BATCH = 256  # assets deleted for good per step (files, then their rows)

IN_TRASH_ALREADY = "already in the trash"
NOT_IN_TRASH = "not in the trash"
IN_TRASH = "in the trash (restore it first)"
FILE_GONE = ("its original was already deleted by an emptying of the trash that did not finish; "
             "`python -m ragkit doctor --repair` completes it")
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

    def applies(asset: Asset) -> str | None:
        if not asset.trashed:
            return NOT_IN_TRASH
        if not library.blobs.original_path(asset.sha256).is_file():
            return FILE_GONE
        return None

    result = library.store.update_many(sha256s, lambda asset: dataclasses.replace(asset, trashed_at=0), applies)
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


def expire(library, now: int | None = None) -> BulkResult:
    """Delete for good what has been in the trash longer than RAGKIT_TRASH_DAYS."""
    if not library.has_trash:
        return BulkResult()
    cutoff = expiry_cutoff(now_ms() if now is None else int(now), library.settings.trash_days)
    expired = library.store.trashed_before(cutoff)
    return empty(library, expired) if expired else BulkResult()
