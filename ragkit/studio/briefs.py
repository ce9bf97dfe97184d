"""Briefs: the ready-made ones the Studio offers as a start."""
from __future__ import annotations

from dataclasses import dataclass


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
