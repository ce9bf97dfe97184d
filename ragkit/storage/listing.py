"""What the Library page lists, in memory: each asset's date, source, tags, type and size.

Milvus cannot ORDER BY, and in Milvus Lite every query materialises each matching row in Python,
so listing "newest first" or counting tags is a scan of the whole collection: ~0.6 s at 10k
assets, 15-19 s at 100k (docs/performance.md). The store scans once into a `Catalog`, then
applies its own writes to it, so an upload no longer costs the next page view a full rescan.
Orders, filtered views and tag counts are computed from it and kept until the next change.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, NamedTuple

from ragkit.storage.filters import Filters

EVERYTHING = Filters()
FIELDS = ("created_at", "source", "tags", "mime", "width", "height")  # + trashed_at from schema 2 on


class Entry(NamedTuple):
    """What the catalog keeps of a row: enough for every filter (ragkit.storage.filters.Filters.matches)."""
    created_at: int
    source: str
    tags: tuple[str, ...]
    trashed_at: int  # 0: in the library
    mime: str = ""
    width: int = 0
    height: int = 0


Change = tuple[str, str, "Entry | None"]        # ("put", id, entry) or ("remove", id, None)
MAX_VIEWS = 64  # filtered orders kept per version (a person clicks through a handful of filters)


class Catalog:
    """sha256 -> Entry of every row, the trash included; lists and counts only what is in the
    library unless asked for the trash. Not thread-safe (Listing locks)."""

    def __init__(self, rows: Iterable[dict] = ()) -> None:
        self._entries: dict[str, Entry] = {}
        for row in rows:
            self._entries[row["sha256"]] = entry_of(row)
        self._forget_derived()

    def __len__(self) -> int:
        """Assets in the library (not in the trash)."""
        return len(self.ordered())

    @property
    def rows(self) -> int:
        """Every row, the trash included: what a count(*) of the collection says."""
        return len(self._entries)

    def apply(self, changes: Iterable[Change]) -> None:
        """Writes, in order: ("put", id, entry) or ("remove", id, None)."""
        for op, sha256, entry in changes:
            if op == "put":
                self._entries[sha256] = entry  # type: ignore[assignment]
            else:
                self._entries.pop(sha256, None)
        self._forget_derived()

    def _forget_derived(self) -> None:
        self._newest_first: list[str] | None = None
        self._views: dict[Filters, list[str]] = {}
        self._tag_counts: list[tuple[str, int]] | None = None

    def ordered(self, filters: Filters = EVERYTHING) -> list[str]:
        """Ids in the library that pass `filters`, newest first (ties by id)."""
        if self._newest_first is None:
            entries = self._entries
            self._newest_first = sorted((sha for sha, e in entries.items() if not e.trashed_at),
                                        key=lambda sha: (-entries[sha].created_at, sha))
        if not filters:
            return self._newest_first
        view = self._views.get(filters)
        if view is None:
            entries = self._entries
            view = [sha for sha in self._newest_first if filters.matches(entries[sha])]
            if len(self._views) >= MAX_VIEWS:
                self._views.clear()
            self._views[filters] = view
        return view

    def trashed(self, before: int | None = None) -> list[str]:
        """Ids in the trash (moved there before `before`, epoch ms, if given), most recently trashed first."""
        entries = self._entries
        return sorted((sha for sha, e in entries.items() if e.trashed_at and (before is None or e.trashed_at < before)),
                      key=lambda sha: (-entries[sha].trashed_at, sha))

    def tag_counts(self) -> list[tuple[str, int]]:
        """Every tag with its number of assets in the library, most used first, then by name."""
        if self._tag_counts is None:
            counts: dict[str, int] = {}
            for entry in self._entries.values():
                if entry.trashed_at:
                    continue
                for tag in entry.tags:
                    counts[tag] = counts.get(tag, 0) + 1
            self._tag_counts = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return self._tag_counts


def entry_of(row: dict) -> Entry:
    return Entry(int(row.get("created_at") or 0), str(row.get("source") or "upload"), tuple(row.get("tags") or ()),
                 int(row.get("trashed_at") or 0), str(row.get("mime") or ""), int(row.get("width") or 0),
                 int(row.get("height") or 0))


class Listing:
    """The catalog, kept current for the store: built by one scan of every row, then following the
    store's own writes (`note`). Rebuilt when the collection's row count (`total`: every row, the
    trash included) changes behind its back (another store or process wrote) and, with
    `refresh_seconds` (a shared server), that often, so other people's tag edits show up.
    Thread-safe: builds are serialised, reads see a finished catalog.
    """

    def __init__(self, scan: Callable[[], list[dict]], refresh_seconds: float | None = None) -> None:
        self._scan = scan
        self._refresh_seconds = refresh_seconds
        self._catalog: Catalog | None = None
        self._made_at = 0.0
        self._total: int | None = None        # the row count the catalog agrees with; None: note the next
        self._log: list[Change] | None = None  # own writes during a build
        self._lock = threading.Lock()          # guards the fields above and the catalog
        self._build = threading.Lock()         # one build scan at a time

    def note(self, changes: list[Change]) -> None:
        """The store's own writes: applied to the catalog (and to a build's log, if one runs)."""
        with self._lock:
            if self._catalog is not None:
                self._catalog.apply(changes)
                self._total = None  # the count it agrees with is read again next time
            if self._log is not None:
                self._log.extend(changes)

    def drop(self) -> None:
        """Forget the catalog: the next read rescans."""
        with self._lock:
            self._catalog = None

    def ordered(self, total: int, filters: Filters = EVERYTHING) -> list[str]:
        """Ids in the library that pass `filters`, newest first; `total` is the collection's row count now."""
        catalog = self._current(total)
        with self._lock:
            return catalog.ordered(filters)

    def trashed(self, total: int) -> list[str]:
        catalog = self._current(total)
        with self._lock:
            return catalog.trashed()

    def trashed_if_current(self, total: int, before: int | None = None) -> list[str] | None:
        """Catalog.trashed, if the catalog is built and still current (no scan)."""
        with self._lock:
            return self._catalog.trashed(before) if self._fresh(total) else None  # type: ignore[union-attr]

    def count_if_current(self, total: int) -> int | None:
        """The number of assets in the library, if the catalog is built and still current (no scan)."""
        with self._lock:
            return len(self._catalog) if self._fresh(total) else None  # type: ignore[arg-type]

    def as_it_stands(self, filters: Filters = EVERYTHING) -> tuple[list[str], int]:
        """Ids that pass `filters`, and the number of assets, from the catalog as it is
        (built if there is none, but not checked against a fresh count)."""
        with self._lock:
            catalog = self._catalog
        if catalog is None:
            catalog = self._current(None)
        with self._lock:
            return catalog.ordered(filters), len(catalog)

    def tag_counts(self, total: int) -> list[tuple[str, int]]:
        catalog = self._current(total)
        with self._lock:
            return list(catalog.tag_counts())

    def _current(self, total: int | None) -> Catalog:
        with self._lock:
            if self._fresh(total):
                return self._catalog  # type: ignore[return-value]
        with self._build:
            with self._lock:
                if self._fresh(total):  # another thread built it meanwhile
                    return self._catalog  # type: ignore[return-value]
                self._log = []
            try:
                rows = self._scan()
            except BaseException:
                with self._lock:
                    self._log = None
                raise
            with self._lock:
                catalog = Catalog(rows)
                catalog.apply(self._log or [])  # writes the scan may or may not have seen
                self._catalog, self._log = catalog, None
                # Without a count (as_it_stands), its own size is the count it agrees with.
                self._made_at, self._total = time.monotonic(), catalog.rows if total is None else total
                return catalog

    def _fresh(self, total: int | None) -> bool:
        """(Lock held.) Does the catalog still describe the collection? (`total` None: any catalog will do.)"""
        if self._catalog is None:
            return False
        if total is None:
            return True
        if self._refresh_seconds is not None and time.monotonic() - self._made_at >= self._refresh_seconds:
            return False
        if self._total is None:  # our own writes since: they are in it; note the new count
            self._total = total
        return self._total == total
