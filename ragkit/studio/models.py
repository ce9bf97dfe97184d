"""The model catalogue: which Gemini models ragkit knows, what they take, what they cost, and which are gone.

Read on 2026-12-07 (MODELS_READ_ON) from Google's own pages:

* release notes, https://ai.google.dev/gemini-api/docs/changelog
  - 2026-05-28: ``gemini-3.1-flash-image`` (Nano Banana 2) and ``gemini-3-pro-image`` (Nano Banana Pro) GA;
    ``gemini-3.1-flash-image-preview`` and ``gemini-3-pro-image-preview`` shut down on 2026-06-25.
  - 2026-10-06: ``gemini-nano-banana-2.1`` (Nano Banana 2.1) GA, "the updated version of Nano Banana 2",
    1K, 2K and 4K, wide ratios 1:4, 4:1, 1:8, 8:1. ``gemini-3.1-flash-image`` deprecated (no shutdown
    date announced), "migrate to gemini-nano-banana-2.1". So the default image model is Nano Banana 2.1,
    not ``gemini-3.1-flash-image`` as issue 17 suggested: the docs win.
  - 2026-09-18: the 2.5 models are limited to projects that already used them; new projects: 3.5 Flash-Lite
    or 3.8 Flash.
* deprecations, https://ai.google.dev/gemini-api/docs/deprecations: ``gemini-2.5-flash-image`` shutdown
  2026-10-02, ``gemini-2.5-flash`` 2026-06-17; ``gemini-3.5-flash-lite`` (released 2026-07-21) and
  ``gemini-3.1-flash-lite`` (shutdown 2027-05-07) listed without a past shutdown date.
* model pages, https://ai.google.dev/gemini-api/docs/models/gemini-3.1-flash-lite-image (Nano Banana 2 Lite,
  stable: image_size 1K only, ten ratios) and .../models/gemini-3.5-flash-lite (stable text model: captions).
* Vertex model page for Gemini 3.1 Flash Image (docs.cloud.google.com/vertex-ai/generative-ai/docs/models/
  gemini/3-1-flash-image): 14 images per prompt, sizes 512/1K/2K/4K, 747/1120/1680/2520 tokens per image.

Prices could not all be confirmed on Google's pricing page (https://ai.google.dev/gemini-api/docs/pricing)
as stored here: every entry says whether it was (``prices_confirmed``) and where the number came from
(``price_source``). A model without a price costs "unknown", never $0. ``RAGKIT_PRICES`` overrides any.

The table is a fallback and a source of labels and limits: which models a key can use is asked live
(ragkit.studio.discovery). A model the API lists that this table doesn't know is usable with
``unknown_model``'s conservative limits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ragkit.config import DEFAULT_CAPTION_MODEL, DEFAULT_GEMINI_MODEL
from ragkit.text import printable

MODELS_READ_ON = "2026-12-07"
MODELS_SOURCES = ("https://ai.google.dev/gemini-api/docs/changelog",
                  "https://ai.google.dev/gemini-api/docs/deprecations",
                  "https://ai.google.dev/gemini-api/docs/models",
                  "https://ai.google.dev/gemini-api/docs/image-generation",
                  "https://ai.google.dev/gemini-api/docs/pricing")
DEFAULT_MODEL = DEFAULT_GEMINI_MODEL
SIZES: tuple[str, ...] = ("512", "1K", "2K", "4K")  # image_config.image_size, smallest first
SIZE_LABELS = {"512": "512 px (draft)", "1K": "1K (1024 px)", "2K": "2K (2048 px)", "4K": "4K (4096 px)"}
CLASSIC_RATIOS: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
WIDE_RATIOS: tuple[str, ...] = ("1:4", "4:1", "1:8", "8:1")  # the 3.1 Flash family adds these
ASPECT_RATIOS: tuple[str, ...] = CLASSIC_RATIOS + WIDE_RATIOS
SAFE_RATIOS: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9")  # every image model so far
ASPECT_LABELS = {  # what each ratio is for
    "1:1": "1:1 square", "2:3": "2:3 portrait", "3:2": "3:2 landscape", "3:4": "3:4 portrait",
    "4:3": "4:3 landscape", "4:5": "4:5 portrait (feed)", "5:4": "5:4 landscape", "9:16": "9:16 story / reel",
    "16:9": "16:9 banner / video", "21:9": "21:9 cinematic", "1:4": "1:4 tall strip", "4:1": "4:1 wide strip",
    "1:8": "1:8 skyscraper", "8:1": "8:1 panorama",
}
UNKNOWN_MAX_REFERENCES = 3  # what every Gemini image model so far has taken at least


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens of one model."""
    input: float
    output_text: float   # generated text and thinking
    output_image: float  # generated images

    def cost(self, usage) -> float:
        """The cost of one generation's usage (see generation._usage for the counts)."""
        text_out = int(usage.get("text_tokens", 0)) + int(usage.get("thoughts_tokens", 0))
        return (int(usage.get("prompt_tokens", 0)) * self.input + text_out * self.output_text
                + int(usage.get("image_tokens", 0)) * self.output_image) / 1_000_000


