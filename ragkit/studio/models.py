"""The model catalogue: which Nano Banana models there are, what they are called, and what they take."""
from __future__ import annotations

from dataclasses import dataclass

from ragkit.config import DEFAULT_GEMINI_MODEL

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
    about: str = ""  # what it is, and good at, in a few words


# Limits from Google's Nano Banana docs: 2.5 Flash Image "works best with up to 3
# images as input"; 3 Pro Image accepts up to 14 reference images.
MODELS: dict[str, ModelInfo] = {
    "gemini-2.5-flash-image": ModelInfo("gemini-2.5-flash-image", "Nano Banana", 3, ASPECT_RATIOS,
                                        "Gemini 2.5 Flash Image, fast"),
    "gemini-3-pro-image-preview": ModelInfo("gemini-3-pro-image-preview", "Nano Banana Pro", 14, ASPECT_RATIOS,
                                            "Gemini 3 Pro Image, follows long briefs more closely"),
}


def bare_id(model_id: str) -> str:
    """A model id without the API's optional "models/" prefix."""
    return model_id.removeprefix("models/")


def model_info(model_id: str) -> ModelInfo:
    """Known limits for a model id; a conservative default for ids we don't know."""
    return MODELS.get(bare_id(model_id)) or ModelInfo(bare_id(model_id), bare_id(model_id), 3, ASPECT_RATIOS)


def default_model(configured: str) -> str:
    """The model to start with: the configured one (RAGKIT_GEMINI_MODEL), else DEFAULT_MODEL."""
    return bare_id(configured) or DEFAULT_MODEL


def model_options(configured: str) -> list[str]:
    """The known models, plus a custom RAGKIT_GEMINI_MODEL id if one is configured."""
    chosen = default_model(configured)
    return [*MODELS, chosen] if chosen not in MODELS else list(MODELS)


def models_help() -> str:
    """One line per known model: what it is and how many references it takes."""
    return " ".join(f"{m.label}: {m.about}, up to {m.max_references} references." for m in MODELS.values())


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
