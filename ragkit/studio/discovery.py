"""Which Gemini models the key can use, asked live (``client.models.list()``), so the next shutdown breaks nobody.

Google retires model ids on a schedule (see ragkit.studio.models). A hard-coded id alone is not trusted:
the API's own list decides what the Studio offers, what the CLI accepts, and which configured ids are
gone. The answer is cached per key and endpoint (by a hash of them, never the key itself) for
CACHE_SECONDS, in the process, so no Streamlit rerun pays for it. Without a network (tests, air-gapped
sites) or a key, the known table stands in, and the catalogue says so.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

from ragkit.errors import ModelGoneError
from ragkit.studio.models import (DEFAULT_MODEL, MODELS, MODELS_READ_ON, RETIRED, TEXT_MODELS, bare_id,
                                  model_info, text_model_info)

log = logging.getLogger(__name__)
CACHE_SECONDS = 3600.0        # a live list is good for about an hour
OFFLINE_RETRY_SECONDS = 60.0  # an offline fallback is asked again sooner
LIST_TIMEOUT_S = 10.0
PAGE_SIZE = 100
# A text model that makes captions: generateContent, not an image, speech, embedding or live model.
_NOT_TEXT = ("image", "tts", "embedding", "live", "audio", "robotics", "computer-use", "veo", "imagen", "lyria",
             "aqa", "learnlm", "gemma")


@dataclass(frozen=True)
class Catalogue:
    """The models the key can use: image ones for the Studio, text ones for captions."""
    image: tuple[str, ...]
    text: tuple[str, ...]
    live: bool           # False: the known table, because the API could not be asked
    note: str = ""       # why it is not live, for the page and the CLI
    fetched_at: float = 0.0

    def ids(self, kind: str) -> tuple[str, ...]:
        return self.image if kind == "image" else self.text

    def offers(self, model_id: str, kind: str = "image") -> bool:
        return bare_id(model_id) in self.ids(kind)


def known_catalogue(note: str) -> Catalogue:
    """The table's current models, standing in for a live list."""
    return Catalogue(tuple(MODELS), tuple(TEXT_MODELS), live=False, note=note, fetched_at=time.monotonic())


def classify(model_id: str, actions: Iterable[str] | None) -> str | None:
    """'image', 'text' or None (not for ragkit) for one listed model."""
    mid = bare_id(model_id)
    if "generateContent" not in set(actions or ()):
        return None
    if mid in MODELS or ("image" in mid and "imagen" not in mid):
        return "image"
    if mid in TEXT_MODELS or (mid.startswith("gemini-") and not any(word in mid for word in _NOT_TEXT)):
        return "text"
    return None


def _ordered(ids: Iterable[str], table: dict) -> tuple[str, ...]:
    """Known current models first (in the table's order), then new ones, then deprecated ones."""
    found = set(ids)
    known = [m for m in table if m in found and table[m].status == "current"]
    new = sorted(m for m in found if m not in table)
    old = [m for m in table if m in found and table[m].status != "current"]
    return tuple(known + new + old)


def list_live(client: Any) -> Catalogue:
    """Ask the API (every page) which models this client's key can use. Raises what the SDK raises."""
    image: list[str] = []
    text: list[str] = []
    for model in client.models.list(config={"page_size": PAGE_SIZE, "query_base": True}):
        mid = bare_id(model.name or "")
        kind = classify(mid, model.supported_actions)
        (image if kind == "image" else text if kind == "text" else []).append(mid)
    return Catalogue(_ordered(image, MODELS), _ordered(text, TEXT_MODELS), live=True, fetched_at=time.monotonic())


_cache: dict[str, Catalogue] = {}
_lock = threading.Lock()


def _cache_key(api_key: str, base_url: str | None) -> str:
    return hashlib.sha256(f"{api_key}\0{base_url or ''}".encode("utf-8")).hexdigest()


def discover(settings: Any, *, refresh: bool = False) -> Catalogue:
    """The catalogue for these Settings' key and endpoint: cached, asked again after CACHE_SECONDS
    (an offline answer after OFFLINE_RETRY_SECONDS), or now with refresh=True."""
    key = (getattr(settings, "gemini_api_key", "") or "").strip()
    if not key:
        return known_catalogue("No Gemini API key is configured, so the models could not be asked for; "
                               f"showing ragkit's known table (read {MODELS_READ_ON}).")
    base_url = getattr(settings, "gemini_base_url", "") or None
    cache_key = _cache_key(key, base_url)
    with _lock:
        cached = _cache.get(cache_key)
    if cached and not refresh:
        age = time.monotonic() - cached.fetched_at
        if age < (CACHE_SECONDS if cached.live else OFFLINE_RETRY_SECONDS):
            return cached
    catalogue = _ask(key, base_url)
    with _lock:
        _cache[cache_key] = catalogue
    return catalogue


