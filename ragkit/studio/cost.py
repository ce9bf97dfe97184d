"""What generations cost: a price table per model, and a ledger of every generation's usage and cost.

Gemini bills image generation by tokens: prompt tokens (the brief and the reference images) at the
model's input price, generated text and "thinking" at its text output price, and generated images at
its image output price (one 1024 px image of Nano Banana is 1,290 tokens, $0.039). Every answer carries
its usage metadata; ``generation._usage`` turns it into the counts priced here.

Default prices (USD per 1M tokens, paid tier, standard, not batch mode) come from the model table,
ragkit.studio.models (read 2026-12-07; each entry says where its numbers come from and whether Google's
pricing page, https://ai.google.dev/gemini-api/docs/pricing, confirmed them). The price of an image
depends on its size (``image_size``): a 4K image is billed more image tokens than a 1K one, so a real
answer's usage prices it exactly, and an estimate made before sending uses the table's tokens per size.
Prices change: ``RAGKIT_PRICES``
overrides them, as JSON or as the path of a JSON file, e.g.
``{"gemini-3-pro-image": {"input": 2, "output_text": 12, "output_image": 120}}``; a model set
to ``null`` has no price. A model without a price costs "unknown", never $0.

The ledger (``RAGKIT_DATA_DIR/usage/ledger.jsonl``) gets one line per generation request that
answered, whether its images were kept or not: a generation you didn't keep still cost money. It
lives next to the blobs, so in team mode every process appends to the same file; an append of one
short line with O_APPEND is one write, so lines from several processes never interleave.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from stat import S_ISREG
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from ragkit.errors import ConfigError, StateFileError
from ragkit.storage.files import MAX_LINE_BYTES, open_state_file, parse_json, read_json_file
from ragkit.studio.models import MODELS, MODELS_READ_ON, TEXT_MODELS, Price, bare_id, model_info

log = logging.getLogger(__name__)
PRICES_READ_ON = MODELS_READ_ON
PRICES_SOURCE = "https://ai.google.dev/gemini-api/docs/pricing"
MILLION = 1_000_000
LEDGER_NAME = "usage/ledger.jsonl"
USAGE_KEYS = ("prompt_tokens", "output_tokens", "total_tokens", "text_tokens", "image_tokens",
              "thoughts_tokens", "images")


DEFAULT_PRICES: dict[str, Price] = {mid: info.price for mid, info in {**MODELS, **TEXT_MODELS}.items()
                                     if info.price is not None}

# Tokens per reference image (one tile) and a brief's text: only for estimates made before sending.
FALLBACK_IMAGE_TOKENS = 1120  # a 1K image of every 3.x image model
REFERENCE_TOKENS = 258
BRIEF_TOKENS = 100


class PriceTable:
    """Prices per model id: the defaults above with RAGKIT_PRICES applied."""

    def __init__(self, prices: Mapping[str, Price | None]) -> None:
        self._prices = {bare_id(model): price for model, price in prices.items()}

    @classmethod
    def from_setting(cls, setting: str) -> "PriceTable":
        """The defaults, overridden by RAGKIT_PRICES (JSON, or the path of a JSON file; '' = none)."""
        prices: dict[str, Price | None] = dict(DEFAULT_PRICES)
        for model, override in _read_override(setting).items():
            prices[bare_id(model)] = _price_from(model, override, prices.get(bare_id(model)))
        return cls(prices)

    def estimate(self, model: str, references: int, images: int = 1, size: str | None = None) -> float | None:
        """About what `images` requests with `references` images each will cost (before sending them):
        an image of this size's tokens out (the model's default size when None), a tile per reference
        and a brief's worth of text in."""
        info = model_info(model)
        tokens = info.image_tokens.get(size or info.default_size, FALLBACK_IMAGE_TOKENS)
        usage = {"prompt_tokens": BRIEF_TOKENS + REFERENCE_TOKENS * references, "image_tokens": tokens}
        cost = self.cost(model, usage)
        return None if cost is None else round(cost * images, 9)

    def price(self, model: str) -> Price | None:
        return self._prices.get(bare_id(model))

    def cost(self, model: str, usage: Mapping[str, int]) -> float | None:
        """USD for this usage, or None when the model's price is unknown or the usage impossible."""
        price = self.price(model)
        if price is None or usage_problem(usage):
            return None
        return round(price.cost(usage), 9)


def prices_for(settings: Any) -> PriceTable:
    """The price table of these Settings (RAGKIT_PRICES)."""
    return PriceTable.from_setting(getattr(settings, "prices", "") or "")