@dataclass(frozen=True)
class ModelInfo:
    id: str
    label: str
    max_references: int
    aspect_ratios: tuple[str, ...]
    about: str = ""  # what it is, and good at, in a few words
    sizes: tuple[str, ...] = ("1K",)      # image_size values it takes
    image_tokens: dict[str, int] = field(default_factory=dict)  # tokens billed per generated image, per size
    price: Price | None = None             # None: price unknown
    prices_confirmed: bool = False
    price_source: str = ""
    status: str = "current"                # current | deprecated
    replacement: str = ""                  # for a deprecated model: what Google says to use instead
    kind: str = "image"                    # image | text
    known: bool = True                     # False: listed by the API, not in this table

    def price_per_image(self, size: str | None) -> float | None:
        """USD for one generated image of this size (None: unknown)."""
        tokens = self.image_tokens.get(size or self.default_size)
        if self.price is None or tokens is None:
            return None
        return round(tokens * self.price.output_image / 1_000_000, 6)

    @property
    def default_size(self) -> str:
        return "1K" if "1K" in self.sizes else self.sizes[0]


_FLASH_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}
MODELS: dict[str, ModelInfo] = {
    "gemini-nano-banana-2.1": ModelInfo(
        "gemini-nano-banana-2.1", "Nano Banana 2.1", 14, ASPECT_RATIOS,
        "the current Nano Banana 2 (GA 2026-10-06): fast, sharp text, 1K to 4K",
        sizes=("1K", "2K", "4K"), image_tokens={"1K": 1120, "2K": 1680, "4K": 2520},
        price=Price(1.50, 7.50, 30.00), prices_confirmed=False,
        price_source="not on the pricing page as read; $30/1M image tokens ($0.0336 per 1K image), $1.50 in, "
                     "$7.50 text out from LiteLLM's launch note (github.com/BerriAI/litellm/discussions/44983); "
                     "2K/4K token counts assumed as for 3.1 Flash Image"),
    "gemini-3.1-flash-image": ModelInfo(
        "gemini-3.1-flash-image", "Nano Banana 2 (3.1 Flash Image)", 14, ASPECT_RATIOS,
        "Gemini 3.1 Flash Image, the only one with 512 px drafts",
        sizes=SIZES, image_tokens=dict(_FLASH_TOKENS),
        price=Price(0.50, 3.00, 60.00), prices_confirmed=False,
        price_source="token counts from Google's Vertex model page; $60/1M image tokens, $0.50 in, $3 out as "
                     "listed for the preview model, not re-confirmed for the GA id",
        status="deprecated", replacement="gemini-nano-banana-2.1"),
    "gemini-3-pro-image": ModelInfo(
        "gemini-3-pro-image", "Nano Banana Pro", 14, CLASSIC_RATIOS,
        "Gemini 3 Pro Image (GA 2026-05-28), follows long briefs and renders text most closely",
        sizes=("1K", "2K", "4K"), image_tokens={"1K": 1120, "2K": 1120, "4K": 2000},
        price=Price(2.00, 12.00, 120.00), prices_confirmed=False,
        price_source="$120/1M image tokens ($0.134 per 1K/2K image, $0.24 per 4K), $2 in, $12 out as listed "
                     "for gemini-3-pro-image-preview (read 2026-12-02); not re-confirmed for the GA id"),
    "gemini-3.1-flash-lite-image": ModelInfo(
        "gemini-3.1-flash-lite-image", "Nano Banana 2 Lite", UNKNOWN_MAX_REFERENCES, CLASSIC_RATIOS,
        "Gemini 3.1 Flash-Lite Image: under 2 s, 1K only",
        sizes=("1K",), image_tokens={"1K": 1120}, price=None,
        price_source="no price found on Google's pages; reference limit not stated (kept at 3)"),
}

TEXT_MODELS: dict[str, ModelInfo] = {
    "gemini-3.5-flash-lite": ModelInfo(
        "gemini-3.5-flash-lite", "Gemini 3.5 Flash-Lite", 1, (), "stable text model (2026-07-21), captions",
        price=Price(0.30, 2.50, 2.50), prices_confirmed=False, kind="text",
        price_source="$0.30 in / $2.50 out per 1M from resellers' catalogues (sim.ai, apiyi); not confirmed on "
                     "Google's pricing page"),
    "gemini-3.1-flash-lite": ModelInfo(
        "gemini-3.1-flash-lite", "Gemini 3.1 Flash-Lite", 1, (), "stable text model (2026-05-07)",
        price=Price(0.25, 1.50, 1.50), prices_confirmed=False, kind="text",
        price_source="$0.25 in / $1.50 out per 1M from Vercel's gateway catalogue; not confirmed on Google's page"),
}


