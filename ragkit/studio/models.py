"""The model catalogue: which Nano Banana models there are, what they are called, and what they take."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import DEFAULT_GEMINI_MODEL

DEFAULT_MODEL = DEFAULT_GEMINI_MODEL
ASPECT_RATIOS: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
ASPECT_LABELS = {  # what each ratio is for
    "1:1": "1:1 square", "2:3": "2:3 portrait", "3:2": "3:2 landscape", "3:4": "3:4 portrait",
    "4:3": "4:3 landscape", "4:5": "4:5 portrait (feed)", "5:4": "5:4 landscape", "9:16": "9:16 story / reel",
    "16:9": "16:9 banner / video", "21:9": "21:9 cinematic",
}


@dataclass(frozen=True)
class ModelInfo:
    id: str
    label: str
    max_references: int
    aspect_ratios: tuple[str, ...]


# Limits from Google's Nano Banana docs: 2.5 Flash Image "works best with up to 3
# images as input"; 3 Pro Image accepts up to 14 reference images.
MODELS: dict[str, ModelInfo] = {
    "gemini-2.5-flash-image": ModelInfo("gemini-2.5-flash-image", "Nano Banana", 3, ASPECT_RATIOS),
    "gemini-3-pro-image-preview": ModelInfo("gemini-3-pro-image-preview", "Nano Banana Pro", 14, ASPECT_RATIOS),
}


def model_info(model_id: str) -> ModelInfo:
    """Known limits for a model id; a conservative default for ids we don't know."""
    bare = model_id.removeprefix("models/")
    return MODELS.get(bare) or ModelInfo(bare, bare, 3, ASPECT_RATIOS)


def model_options(configured: str) -> list[str]:
    """The known models, plus a custom RAGKIT_GEMINI_MODEL id if one is configured."""
    options = list(MODELS)
    configured = configured.removeprefix("models/")
    if configured and configured not in options:
        options.append(configured)
    return options


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
