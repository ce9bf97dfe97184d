"""Upgrading a library made by an older ragkit to the current collection schema (ragkit.storage.schema).

Nothing is re-embedded: the rows and their vectors are copied, through the same diff copy as
`migrate` (ragkit.lifecycle.migrate.copy_assets), into a new collection beside the old one. Until the copy
is complete and checked, the library keeps using the old collection, so a kill at any point loses
nothing and the next run completes the copy. Then:

1. the new collection is marked complete: every process that opens the library from now on uses it;
2. the old one is marked superseded: a process that still has it open gets a clear error on its
   next write (reload and redo) instead of writing where nobody reads any more;
3. one last diff copy brings over what such processes wrote between the copy and step 2.

The old collection stays, untouched, until `upgrade --drop-old`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ragkit.storage import collections
from ragkit.storage import schema as schemas
from ragkit.lifecycle.migrate import COPY_BATCH, copy_assets
from ragkit.storage.store import AssetStore

MAX_PASSES = 5
SETTLE_SECONDS = 1.0  # for writes already sent to the old collection when it was marked superseded


@dataclass
class UpgradeReport:
    from_version: int
    to_version: int
    copied: int
    assets: int
    collection: str
    dropped_old: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def open_store(client, base: str, dim: int, model_id: str, *, index: dict | None, embedded: bool) -> AssetStore:
    """The library's collection for this model: the newest complete one; a new library is made at
    the latest schema."""
    for version in range(schemas.LATEST, 0, -1):
        name = collections.versioned_name(base, version)
        if client.has_collection(name):
            store = AssetStore(client, name, dim, model_id, index=index, embedded=embedded)
            if store.complete or not _older_exists(client, base, version):
                return store
    return AssetStore(client, collections.versioned_name(base, schemas.LATEST), dim, model_id, index=index,
                      embedded=embedded)


def _older_exists(client, base: str, version: int) -> bool:
    return any(client.has_collection(collections.versioned_name(base, v)) for v in range(1, version))


def upgrade(library, on_progress: Callable[[int, int], None] | None = None, drop_old: bool = False,
            batch: int = COPY_BATCH) -> UpgradeReport:
    """Bring the library's collection to the latest schema (see the module docstring)."""
    old: AssetStore = library.store
    base = old.collection if old.version == 1 else old.collection.rsplit("_s", 1)[0]
    target_name = collections.versioned_name(base, schemas.LATEST)
    if old.version >= schemas.LATEST:
        dropped = _drop_older(library, base) if drop_old else False
        return UpgradeReport(old.version, old.version, 0, old.count(), old.collection, dropped)
    target = old.sibling(target_name, old.dim, old.model_id, complete=False)
    copied = 0
    for _ in range(MAX_PASSES):  # until a pass finds nothing new (others may be adding meanwhile)
        report = copy_assets(old, target, on_progress, batch)
        copied += report.copied
        if not report.copied:
            break
    target.mark_complete()
    old.mark_superseded(target.collection)
    time.sleep(SETTLE_SECONDS)
    copied += copy_assets(old, target).copied
    library.use_store(target)
    dropped = _drop_older(library, base) if drop_old else False
    return UpgradeReport(old.version, target.version, copied, target.count(), target.collection, dropped)


def _drop_older(library, base: str) -> bool:
    """Drop the collections of older schemas of this model, once the latest is complete."""
    dropped = False
    for version in range(1, schemas.LATEST):
        dropped = library.store.drop_other(collections.versioned_name(base, version)) or dropped
    return dropped
