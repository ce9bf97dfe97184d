"""Records that cross layers: what the store returns and the pages show."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

SOURCE_UPLOAD = "upload"
SOURCE_GENERATED = "generated"
SOURCES = (SOURCE_UPLOAD, SOURCE_GENERATED)
ROUTE_CLIP = "clip"          # found by the picture's CLIP vector
ROUTE_KEYWORDS = "keywords"  # found by words in its name, tags, brief or caption (full-text search)

# The dates an asset can carry (unix epoch milliseconds, half-open). Older versions and hand-edited
# imports stored dates like year 1 or 9999, which datetime can't even represent in every time zone;
# such a date is shown and exported as unknown, and refused on import.
EARLIEST_CREATED_AT = 0                                                             # 1970-01-01 UTC
LATEST_CREATED_AT = int(datetime(2200, 1, 1, tzinfo=timezone.utc).timestamp()) * 1000  # 2200-01-01 UTC


def plausible_created_at(epoch_ms: int) -> bool:
    return EARLIEST_CREATED_AT <= epoch_ms < LATEST_CREATED_AT


@dataclass(frozen=True)
class Asset:
    """One image in the library. Its identity is the SHA-256 of the original's bytes."""
    sha256: str
    filename: str
    mime: str
    width: int
    height: int
    size_bytes: int
    tags: tuple[str, ...] = ()
    source: str = SOURCE_UPLOAD
    created_at: int = 0  # unix epoch milliseconds
    prompt: str = ""     # provenance of generated assets
    model: str = ""
    reference_ids: tuple[str, ...] = ()
    # Schema 2 (a library made by an older version has none of these until it is upgraded):
    caption: str = ""           # a one-sentence description (Describe)
    licence: str = ""           # usage rights: licence or a note
    usable_until: int = 0       # epoch ms after which it may not be used; 0 = no limit
    no_reference: bool = False  # "do not use as a reference"
    trashed_at: int = 0         # epoch ms when moved to the trash; 0 = in the library
    details: dict = field(default_factory=dict, hash=False)  # more provenance: kit, job, usage, cost

    @property
    def is_generated(self) -> bool:
        return self.source == SOURCE_GENERATED

    @property
    def trashed(self) -> bool:
        return self.trashed_at != 0

    def expired(self, now_ms: int) -> bool:
        """Past its usable-until date."""
        return bool(self.usable_until) and self.usable_until <= now_ms

    @property
    def created(self) -> datetime | None:
        """When it was added (UTC); None for a stored date outside 1970..2199 (see plausible_created_at)."""
        if not plausible_created_at(self.created_at):
            return None
        return datetime.fromtimestamp(self.created_at / 1000, tz=timezone.utc)

    def to_dict(self) -> dict:
        return {
            "sha256": self.sha256, "filename": self.filename, "mime": self.mime,
            "width": self.width, "height": self.height, "size_bytes": self.size_bytes,
            "tags": list(self.tags), "source": self.source,
            "created_at": self.created.isoformat(timespec="milliseconds") if self.created else None,
            "prompt": self.prompt, "model": self.model, "reference_ids": list(self.reference_ids),
            "caption": self.caption, "licence": self.licence,
            "usable_until": _iso_day(last_usable_day(self.usable_until)), "no_reference": self.no_reference,
            "trashed_at": _iso_date(self.trashed_at, timespec="milliseconds"), "details": dict(self.details),
        }


def last_usable_day(usable_until: int) -> date | None:
    """The last day (UTC) an asset may be used: `usable_until` is the instant it expires, the start
    of the next day (ragkit.rights). None: no limit, or a stored value that is not a date."""
    if not 0 < usable_until < LATEST_CREATED_AT:
        return None
    return (datetime.fromtimestamp(usable_until / 1000, tz=timezone.utc) - timedelta(milliseconds=1)).date()


def _iso_day(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _iso_date(epoch_ms: int, timespec: str = "seconds") -> str | None:
    """An optional date field for JSON: None when unset (0) or not a plausible date."""
    if not epoch_ms or not plausible_created_at(epoch_ms):
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat(timespec=timespec)


@dataclass(frozen=True)
class SearchHit:
    asset: Asset
    score: float  # cosine similarity in [-1, 1] to the query's CLIP vector; higher is more similar
    routes: tuple[str, ...] = (ROUTE_CLIP,)  # which searches found it: ROUTE_CLIP and/or ROUTE_KEYWORDS
    matched: tuple[str, ...] = ()           # the query's words found in its name, tags, brief or caption

    def to_dict(self) -> dict:
        return {**self.asset.to_dict(), "score": round(self.score, 6), "routes": list(self.routes),
                "matched": list(self.matched)}


@dataclass(frozen=True)
class Page:
    assets: list[Asset]
    total: int       # matching assets across all pages
    offset: int
    limit: int

    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // self.limit)) if self.limit else 1


@dataclass
class BulkResult:
    """What a change to many assets did: the assets as they are now, the ones it did not apply to
    (id -> why: in the trash, not in the trash, its file is gone), and ids that are not in the library."""
    done: list[Asset] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.skipped and not self.missing

    def merge(self, other: "BulkResult") -> None:
        self.done += other.done
        self.skipped.update(other.skipped)
        self.missing += other.missing


@dataclass
class Rejected:
    path: str
    reason: str


@dataclass
class IngestReport:
    added: list[tuple[str, Asset]] = field(default_factory=list)  # (path/name, asset)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path/name, sha256)
    rejected: list[Rejected] = field(default_factory=list)
    restored: list[tuple[str, str]] = field(default_factory=list)  # (path/name, sha256): was in the trash
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict:
        return {
            "added": [{"path": p, **a.to_dict()} for p, a in self.added],
            "duplicates": [{"path": p, "sha256": s} for p, s in self.duplicates],
            "rejected": [{"path": r.path, "reason": r.reason} for r in self.rejected],
            "restored": [{"path": p, "sha256": s} for p, s in self.restored],
            "seconds": round(self.seconds, 3),
        }