@dataclass(frozen=True)
class Retired:
    id: str
    shutdown: str        # the date Google gave
    replacement: str     # what Google says to use instead (our table's current model for it)
    kind: str = "image"


RETIRED: dict[str, Retired] = {r.id: r for r in (
    Retired("gemini-3-pro-image-preview", "2026-06-25", "gemini-3-pro-image"),
    Retired("gemini-3.1-flash-image-preview", "2026-06-25", "gemini-nano-banana-2.1"),
    Retired("gemini-2.5-flash-image", "2026-10-02", "gemini-nano-banana-2.1"),
    Retired("gemini-2.5-flash-image-preview", "2026-10-02", "gemini-nano-banana-2.1"),
    Retired("gemini-2.5-flash", "2026-06-17", DEFAULT_CAPTION_MODEL, "text"),
)}


def bare_id(model_id: str) -> str:
    """A model id without the API's optional "models/" prefix."""
    return (model_id or "").strip().removeprefix("models/")


def unknown_model(model_id: str, kind: str = "image") -> ModelInfo:
    """Conservative limits for a model the API offers and this table doesn't know: few references,
    the ratios every image model has had, 1K only, and no price (shown as "price unknown", never $0)."""
    mid = bare_id(model_id)
    return ModelInfo(mid, mid, UNKNOWN_MAX_REFERENCES if kind == "image" else 1,
                     SAFE_RATIOS if kind == "image" else (), "new to ragkit: conservative limits, price unknown",
                     sizes=("1K",) if kind == "image" else (), kind=kind, known=False)


def model_info(model_id: str) -> ModelInfo:
    """Known limits for a model id; conservative ones for ids we don't know."""
    mid = bare_id(model_id)
    return MODELS.get(mid) or TEXT_MODELS.get(mid) or unknown_model(mid)


def text_model_info(model_id: str) -> ModelInfo:
    mid = bare_id(model_id)
    return TEXT_MODELS.get(mid) or unknown_model(mid, "text")


def default_model(configured: str) -> str:
    """The model to start with: the configured one (RAGKIT_GEMINI_MODEL), else DEFAULT_MODEL."""
    return bare_id(configured) or DEFAULT_MODEL


def model_options(configured: str, live: list[str] | None = None) -> list[str]:
    """The image models to offer: the live ones when known (else the table's current ones), plus the
    configured id if it isn't among them (so a page can say it is gone rather than hide it)."""
    options = list(live) if live is not None else list(MODELS)
    chosen = default_model(configured)
    return options if chosen in options else [*options, chosen]


def models_help() -> str:
    """One line per known model: what it is and how many references it takes."""
    return " ".join(f"{m.label}: {m.about}, up to {m.max_references} references." for m in MODELS.values())


def check_output(info: ModelInfo, aspect_ratio: str | None, size: str | None) -> str | None:
    """None when the model offers this aspect ratio and size, else what to choose instead (one rule for the
    CLI, the Studio and batch, checked before anything is sent or any job exists)."""
    if aspect_ratio and aspect_ratio not in info.aspect_ratios:
        return (f"{info.label} does not offer aspect ratio {_shown(aspect_ratio)}; choose one of "
                f"{', '.join(info.aspect_ratios)}.")
    if size and size not in info.sizes:
        return f"{info.label} does not offer size {_shown(size)}; choose one of {', '.join(info.sizes)}."
    return None


def _shown(value: str) -> str:
    """A typed value quoted back to the person: printable, and short (it may be anything)."""
    return printable(value[:40]) + ("…" if len(value) > 40 else "")


def normalise_size(size: str | None) -> str | None:
    """'1k' -> '1K', '512px' -> '512'; None/'' -> None. Unknown text is returned as typed (check_output says why)."""
    text = (size or "").strip().upper().removesuffix("PX")
    return text or None


def too_many_references(count: int, info: ModelInfo) -> str | None:
    """The one reference-limit rule: None when `count` references fit the model, else what to do.

    The generator refuses such a request with this text; the Studio warns with it before.
    """
    if count <= info.max_references:
        return None
    widest = max(MODELS.values(), key=lambda model: model.max_references)
    switch = (f" or switch to {widest.label} (up to {widest.max_references})"
              if info.max_references < widest.max_references else "")
    return (f"{info.label} takes at most {info.max_references} reference images, and {count} are selected. "
            f"Remove {count - info.max_references}{switch}.")
