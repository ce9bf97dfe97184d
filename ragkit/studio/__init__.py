"""The Studio without the UI, shared by the Studio page and `python -m ragkit generate`.

Retrieve (suggest references for a brief), generate (references + brief -> images) and save
back (generated images become library assets with their provenance): the RAG loop.

One module per job:

- ``models``: the model catalogue (ids, labels, reference limits, aspect ratios, the default);
- ``briefs``: the preset briefs;
- ``references``: library assets -> references ready to send, and suggestions for a brief;
- ``generation``: the Gemini client (brief + references -> images, typed errors);
- ``results``: generated images saved back with their provenance.

``generate_from`` below is the loop's middle step as the CLI and the page both take it.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .briefs import PRESET_BRIEFS, PresetBrief
from .generation import DEFAULT_ENDPOINT, GeneratedImage, Generation, ImageGenerator, ReferenceImage
from .models import (ASPECT_LABELS, DEFAULT_MODEL, MODELS, ModelInfo, default_model, model_info, model_options,
                     models_help, too_many_references)
from .references import load_references, prepare_reference, suggest_references
from .results import file_name_for, recent_generated, save_generated_image

__all__ = [
    "ASPECT_LABELS", "DEFAULT_ENDPOINT", "DEFAULT_MODEL", "MODELS", "PRESET_BRIEFS", "GeneratedImage",
    "Generation", "ImageGenerator", "ModelInfo", "PresetBrief", "ReferenceImage", "default_model", "file_name_for",
    "generate_from", "load_references", "model_info", "model_options", "models_help", "prepare_reference",
    "recent_generated", "save_generated_image", "suggest_references", "too_many_references",
]


def generate_from(library, generator: ImageGenerator, brief: str, reference_ids: Sequence[str], *,
                  model: str | None = None, aspect_ratio: str | None = None, variations: int = 1,
                  on_progress: Callable[[int, int], None] | None = None) -> Generation:
    """Load the picked library assets as references (in order), then generate from them and the brief."""
    references = load_references(library, reference_ids)
    return generator.generate(brief, references, model=model, aspect_ratio=aspect_ratio, variations=variations,
                              on_progress=on_progress)
