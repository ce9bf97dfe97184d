"""The Studio without the UI, shared by the Studio page and `python -m ragkit generate`.

Retrieve (suggest references for a brief), generate (references + brief -> images) and save
back (generated images become library assets with their provenance): the RAG loop.

One module per job:

- ``models``: the model catalogue (ids, labels, reference limits, aspect ratios, the default);
- ``briefs``: the preset briefs;
- ``references``: library assets -> references ready to send, and suggestions for a brief;
- ``generation``: the Gemini client (brief + references -> images, typed errors);
- ``results``: generated images saved back with their provenance.
"""
from __future__ import annotations

from .briefs import PRESET_BRIEFS, PresetBrief
from .generation import DEFAULT_ENDPOINT, GeneratedImage, Generation, ImageGenerator, ReferenceImage
from .models import DEFAULT_MODEL, MODELS, ModelInfo, model_info
from .references import load_references, prepare_reference, suggest_references
from .results import recent_generated, save_generated_image

__all__ = [
    "DEFAULT_ENDPOINT", "DEFAULT_MODEL", "MODELS", "PRESET_BRIEFS", "GeneratedImage", "Generation",
    "ImageGenerator", "ModelInfo", "PresetBrief", "ReferenceImage", "load_references", "model_info",
    "prepare_reference", "recent_generated", "save_generated_image", "suggest_references",
]
