"""Safe Milvus filter expressions.

Milvus Lite 3.2 rejects pymilvus filter templating (``{name}`` placeholders with
``filter_params``), so user values become string literals here, and only here:
backslashes and double quotes are escaped, control characters are refused, and
every expression is built from these literals and fixed field names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterable, Protocol

from ragkit.errors import InvalidInputError
from ragkit.records import EARLIEST_CREATED_AT, LATEST_CREATED_AT, SOURCES
from ragkit.tags import normalise_tags

MAX_LITERAL_CHARS = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def quote_literal(value: str) -> str:
    """Turn any user string into a Milvus string literal that means exactly that string."""
    if not isinstance(value, str):
        raise InvalidInputError(f"expected text, got {type(value).__name__}")
    if len(value) > MAX_LITERAL_CHARS:
        raise InvalidInputError(f"value is {len(value)} characters long; the limit is {MAX_LITERAL_CHARS}")
    if _CONTROL.search(value):
        raise InvalidInputError("value contains control characters (newlines, tabs, NUL); remove them")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def validate_sha256(value: str) -> str:
    """Asset ids are lower-case hex SHA-256; anything else is refused before it reaches a path or a query."""
    candidate = value.strip().lower()
    if not _SHA256.match(candidate):
        raise InvalidInputError(f"{value[:80]!r} is not an asset id (64 hex characters)")
    return candidate


LIVE = "trashed_at == 0"       # schema 2: in the library, not in the trash
IN_TRASH_FILTER = "trashed_at > 0"


def asset_filter(tags: Iterable[str] = (), source: str | None = None, live: bool = False) -> str:
    """Expression for 'has all these tags and comes from this source' (see Filters.expression)."""
    return Filters(tags=tuple(tags), source=source).expression(live)


class Describable(Protocol):
    """What Filters.matches reads: a catalog entry (ragkit.storage.listing.Entry) or anything with these fields."""
    created_at: int
    source: str
    tags: tuple[str, ...]
    mime: str
    width: int
    height: int


# File types people ask for, by name (`--type png`), and the MIME type ingest stores for each
# (ragkit.ingest.images.MIME_BY_FORMAT; MPO is stored as JPEG). Other names for the same type are aliases.
FILE_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif",
              "bmp": "image/bmp", "tiff": "image/tiff", "avif": "image/avif", "heif": "image/heif",
              "ico": "image/x-icon", "ppm": "image/x-portable-pixmap"}
TYPE_ALIASES = {"jpg": "jpeg", "jpe": "jpeg", "tif": "tiff", "heic": "heif"}
ORIENTATIONS = ("landscape", "portrait", "square")
MAX_SIDE = 1_000_000  # no image ragkit stores is this wide (ingest caps the pixels far below)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Filters:
    """What a search, the Library grid, a count or an export keeps: assets with all `tags`, from
    `source`, added from `since` to `until` (whole days, UTC, both included), of one of `types`,
    with this `orientation` and both sides at least `min_side` pixels. Empty fields keep everything.

    Every value is checked and normalised when a Filters is made (hostile text, unknown types, a
    date that isn't one: InvalidInputError saying what to type), so the CLI, the pages and the
    links in the URL share one set of rules. `expression()` is the Milvus filter, `matches()` the
    same test on a row in memory (the listing, and hits checked after an over-fetch)."""
    tags: tuple[str, ...] = ()
    source: str | None = None
    since: date | None = None
    until: date | None = None
    types: tuple[str, ...] = ()  # names from FILE_TYPES
    orientation: str | None = None
    min_side: int = 0
    _mimes: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised once, here
        set_(self, "tags", tuple(sorted(normalise_tags(_strings(self.tags, "tag")))))
        set_(self, "source", self.source or None)
        if self.source is not None and self.source not in SOURCES:
            raise InvalidInputError(f"source must be one of {', '.join(SOURCES)}, not {str(self.source)[:40]!r}")
        set_(self, "since", parse_day(self.since, "since"))
        set_(self, "until", parse_day(self.until, "until"))
        if self.since and self.until and self.since > self.until:
            raise InvalidInputError(f"since ({self.since}) is after until ({self.until}): swap the dates")
        set_(self, "types", tuple(sorted({file_type(t) for t in _strings(self.types, "type")})))
        set_(self, "_mimes", frozenset(FILE_TYPES[t] for t in self.types))
        set_(self, "orientation", parse_orientation(self.orientation))
        set_(self, "min_side", parse_min_side(self.min_side))

    def __bool__(self) -> bool:
        """True when it keeps less than everything."""
        return bool(self.tags or self.source or self.since or self.until or self.types
                    or self.orientation or self.min_side)

    @property
    def since_ms(self) -> int | None:
        return _day_start_ms(self.since) if self.since else None

    @property
    def until_ms(self) -> int | None:
        """The first millisecond after `until` (the whole day is included)."""
        return _day_start_ms(self.until + timedelta(days=1)) if self.until else None

    @property
    def only_source(self) -> bool:
        """Only a source: an expression Milvus Lite evaluates fast (ragkit.storage.lite_reads)."""
        return self.source is not None and self == Filters(source=self.source)

    def expression(self, live: bool = False) -> str:
        """The Milvus filter ('' = everything); with `live`, only assets that are not in the trash
        (collections of schema 2 and later)."""
        clauses = [LIVE] if live else []
        if self.tags:
            clauses.append(f"array_contains_all(tags, [{', '.join(quote_literal(t) for t in self.tags)}])")
        if self.source:
            clauses.append(f"source == {quote_literal(self.source)}")
        if self.since:
            clauses.append(f"created_at >= {self.since_ms}")
        if self.until:
            clauses.append(f"created_at < {self.until_ms}")
        if self.types:
            clauses.append(f"mime in [{', '.join(quote_literal(m) for m in sorted(self._mimes))}]")
        if self.orientation:
            clauses.append({"landscape": "width > height", "portrait": "width < height",
                            "square": "width == height"}[self.orientation])
        if self.min_side:
            clauses.append(f"width >= {self.min_side} and height >= {self.min_side}")
        return " and ".join(clauses)

    def matches(self, item: Describable) -> bool:
        """The same test as `expression()`, on a row in memory."""
        if self.source is not None and item.source != self.source:
            return False
        if self.tags and not set(self.tags).issubset(item.tags):
            return False
        if self.since and item.created_at < self.since_ms:  # type: ignore[operator]
            return False
        if self.until and item.created_at >= self.until_ms:  # type: ignore[operator]
            return False
        if self._mimes and item.mime not in self._mimes:
            return False
        if self.orientation and orientation_of(item.width, item.height) != self.orientation:
            return False
        return not self.min_side or min(item.width, item.height) >= self.min_side


def as_filters(filters: Filters | None = None, tags: Iterable[str] = (), source: str | None = None) -> Filters:
    """A Filters from either a Filters or the older (tags, source) arguments."""
    if filters is None:
        return Filters(tags=tuple(tags), source=source or None)
    if tuple(tags) or source:
        raise ValueError("give filters, or tags and source, not both")
    return filters


def orientation_of(width: int, height: int) -> str:
    return "landscape" if width > height else "portrait" if width < height else "square"


def parse_day(value: date | str | None, name: str = "date") -> date | None:
    """A day from a date or 'YYYY-MM-DD' (None or '' = no limit); dates ragkit can't store are refused."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        text = str(value).strip()
        try:
            value = date.fromisoformat(text) if _DATE.match(text) else None
        except ValueError:
            value = None
        if value is None:
            raise InvalidInputError(f"{name} must be a date like 2026-01-31 (year-month-day), "
                                    f"not {text[:40]!r}")
    if not EARLIEST_CREATED_AT <= _day_start_ms(value) < LATEST_CREATED_AT:
        raise InvalidInputError(f"{name} must be a day from 1970-01-01 to 2199-12-31, not {value}")
    return value


def file_type(name: str) -> str:
    """A file type's name as FILE_TYPES spells it ('PNG', '.jpg', 'jpeg' -> 'png', 'jpeg', 'jpeg')."""
    key = str(name).strip().lower().lstrip(".")
    key = TYPE_ALIASES.get(key, key)
    if key not in FILE_TYPES:
        raise InvalidInputError(f"unknown file type {str(name)[:40]!r}; use one of {', '.join(FILE_TYPES)}")
    return key


def parse_orientation(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    key = str(value).strip().lower()
    if key not in ORIENTATIONS:
        raise InvalidInputError(f"orientation must be {', '.join(ORIENTATIONS)}, not {str(value)[:40]!r}")
    return key


def parse_min_side(value: int | str | None) -> int:
    """Pixels (0 or None = any size)."""
    if value is None or value == "":
        return 0
    try:
        number = int(str(value).strip()) if not isinstance(value, int) or isinstance(value, bool) else value
    except ValueError:
        number = -1
    if isinstance(value, bool) or not 0 <= number <= MAX_SIDE:
        raise InvalidInputError(f"the minimum side must be a whole number of pixels from 0 to {MAX_SIDE:,}, "
                                f"not {str(value)[:40]!r}")
    return number


def _strings(values: Iterable[str] | str, what: str) -> tuple[str, ...]:
    """A tuple of text values (a lone string is one value, not its letters)."""
    if isinstance(values, str):
        values = (values,)
    items = tuple(values)
    for item in items:
        if not isinstance(item, str):
            raise InvalidInputError(f"expected a {what} as text, got {type(item).__name__}")
        if _CONTROL.search(item):
            raise InvalidInputError(f"a {what} contains control characters (newlines, tabs, NUL); remove them")
    return items


def _day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1000


def ids_filter(ids: Iterable[str]) -> str:
    return f"sha256 in [{', '.join(quote_literal(validate_sha256(i)) for i in ids)}]"


def rights_filter(usable_at: int | None = None, for_reference: bool = False) -> str:
    """Assets within their usage rights at `usable_at` (epoch ms; None: any), and with
    `for_reference` only those that may be sent as references (schema 2 and later)."""
    clauses = []
    if usable_at is not None:
        clauses.append(f"(usable_until == 0 or usable_until > {int(usable_at)})")
    if for_reference:
        clauses.append("no_reference == false")
    return " and ".join(clauses)


def rights_matcher(usable_at: int | None = None, for_reference: bool = False) -> Callable[[dict], bool]:
    """rights_filter's test, on a row read from Milvus (the routes that rank rows here)."""
    def keeps(row: dict) -> bool:
        until = int(row.get("usable_until") or 0)
        if usable_at is not None and until and until <= usable_at:
            return False
        return not (for_reference and row.get("no_reference"))
    return keeps
