"""Links that reproduce a search or open an asset: what goes in the URL's query, and back.

A link is untrusted input (anyone can type a URL), so every value is checked like the CLI's
flags, with the same parsers (ragkit.storage.filters): a bad one is left out with a warning that says
what was wrong, and the rest of the link still works. Nothing here knows Streamlit; the pages'
side is ragkit.ui.links.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ragkit.errors import InvalidInputError
from ragkit.storage.filters import Filters, file_type, parse_day, parse_min_side, parse_orientation, validate_sha256
from ragkit.records import SOURCES
from ragkit.text import printable

Params = Mapping[str, Sequence[str]]  # a query parameter's values (a key may repeat: ?tag=a&tag=b)
MODES = ("words", "image", "similar")
MAX_TEXT_CHARS = 1000
MAX_PARAM_VALUES = 32  # e.g. ?tag=… repeated: more than an asset can have is not a real link


@dataclass(frozen=True)
class SearchLink:
    """What the Search page needs to show the same results (its defaults: an empty search)."""
    mode: str = "words"
    words: str = ""                # the text query (mode words)
    words_too: bool = True         # hybrid (CLIP + full-text) or plain CLIP
    similar: str = ""              # the example asset (mode similar)
    with_words: str = ""           # composed: words that move the example
    weight: float = 0.5            # composed: 0 = the picture only, 1 = the words only
    not_words: str = ""            # composed: move away from this
    k: int = 6
    filters: Filters = field(default_factory=Filters)


def search_params(link: SearchLink) -> dict[str, list[str]]:
    """The query parameters of a link: only what differs from the defaults, in a stable order."""
    default = SearchLink()
    out: dict[str, list[str]] = {}
    if link.mode != default.mode:
        out["mode"] = [link.mode]
    if link.mode == "words" and link.words:
        out["q"] = [link.words]
        if not link.words_too:
            out["words"] = ["0"]
    if link.mode == "similar" and link.similar:
        out["similar"] = [link.similar]
    if link.mode in ("image", "similar"):
        if link.with_words:
            out["with"] = [link.with_words]
            if link.weight != default.weight:
                out["weight"] = [f"{link.weight:g}"]
        if link.not_words:
            out["not"] = [link.not_words]
    out["k"] = [str(link.k)]
    out.update(filter_params(link.filters))
    return out


def filter_params(filters: Filters) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if filters.tags:
        out["tag"] = list(filters.tags)
    if filters.source:
        out["source"] = [filters.source]
    if filters.since:
        out["since"] = [filters.since.isoformat()]
    if filters.until:
        out["until"] = [filters.until.isoformat()]
    if filters.types:
        out["type"] = list(filters.types)
    if filters.orientation:
        out["orientation"] = [filters.orientation]
    if filters.min_side:
        out["min_side"] = [str(filters.min_side)]
    return out


def parse_search(params: Params, default_k: int, max_k: int) -> tuple[SearchLink, list[str]]:
    """The search a link describes, and a warning for each value that was left out."""
    reader = _Reader(params)
    mode = reader.one("mode", lambda v: _choice(v, MODES, "mode"), "words")
    similar = reader.one("similar", validate_sha256, "")
    link = SearchLink(
        mode="similar" if similar and "mode" not in params else mode,
        words=reader.one("q", _text, ""),
        words_too=reader.one("words", _on_off, True),
        similar=similar,
        with_words=reader.one("with", _text, ""),
        weight=reader.one("weight", _fraction, 0.5),
        not_words=reader.one("not", _text, ""),
        k=reader.one("k", lambda v: _whole(v, 1, max_k, "k"), default_k),
        filters=parse_filters(reader),
    )
    reader.unknown(known={"mode", "similar", "q", "words", "with", "weight", "not", "k", *_FILTER_KEYS})
    return link, reader.warnings


_FILTER_KEYS = ("tag", "source", "since", "until", "type", "orientation", "min_side")


def parse_filters(reader: "_Reader") -> Filters:
    values = {
        "tags": reader.many("tag", _tag),
        "source": reader.one("source", lambda v: _choice(v, SOURCES, "source"), None),
        "since": reader.one("since", lambda v: parse_day(v, "since"), None),
        "until": reader.one("until", lambda v: parse_day(v, "until"), None),
        "types": reader.many("type", file_type),
        "orientation": reader.one("orientation", parse_orientation, None),
        "min_side": reader.one("min_side", parse_min_side, 0),
    }
    try:
        return Filters(**values)
    except InvalidInputError as exc:  # each value was fine alone; together they are not (since > until)
        reader.warnings.append(f"{printable(str(exc))}: the dates are left out")
        return Filters(**{**values, "since": None, "until": None})


def parse_asset(params: Params) -> tuple[str, list[str]]:
    """The asset a Library link opens ('' for none), and warnings."""
    reader = _Reader(params)
    return reader.one("asset", validate_sha256, ""), reader.warnings


class _Reader:
    """Reads checked values out of query parameters, collecting a warning per bad one."""

    def __init__(self, params: Params) -> None:
        self.params = {key: [str(v) for v in values] for key, values in params.items()}
        self.warnings: list[str] = []

    def one(self, key: str, parse: Callable[[str], object], default):
        values = self.params.get(key) or []
        if not values:
            return default
        if len(values) > 1:
            self._warn(key, values[-1], "it was given more than once; the last one counts")
        try:
            return parse(values[-1])
        except (InvalidInputError, ValueError) as exc:
            self._warn(key, values[-1], str(exc))
            return default

    def many(self, key: str, parse: Callable[[str], str]) -> tuple[str, ...]:
        values = self.params.get(key) or []
        if len(values) > MAX_PARAM_VALUES:
            self._warn(key, values[0], f"it was given {len(values)} times; only the first {MAX_PARAM_VALUES} count")
            values = values[:MAX_PARAM_VALUES]
        kept = []
        for value in values:
            try:
                kept.append(parse(value))
            except (InvalidInputError, ValueError) as exc:
                self._warn(key, value, str(exc))
        return tuple(kept)

    def unknown(self, known: set[str]) -> None:
        for key in self.params:
            if key not in known:
                self.warnings.append(f"“{printable(key)[:40]}” is not something a link can set; it is ignored")

    def _warn(self, key: str, value: str, why: str) -> None:
        self.warnings.append(f"{key}={printable(value)[:60]!r} was left out: {printable(why)}")


def _text(value: str) -> str:
    text = " ".join(value.split())  # newlines and tabs in a URL become spaces, as in a text box
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"it is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}")
    if any(not ch.isprintable() for ch in text):
        raise InvalidInputError("it contains characters that can't be shown")
    return text


def _tag(value: str) -> str:
    tags = Filters(tags=(value,)).tags  # normalised and checked like a typed tag
    if not tags:
        raise InvalidInputError("an empty tag")
    return tags[0]


def _choice(value: str, choices: Sequence[str], what: str) -> str:
    key = value.strip().lower()
    if key not in choices:
        raise InvalidInputError(f"{what} must be one of {', '.join(choices)}")
    return key


def _on_off(value: str) -> bool:
    key = value.strip().lower()
    if key not in ("0", "1", "on", "off", "true", "false"):
        raise InvalidInputError("give 1 (on) or 0 (off)")
    return key in ("1", "on", "true")


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0.0 <= number <= 1.0:  # also refuses nan and inf
        raise InvalidInputError("give a number from 0 (the picture only) to 1 (the words only)")
    return number


def _whole(value: str, low: int, high: int, what: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidInputError(f"{what} must be a whole number from {low} to {high}")
    return number


__all__ = ["SearchLink", "search_params", "filter_params", "parse_search", "parse_asset", "MODES"]
