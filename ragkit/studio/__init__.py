"""The Studio without the UI, shared by the Studio page and `python -m ragkit generate`.

Retrieve (suggest references for a brief), generate (references + brief -> images) and save
back (generated images become library assets with their provenance): the RAG loop.

One module per job:

- ``models``: the model catalogue (ids, labels, reference limits, aspect ratios, the default);
- ``briefs``: the preset briefs;
- ``references``: library assets -> references ready to send, and suggestions for a brief;
- ``generation``: the Gemini client (brief + references -> images, typed errors);
- ``results``: generated images saved back with their provenance;
- ``kits``: brand kits (style, fixed references, words to avoid), stored next to the blobs;
- ``cost``: prices per model and the ledger of what every generation cost;
- ``batch``: one brief over many products, in the background, resumable after a kill;
- ``usability``: whether an asset may be sent as a reference at all (usage rights).

``generate_from`` below is the loop's middle step as the CLI and the page both take it.
"""
from __future__ import annotations

from typing import Callable, Sequence

from ragkit.studio.briefs import PRESET_BRIEFS, PresetBrief
from ragkit.studio.cost import prices_for, record_generation
from ragkit.studio.generation import DEFAULT_ENDPOINT, GeneratedImage, Generation, ImageGenerator, ReferenceImage
from ragkit.studio.models import (ASPECT_LABELS, DEFAULT_MODEL, MODELS, ModelInfo, default_model, model_info, model_options,
                     models_help, too_many_references)
from ragkit.studio.kits import Kit, check_usable, references_with_kit
from ragkit.studio.references import load_references, prepare_reference, suggest_references
from ragkit.studio.results import file_name_for, recent_generated, save_generated_image

__all__ = [
    "ASPECT_LABELS", "DEFAULT_ENDPOINT", "DEFAULT_MODEL", "MODELS", "PRESET_BRIEFS", "GeneratedImage",
    "Generation", "ImageGenerator", "Kit", "ModelInfo", "PresetBrief", "ReferenceImage", "default_model", "file_name_for",
    "generate_from", "load_references", "model_info", "model_options", "models_help", "prepare_reference",
    "recent_generated", "save_generated_image", "suggest_references", "too_many_references",
]


def generate_from(library, generator: ImageGenerator, brief: str, reference_ids: Sequence[str], *,
                  model: str | None = None, aspect_ratio: str | None = None, variations: int = 1,
                  on_progress: Callable[[int, int], None] | None = None, kit: Kit | None = None,
                  source: str = "studio", size: str | None = None) -> Generation:
    """Load the picked library assets as references (in order, then the kit's), generate from them and
    the brief (with the kit's style and words to avoid), and record what it cost in the ledger.

    The kit's default aspect ratio applies when none is given; `size` is sent as image_config.image_size. The Generation's `details` carry the
    provenance to save with its images: the kit's name and version, the brief as typed, usage and cost.
    """
    prices = prices_for(library.settings)  # a malformed RAGKIT_PRICES stops here, before anything is paid
    if kit is not None:
        check_usable(library, kit)
    references = load_references(library, references_with_kit(reference_ids, kit))
    generation = generator.generate(kit.prompt_for(brief) if kit else brief, references, model=model,
                                    aspect_ratio=aspect_ratio or (kit.aspect if kit else None),
                                    variations=variations, on_progress=on_progress, size=size)
    cost = record_generation(library.settings, prices, generation.model, generation.usage, source=source,
                             kit=kit.name if kit else None, size=generation.size)
    generation.details.update({"usage": dict(generation.usage), "cost_usd": cost})
    if generation.size:
        generation.details["size"] = generation.size
    if kit is not None:
        generation.details.update({**kit.provenance(), "brief": brief.strip()})
    return generation
