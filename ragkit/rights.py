"""Usage rights of an asset: a licence or usage note, a usable-until date, "do not use as a reference".

The date is a whole day, in UTC: "usable until 2026-06-30" means through that day, so the asset
expires at 2026-07-01 00:00 UTC (`Asset.usable_until` holds that instant, `Asset.expired(now)` tests
it). An expired asset is still in the library and still found by a plain search; it is left out of
the Studio's suggestions, of batch products and of `search --usable`, and the tray asks before
taking it (`blocked_as_reference` gives the reason to show).
"""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from ragkit.errors import InvalidInputError
from ragkit.records import Asset, last_usable_day
from ragkit.storage.schema import MAX_LICENCE_BYTES

DAY_MS = 86_400_000
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits only (fullmatch)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
LAST_DAY = date(2199, 12, 30)  # the last day whose end still fits the plausible dates (records.py)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class RightsChange:
    """What to change on each asset; None leaves a field as it is."""
    licence: str | None = None        # "" clears the note
    usable_until: int | None = None   # epoch ms when it expires; 0 = no limit
    no_reference: bool | None = None

    @property
    def empty(self) -> bool:
        return self.licence is None and self.usable_until is None and self.no_reference is None

    def apply(self, asset: Asset) -> Asset:
        changes = {name: value for name, value in (("licence", self.licence), ("usable_until", self.usable_until),
                                                   ("no_reference", self.no_reference)) if value is not None}
        return dataclasses.replace(asset, **changes)


def rights_change(*, until: str | date | None = None, no_until: bool = False, note: str | None = None,
                  no_reference: bool | None = None) -> RightsChange:
    """A validated change from what a person typed (CLI flags, the page's fields)."""
    if until is not None and no_until:
        raise InvalidInputError("Give a usable-until date or remove it (--no-until), not both.")
    expires = 0 if no_until else (None if until is None else expiry_of(until))
    return RightsChange(licence=None if note is None else clean_note(note), usable_until=expires,
                        no_reference=no_reference)


def expiry_of(day: str | date) -> int:
    """The instant an asset "usable until `day`" expires: the start of the next day, UTC."""
    if isinstance(day, str):
        day = parse_day(day)
    if not date(1970, 1, 1) <= day <= LAST_DAY:
        raise InvalidInputError(f"The usable-until date {day.isoformat()} is outside 1970-01-01..{LAST_DAY.isoformat()}.")
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
    return int(start.timestamp()) * 1000


def parse_day(text: str) -> date:
    candidate = text.strip()
    if not _DATE.fullmatch(candidate):
        raise InvalidInputError(f"{_shown(text)} is not a date: write it as YYYY-MM-DD, e.g. 2026-06-30.")
    try:
        return date.fromisoformat(candidate)
    except ValueError:
        raise InvalidInputError(f"{_shown(text)} is not a day of the calendar: write it as YYYY-MM-DD, "
                                "e.g. 2026-06-30.") from None


def clean_note(text: str) -> str:
    """A licence or usage note as stored: one line, trimmed, within the field's size."""
    if not isinstance(text, str):
        raise InvalidInputError(f"The licence note must be text, not {type(text).__name__}.")
    if _CONTROL.search(text):
        raise InvalidInputError("The licence note contains control characters (line breaks, tabs, escapes); "
                                "write it on one line.")
    note = " ".join(text.split())
    size = len(note.encode("utf-8"))
    if size > MAX_LICENCE_BYTES:
        raise InvalidInputError(f"The licence note is {size:,} bytes long; the limit is {MAX_LICENCE_BYTES:,}. "
                                "Shorten it (or put a link to the full licence).")
    return note


def usable(asset: Asset, now: int) -> bool:
    """Within its usage rights at `now` (epoch ms): not past its usable-until date."""
    return not asset.expired(now)


def blocked_as_reference(asset: Asset, now: int) -> str | None:
    """Why this asset should not go to the image model as a reference (None: it may).
    Suggestions and batch products leave such assets out; the tray asks first."""
    if asset.expired(now):
        day = last_usable_day(asset.usable_until)
        return f"its usage rights ended{f' after {day.isoformat()}' if day else ''}"
    if asset.no_reference:
        return "it is marked “do not use as a reference”"
    return None


def describe(asset: Asset, now: int) -> str:
    """One line about an asset's rights, for the CLI and captions ('' when it has none)."""
    parts = []
    day = last_usable_day(asset.usable_until)
    if day:
        parts.append(f"expired after {day.isoformat()}" if asset.expired(now) else f"usable until {day.isoformat()}")
    if asset.no_reference:
        parts.append("not as a reference")
    if asset.licence:
        parts.append(asset.licence)
    return " · ".join(parts)


def _shown(text: str) -> str:
    return repr(text[:40] + ("…" if len(text) > 40 else ""))
