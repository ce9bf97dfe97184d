"""Results: generated images saved back into the library with their provenance."""
from __future__ import annotations

import re
from typing import Iterable

from ragkit.ingest.images import EXTENSION_BY_MIME
from ragkit.ingest.pipeline import Provenance
from ragkit.records import Asset
from ragkit.studio.generation import GeneratedImage, Generation


def save_generated_image(library, generation: Generation, image: GeneratedImage,
                         tags: Iterable[str] = (), name: str | None = None) -> Asset:
    """Store one generated image with its brief, model and references (embedded, searchable).

    `name` is the filename shown in the library (default: generated-<model>.<ext>).
    """
    provenance = Provenance(generation.prompt, generation.model, tuple(generation.reference_ids),
                            details=image_details(generation))
    return library.save_generated(image.data, image.mime, provenance, tags=tags, name=name)


def image_details(generation: Generation) -> dict:
    """The provenance details one of the generation's images keeps: the generation's (kit, brief as
    typed), with its share of the usage and cost (a generation of n images: each costs about 1/n)."""
    details = dict(generation.details)
    share = max(1, len(generation.images))
    if details.get("cost_usd") is not None:
        details["cost_usd"] = round(details["cost_usd"] / share, 9)
    if "usage" in details:
        details["usage"] = {key: round(value / share) for key, value in details["usage"].items()}
    return details


def file_name_for(brief: str, index: int, mime: str) -> str:
    """A readable file name for a generated image: 'model-wearing-these-products-on-2.png'."""
    words = re.findall(r"[a-z0-9]+", brief.lower())
    stem = "-".join(words[:6])[:48].strip("-") or "studio"
    return f"{stem}-{index + 1}{EXTENSION_BY_MIME.get(mime, '.png')}"


def recent_generated(library, limit: int = 12) -> list[Asset]:
    return library.page(0, limit, source="generated").assets
