"""The Studio's logic, shared by the Studio page and `python -m ragkit generate`.

Retrieve (suggest references for a brief), generate (references + brief -> images) and
save back (generated images become library assets with their provenance): the RAG loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .errors import AssetNotFoundError
from .generate import Generation, GeneratedImage, ReferenceImage, prepare_reference
from .ingest import Provenance
from .records import Asset, SearchHit


@dataclass(frozen=True)
class PresetBrief:
    label: str
    text: str


PRESET_BRIEFS: tuple[PresetBrief, ...] = (
    PresetBrief("Model on the beach",
                "A professional fashion photo of a model wearing these products on a sunny beach at golden "
                "hour, natural pose, soft warm light, shallow depth of field, editorial magazine style."),
    PresetBrief("1/7 collectible figure",
                "Turn the character in the reference into a 1/7-scale commercial collectible figure, standing "
                "on a round transparent acrylic base on a computer desk, with its printed retail box beside it "
                "showing the same artwork; realistic studio product photography."),
    PresetBrief("Clean product hero shot",
                "A clean e-commerce hero shot of this product on a seamless light-grey background, soft "
                "diffused studio lighting, subtle reflection beneath, centered, crisp detail, no text."),
    PresetBrief("Lifestyle flat lay",
                "A styled top-down flat lay of these products on a linen tablecloth with a few natural props "
                "(leaves, coffee cup), bright daylight, Instagram-ready composition."),
)


def load_references(library, sha256s: Sequence[str]) -> list[ReferenceImage]:
    """Library assets -> downscaled reference images, in the order picked."""
    references = []
    for sha in sha256s:
        asset = library.get(sha)
        try:
            data = library.original_bytes(sha)
        except AssetNotFoundError:
            raise AssetNotFoundError(f"Reference {asset.filename} ({sha[:12]}…) has no original file any more; "
                                     "remove it from the tray.") from None
        references.append(prepare_reference(data, asset.mime, sha256=sha))
    return references


def suggest_references(library, brief: str, k: int = 8, exclude: Iterable[str] = ()) -> list[SearchHit]:
    """The retrieval half of the loop: library images that match the brief itself."""
    skip = set(exclude)
    hits = library.search_text(brief, k + len(skip))
    return [h for h in hits if h.asset.sha256 not in skip][:k]


def save_generated_image(library, generation: Generation, image: GeneratedImage,
                         tags: Iterable[str] = (), name: str | None = None) -> Asset:
    """Store one generated image with its brief, model and references (embedded, searchable).

    `name` is the filename shown in the library (default: generated-<model>.<ext>).
    """
    provenance = Provenance(generation.prompt, generation.model, tuple(generation.reference_ids))
    return library.save_generated(image.data, image.mime, provenance, tags=tags, name=name)


def recent_generated(library, limit: int = 12) -> list[Asset]:
    return library.page(0, limit, source="generated").assets
