"""Captions: one image in, a one-sentence caption and up to 8 suggested tags out, from a Gemini text model.

The request carries the image (downscaled: a caption needs no more than one 768 px tile) and a short
instruction, and asks for JSON with a schema (google-genai's structured output: ``response_mime_type``
"application/json" with ``response_schema``). Structured output makes a well-formed answer likely, not
certain, so the answer is checked here as if it were free text: JSON, both fields, their types, at most
MAX_SUGGESTED_TAGS tags, a caption of at most MAX_CAPTION_CHARS. An answer that breaks any of these, a
refusal (a blocked prompt, finish reason SAFETY and kin) or one the model didn't finish (MAX_TOKENS) is
a ``CaptionProblem`` with its reason and the usage it was billed for: it was paid for all the same.

The transport (retries, the 429 back-off, typed errors, the key never in a message) is the Studio's
``ImageGenerator.send``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from google.genai import types

from ragkit.config import DEFAULT_CAPTION_MODEL
from ragkit.errors import GenerationError
from ragkit.tags import normalise_tags
from ragkit.studio.generation import _SAFETY_FINISH, ImageGenerator, ReferenceImage, _enum_name, _usage
from ragkit.studio.models import ModelInfo, bare_id

MAX_SUGGESTED_TAGS = 8
MAX_CAPTION_CHARS = 300      # one sentence; longer is not a caption
MAX_OUTPUT_TOKENS = 400      # a caption and 8 tags as JSON are ~80 tokens
CAPTION_MAX_SIDE = 768       # one tile of Gemini's image tokens (258)
MODEL_SETTING = "RAGKIT_CAPTION_MODEL"

INSTRUCTION = (
    "Describe this image for a creative team's image library, in English. "
    "caption: one sentence of at most 25 words saying what the picture shows (subject, setting, colours, "
    "style), without 'This image shows'. "
    f"tags: up to {MAX_SUGGESTED_TAGS} short lower-case tags of one to three words that someone would "
    "search for (subject, objects, colours, style, mood).")


def caption_schema() -> types.Schema:
    """The JSON the model is asked for: {"caption": str, "tags": [str, ... at most 8]}."""
    return types.Schema(
        type=types.Type.OBJECT,
        properties={
            "caption": types.Schema(type=types.Type.STRING, description="one sentence",
                                    max_length=MAX_CAPTION_CHARS),
            "tags": types.Schema(type=types.Type.ARRAY, items=types.Schema(type=types.Type.STRING),
                                 max_items=MAX_SUGGESTED_TAGS),
        },
        required=["caption", "tags"],
        property_ordering=["caption", "tags"],
    )


@dataclass(frozen=True)
class Description:
    caption: str
    tags: tuple[str, ...]                # suggestions: offered to accept, never applied on their own
    model: str
    usage: dict[str, int] = field(default_factory=dict)


class CaptionProblem(GenerationError):
    """The model answered, but with no usable caption (refused, unfinished or malformed). The answer
    was billed: `usage` says for what."""

    def __init__(self, message: str, usage: dict[str, int]) -> None:
        super().__init__(message)
        self.usage = usage


def caption_config(model: str) -> types.GenerateContentConfig:
    """Structured JSON output; for 2.5 Flash models no thinking (a caption doesn't need it, and thinking
    tokens would count against the output limit and the bill)."""
    thrifty = bare_id(model).startswith("gemini-2.5-flash")
    return types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema=caption_schema(),
        max_output_tokens=MAX_OUTPUT_TOKENS if thrifty else None,
        thinking_config=types.ThinkingConfig(thinking_budget=0) if thrifty else None,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )


class Captioner:
    """Describes images with a Gemini text model, over an ImageGenerator's client (its transport)."""

    def __init__(self, transport: ImageGenerator, model: str = DEFAULT_CAPTION_MODEL) -> None:
        self.transport = transport
        self.model = bare_id(model or DEFAULT_CAPTION_MODEL)
        self._info = ModelInfo(self.model, self.model, 1, ())

    @classmethod
    def from_settings(cls, settings: Any, *, max_retries: int = 3, backoff_s: float = 2.0,
                      sleep: Callable[[float], None] | None = None, model: str | None = None) -> "Captioner":
        """MissingApiKeyError (with the how-to) when no key is configured."""
        import time
        transport = ImageGenerator(getattr(settings, "gemini_api_key", ""), base_url=settings.gemini_base_url or None,
                                   max_retries=max_retries, backoff_s=backoff_s, sleep=sleep or time.sleep)
        return cls(transport, model or settings.caption_model)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Captioner":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self, image: ReferenceImage) -> Description:
        """The caption and suggested tags of one image; CaptionProblem or another GenerationError if none."""
        contents = [types.Part.from_bytes(data=image.data, mime_type=image.mime), INSTRUCTION]
        response = self.transport.send(self._info, contents, caption_config(self.model), model_setting=MODEL_SETTING)
        return read_description(response, self.model)