def _read_override(setting: str) -> dict[str, Any]:
    text = setting.strip()
    if not text:
        return {}
    fix = ("Give JSON such as {\"gemini-nano-banana-2.1\": {\"input\": 0.3, \"output_text\": 2.5, "
           "\"output_image\": 30}} or the path of such a file, or unset RAGKIT_PRICES to use the default prices.")
    source = "RAGKIT_PRICES"
    if text.startswith(("{", "[")):
        data = parse_json(text, source=source, fix=fix)
    else:
        path = Path(text).expanduser()
        source = f"RAGKIT_PRICES file {path}"
        try:
            data = read_json_file(path, what="the prices named by RAGKIT_PRICES", fix=fix, max_bytes=1024 * 1024)
        except FileNotFoundError:
            raise ConfigError(f"RAGKIT_PRICES names the file {path}, which does not exist. {fix}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a JSON object of model id -> prices per 1M tokens.")
    return data


def _price_from(model: str, override: Any, default: Price | None) -> Price | None:
    """One model's entry of RAGKIT_PRICES: null (no price), or some of input/output_text/output_image."""
    if override is None:
        return None
    fields = ("input", "output_text", "output_image")
    if not isinstance(override, dict) or set(override) - set(fields):
        raise ConfigError(f"RAGKIT_PRICES for {model!r} must be null or an object with the keys "
                          f"{', '.join(fields)} (USD per 1M tokens).")
    missing = [f for f in fields if f not in override and default is None]
    if missing:
        raise ConfigError(f"RAGKIT_PRICES for {model!r} has no default to fill in: give {', '.join(missing)} too.")
    values = {}
    for name in fields:
        value = override.get(name, getattr(default, name, None))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"RAGKIT_PRICES for {model!r}: {name} must be a number of USD per 1M tokens, "
                              f"0 or more (not {value!r}).")
        values[name] = float(value)
    return Price(**values)


def format_usd(value: float | None) -> str:
    """'$0.039', '$12.40', or 'unknown' (a price we don't have is never shown as $0)."""
    if value is None:
        return "unknown"
    return f"${value:,.3f}" if value < 10 else f"${value:,.2f}"


def sum_costs(costs: list[float | None]) -> float | None:
    """The total of some costs; None (unknown) if any of them is unknown."""
    if any(cost is None for cost in costs):
        return None
    return round(sum(costs), 9)  # type: ignore[arg-type]


MAX_TOKENS = 2 ** 24  # ~16.7M: far above any one request (a 4K image is ~2,000 tokens, a context ~1M)


def usage_problem(usage: Any) -> str | None:
    """Why these usage counts can't be true (negative, not a whole number, absurdly large), or None.
    An answer's usage comes from the network (a proxy, a bug): impossible usage is counted as an
    unknown cost, never priced into a negative or astronomical bill."""
    if usage is None:
        return None
    if not isinstance(usage, Mapping):
        return f"its usage is a {type(usage).__name__}, not counts"
    for key in USAGE_KEYS:
        value = usage.get(key, 0)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            return f"{key} is {value!r:.30}, not a count"
        if not 0 <= value <= MAX_TOKENS:
            return f"{key} is {value:,.0f}, an impossible count"
    return None


def usage_of(data: Any) -> dict[str, int]:
    """A usage mapping (from a file, from a Generation) as the known integer counts; all zero when the
    counts are impossible (usage_problem says why)."""
    if not data or usage_problem(data):
        return dict.fromkeys(USAGE_KEYS, 0)
    return {key: int(data.get(key) or 0) for key in USAGE_KEYS}


# ----------------------------------------------------------------------------- the ledger
@dataclass(frozen=True)
class LedgerTotals:
    generations: int = 0     # requests that answered
    images: int = 0
    cost_usd: float = 0.0    # over the generations whose model has a price
    unpriced: int = 0        # generations whose model had no price (or whose usage was impossible)
    damaged: int = 0         # lines that are not a generation's record: skipped, and said so
    problem: str = ""        # the ledger itself can't be read (a folder, a device): what to do

    @property
    def known_cost(self) -> float | None:
        """The cost to report: None (unknown) when nothing priced ran but something unpriced did."""
        if self.problem:
            return None
        return None if self.unpriced and self.generations == self.unpriced else round(self.cost_usd, 9)

    def add(self, entry: Any) -> "LedgerTotals":
        """One line's entry counted; a damaged one (not an object, impossible usage or cost) is skipped."""
        if not isinstance(entry, dict) or usage_problem(entry.get("usage")):
            return replace(self, damaged=self.damaged + 1)
        cost = entry.get("cost_usd")
        priced = isinstance(cost, (int, float)) and not isinstance(cost, bool)
        if priced and not (math.isfinite(cost) and 0 <= cost < 1e6):
            return replace(self, damaged=self.damaged + 1)
        return replace(self, generations=self.generations + 1,
                       images=self.images + usage_of(entry.get("usage"))["images"],
                       cost_usd=self.cost_usd + (float(cost) if priced else 0.0),
                       unpriced=self.unpriced + (not priced))

    def summary(self) -> str:
        """What to add after a cost: the unpriced generations, the skipped lines, a ledger that can't be read."""
        notes = []
        if self.unpriced and self.known_cost is not None:
            notes.append(f"+ {self.unpriced} at an unknown price")
        if self.damaged:
            notes.append(f"{self.damaged} damaged line{'s' if self.damaged != 1 else ''} of the ledger skipped")
        if self.problem:
            notes.append(self.problem)
        return f" ({'; '.join(notes)})" if notes else ""


