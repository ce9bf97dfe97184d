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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ragkit.errors import ConfigError
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
        """USD for this usage, or None when the model's price is unknown."""
        price = self.price(model)
        return None if price is None else round(price.cost(usage), 9)


def prices_for(settings: Any) -> PriceTable:
    """The price table of these Settings (RAGKIT_PRICES)."""
    return PriceTable.from_setting(getattr(settings, "prices", "") or "")


def _read_override(setting: str) -> dict[str, Any]:
    text = setting.strip()
    if not text:
        return {}
    source = "RAGKIT_PRICES"
    if not text.startswith(("{", "[")):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"RAGKIT_PRICES names the file {path}, which can't be read ({exc.strerror}). "
                              "Give JSON such as {\"gemini-nano-banana-2.1\": {\"input\": 0.3, "
                              "\"output_text\": 2.5, \"output_image\": 30}} or the path of such a file.") from None
        source = f"RAGKIT_PRICES file {path}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}). Fix it, or unset "
                          "RAGKIT_PRICES to use the default prices.") from None
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


def usage_of(data: Mapping[str, Any] | None) -> dict[str, int]:
    """A usage mapping (from a file, from a Generation) as the known integer counts."""
    data = data or {}
    return {key: int(data.get(key) or 0) for key in USAGE_KEYS}


# ----------------------------------------------------------------------------- the ledger
@dataclass(frozen=True)
class LedgerTotals:
    generations: int = 0     # requests that answered
    images: int = 0
    cost_usd: float = 0.0    # over the generations whose model has a price
    unpriced: int = 0        # generations whose model had no price

    @property
    def known_cost(self) -> float | None:
        """The cost to report: None (unknown) when nothing priced ran but something unpriced did."""
        return None if self.unpriced and self.generations == self.unpriced else round(self.cost_usd, 9)

    def add(self, entry: Mapping[str, Any]) -> "LedgerTotals":
        cost = entry.get("cost_usd")
        priced = isinstance(cost, (int, float)) and not isinstance(cost, bool)
        return LedgerTotals(self.generations + 1, self.images + int(usage_of(entry.get("usage"))["images"]),
                            self.cost_usd + (float(cost) if priced else 0.0), self.unpriced + (not priced))


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
        """Every generation so far; reads only what was appended since the last call in this process."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return LedgerTotals()
        with self._cache_lock:
            inode, offset, totals = self._cache.get(self.path, (stat.st_ino, 0, LedgerTotals()))
            if inode != stat.st_ino or stat.st_size < offset:  # replaced or truncated: start over
                offset, totals = 0, LedgerTotals()
            if stat.st_size > offset:
                offset, totals = self._read_from(offset, totals)
            self._cache[self.path] = (stat.st_ino, offset, totals)
            return totals

    def _read_from(self, offset: int, totals: LedgerTotals) -> tuple[int, LedgerTotals]:
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # a line still being written: read it next time
                offset += len(line)
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a damaged line (a disk that filled up) costs nothing to skip
                if isinstance(entry, dict):
                    totals = totals.add(entry)
        return offset, totals


def record_generation(settings: Any, prices: PriceTable, model: str, usage: Mapping[str, int], *, source: str,
                      job: str | None = None, kit: str | None = None, size: str | None = None) -> float | None:
    """Price one generation's usage and append it to the library's ledger; its cost (None: unknown).

    The generation was paid for whatever happens here: a ledger that can't be written (a full disk)
    is logged, and the images are still handed back."""
    cost = prices.cost(model, usage)
    try:
        CostLedger(settings.data_dir).record(model, usage, cost, source=source, job=job, kit=kit, size=size)
    except OSError as exc:
        log.warning("could not write the cost ledger %s: %s", CostLedger(settings.data_dir).path, exc)
    return cost