def forget() -> None:
    """Drop every cached catalogue (tests; a page's "refresh" button uses refresh=True instead)."""
    with _lock:
        _cache.clear()


def _ask(key: str, base_url: str | None) -> Catalogue:
    from ragkit.studio.generation import ImageGenerator
    try:
        with ImageGenerator(key, base_url=base_url, timeout_s=LIST_TIMEOUT_S, max_retries=0) as generator:
            return list_live(generator._client)
    except Exception as exc:  # noqa: BLE001 - no network, a proxy, a refused key: the table stands in
        reason = type(exc).__name__
        log.info("could not list Gemini models (%s); using the known table", reason)
        return known_catalogue(f"Could not ask Gemini which models this key can use ({reason}); showing "
                               f"ragkit's known table (read {MODELS_READ_ON}), which may be out of date.")


def live_ids_or_known(client: Any, kind: str) -> tuple[str, ...]:
    """What a client's key can use now (uncached: asked after a 404), else the table's current ids."""
    try:
        return list_live(client).ids(kind)
    except Exception:  # noqa: BLE001 - the 404 already says the model is gone; the list is a courtesy
        return known_catalogue("").ids(kind)


def replacement_for(model_id: str, kind: str, offered: Iterable[str]) -> str | None:
    """The model to switch to from `model_id`: Google's named replacement when offered, else the table's
    default, else the first offered model."""
    offered = list(offered)
    mid = bare_id(model_id)
    named = [RETIRED[mid].replacement] if mid in RETIRED else []
    info = model_info(mid) if kind == "image" else text_model_info(mid)
    if info.replacement:
        named.append(info.replacement)
    from ragkit.config import DEFAULT_CAPTION_MODEL
    named.append(DEFAULT_MODEL if kind == "image" else DEFAULT_CAPTION_MODEL)
    for candidate in named:
        if candidate in offered:
            return candidate
    return offered[0] if offered else None


def _label(model_id: str, kind: str) -> str:
    info = model_info(model_id) if kind == "image" else text_model_info(model_id)
    return f"{info.label} ({model_id})" if info.known and info.label != model_id else model_id


def gone_message(model_id: str, kind: str, offered: Iterable[str], setting: str = "RAGKIT_GEMINI_MODEL") -> str:
    """The one line for a configured model that is no longer offered, naming the live replacements."""
    offered = list(offered)
    mid = bare_id(model_id)
    retired = RETIRED.get(mid)
    when = f" (Google shut it down on {retired.shutdown})" if retired else ""
    what = "image" if kind == "image" else "text"
    switch = replacement_for(mid, kind, offered)
    listed = ", ".join(_label(m, kind) for m in offered[:6]) or "none"
    advice = f"Set {setting}={switch}" if switch else f"Set {setting} to one of them"
    return (f"The model {mid} is no longer offered{when}. Live {what} models for this key: {listed}. "
            f"{advice}, or pick one with `python -m ragkit models`.")


def require_offered(settings: Any, model_id: str, kind: str = "image",
                    setting: str = "RAGKIT_GEMINI_MODEL") -> Catalogue:
    """ModelGoneError (with the replacements) when the catalogue doesn't offer this model: a live list
    without it, or, offline, an id the table says was shut down. Otherwise the catalogue."""
    catalogue = discover(settings)
    mid = bare_id(model_id)
    gone = (not catalogue.offers(mid, kind)) if catalogue.live else mid in RETIRED
    if gone:
        raise ModelGoneError(gone_message(mid, kind, catalogue.ids(kind), setting))
    return catalogue


@dataclass(frozen=True)
class ConfiguredModel:
    setting: str
    model: str
    kind: str
    gone: bool
    message: str = ""
    switch_to: str | None = None


def configured_models(settings: Any, catalogue: Catalogue) -> list[ConfiguredModel]:
    """The image and caption models the settings name, each with whether it is gone and what to use."""
    from ragkit.config import DEFAULT_CAPTION_MODEL
    found = []
    for setting, model, kind in (("RAGKIT_GEMINI_MODEL", getattr(settings, "gemini_model", "") or DEFAULT_MODEL, "image"),
                                 ("RAGKIT_CAPTION_MODEL", getattr(settings, "caption_model", "") or DEFAULT_CAPTION_MODEL,
                                  "text")):
        mid = bare_id(model)
        gone = (not catalogue.offers(mid, kind)) if catalogue.live else mid in RETIRED
        found.append(ConfiguredModel(setting, mid, kind, gone,
                                     gone_message(mid, kind, catalogue.ids(kind), setting) if gone else "",
                                     replacement_for(mid, kind, catalogue.ids(kind)) if gone else None))
    return found