class CostLedger:
    """Append-only JSON lines, one per generation; totals read incrementally (cheap on every page run)."""

    _cache: dict[Path, tuple[int, int, LedgerTotals]] = {}  # path -> (inode, bytes read, totals so far)
    _cache_lock = threading.Lock()

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LEDGER_NAME

    def record(self, model: str, usage: Mapping[str, int], cost_usd: float | None, *, source: str,
               job: str | None = None, kit: str | None = None, size: str | None = None) -> None:
        """Append one generation. One os.write of one line: appends from several processes don't mix.
        After a torn last line (a process killed mid-write, a full disk) the new line starts afresh."""
        entry = {"at": int(time.time() * 1000), "model": bare_id(model), "usage": usage_of(usage),
                 "cost_usd": cost_usd, "source": source}
        if problem := usage_problem(usage):
            entry["usage_problem"] = problem[:200]  # counted at an unknown cost
        if job:
            entry["job"] = job
        if kit:
            entry["kit"] = kit
        if size:
            entry["size"] = size
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
        finally:
            os.close(fd)

    def totals(self) -> LedgerTotals:
        """Every generation so far; reads only what was appended since the last call in this process.
        A damaged line is skipped and counted; a ledger that is not a file is said so, not raised."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return LedgerTotals()
        except OSError as exc:
            return LedgerTotals(problem=f"the cost ledger {self.path} can't be read ({exc.strerror})")
        with self._cache_lock:
            inode, offset, totals = self._cache.get(self.path, (stat.st_ino, 0, LedgerTotals()))
            if inode != stat.st_ino or stat.st_size < offset:  # replaced or truncated: start over
                offset, totals = 0, LedgerTotals()
            if stat.st_size > offset or totals.problem or not S_ISREG(stat.st_mode):  # a folder, a device: say so
                try:
                    offset, totals = self._read_from(offset, replace(totals, problem=""))
                except (StateFileError, OSError) as exc:
                    return LedgerTotals(problem=_ledger_problem(exc))
            self._cache[self.path] = (stat.st_ino, offset, totals)
            return totals

    def _read_from(self, offset: int, totals: LedgerTotals) -> tuple[int, LedgerTotals]:
        fix = "Move it away (a new ledger starts; the costs it recorded are then not counted)."
        with open_state_file(self.path, what="the cost ledger", fix=fix) as handle:
            handle.seek(offset)
            while True:
                line = handle.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_LINE_BYTES:  # no generation's line is this long: skip to the next one
                    while line and not line.endswith(b"\n"):
                        offset += len(line)
                        line = handle.readline(MAX_LINE_BYTES + 1)
                    offset += len(line)
                    totals = replace(totals, damaged=totals.damaged + 1)
                    continue
                if not line.endswith(b"\n"):
                    break  # a line still being written: read it next time
                offset += len(line)
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line, parse_constant=_not_a_number)
                except (ValueError, RecursionError):
                    entry = None  # a damaged line (a disk that filled up): skipped and counted
                totals = totals.add(entry)
        return offset, totals


def _not_a_number(name: str) -> Any:
    raise ValueError(name)


def _ledger_problem(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, StateFileError) else f"the cost ledger can't be read ({exc})"
    return text.split(" Move it away")[0].rstrip(".") + ": costs are unknown until it is moved away"


def record_generation(settings: Any, prices: PriceTable, model: str, usage: Mapping[str, int], *, source: str,
                      job: str | None = None, kit: str | None = None, rate: float = 1.0,
                      size: str | None = None) -> float | None:
    """Price one generation's usage and append it to the library's ledger; its cost (None: unknown).

    The generation was paid for whatever happens here: a ledger that can't be written (a full disk)
    is logged, and the images are still handed back. `rate`: 0.5 for the Batch API's half price."""
    cost = prices.cost(model, usage)
    if cost is not None and rate != 1.0:
        cost = round(cost * rate, 9)
    try:
        CostLedger(settings.data_dir).record(model, usage, cost, source=source, job=job, kit=kit, size=size)
    except OSError as exc:
        log.warning("could not write the cost ledger %s: %s", CostLedger(settings.data_dir).path, exc)
    return cost
