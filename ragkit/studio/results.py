"""Results: generated images saved back into the library with their provenance."""
from __future__ import annotations

import re
from typing import Iterable

from ..images import EXTENSION_BY_MIME
from ..ingest import Provenance
from ..records import Asset
from .generation import GeneratedImage, Generation


def save_generated_image(library, generation: Generation, image: GeneratedImage,
                         tags: Iterable[str] = (), name: str | None = None) -> Asset:
    """Store one generated image with its brief, model and references (embedded, searchable).

    `name` is the filename shown in the library (default: generated-<model>.<ext>).
    """
    provenance = Provenance(generation.prompt, generation.model, tuple(generation.reference_ids))
    return library.save_generated(image.data, image.mime, provenance, tags=tags, name=name)


def file_name_for(brief: str, index: int, mime: str) -> str:
    """A readable file name for a generated image: 'model-wearing-these-products-on-2.png'."""
    words = re.findall(r"[a-z0-9]+", brief.lower())
    stem = "-".join(words[:6])[:48].strip("-") or "studio"
    return f"{stem}-{index + 1}{EXTENSION_BY_MIME.get(mime, '.png')}"


def recent_generated(library, limit: int = 12) -> list[Asset]:
    return library.page(0, limit, source="generated").assets