def read_description(response: types.GenerateContentResponse, model: str) -> Description:
    """The caption and tags in one answer, or a CaptionProblem saying what is wrong with it."""
    usage = _usage(response.usage_metadata, 0)
    feedback = response.prompt_feedback
    if feedback and feedback.block_reason:
        raise CaptionProblem(f"Gemini refused to describe the image (blocked: {_enum_name(feedback.block_reason)}).",
                             usage)
    candidate = response.candidates[0] if response.candidates else None
    finish = _enum_name(candidate.finish_reason) if candidate else ""
    if finish in _SAFETY_FINISH:
        raise CaptionProblem(f"Gemini refused to describe the image (finish reason: {finish}).", usage)
    if finish and finish != "STOP":
        raise CaptionProblem(f"Gemini did not finish the description (finish reason: {finish}).", usage)
    parts = (candidate.content.parts or []) if candidate and candidate.content else []
    text = "".join(p.text for p in parts if p.text and not p.thought).strip()
    if not text:
        raise CaptionProblem("Gemini answered without a description (no text).", usage)
    caption, tags = parse_answer(text, usage)
    return Description(caption, tags, model, usage)


def parse_answer(text: str, usage: dict[str, int]) -> tuple[str, tuple[str, ...]]:
    """(caption, tags) from the answer's JSON text, checked field by field."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CaptionProblem(f"Gemini's answer is not valid JSON ({exc}): {_quote(text)}", usage) from None
    if not isinstance(data, dict):
        raise CaptionProblem(f"Gemini's answer is JSON but not an object: {_quote(text)}", usage)
    caption, tags = data.get("caption"), data.get("tags")
    missing = [name for name, value in (("caption", caption), ("tags", tags)) if value is None]
    if missing:
        raise CaptionProblem(f"Gemini's answer has no {' and no '.join(missing)}: {_quote(text)}", usage)
    if not isinstance(caption, str) or not caption.strip():
        raise CaptionProblem(f"Gemini's caption is not a sentence: {_quote(text)}", usage)
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise CaptionProblem(f"Gemini's tags are not a list of words: {_quote(text)}", usage)
    caption = " ".join(caption.split())
    if len(caption) > MAX_CAPTION_CHARS:
        raise CaptionProblem(f"Gemini's caption is {len(caption)} characters long; one sentence of at most "
                             f"{MAX_CAPTION_CHARS} was asked for.", usage)
    if len(tags) > MAX_SUGGESTED_TAGS:
        raise CaptionProblem(f"Gemini suggested {len(tags)} tags; at most {MAX_SUGGESTED_TAGS} were asked for.",
                             usage)
    return caption, normalise_tags(tags)


def _quote(text: str, limit: int = 160) -> str:
    return json.dumps(text if len(text) <= limit else text[:limit] + "…", ensure_ascii=False)
