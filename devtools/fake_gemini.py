"""A local stand-in for the Gemini REST API, so the real google-genai client can be tested.

It answers ``POST /{version}/models/{model}:generateContent`` the way Gemini does
(camelCase JSON, base64 ``inlineData``), records every request for assertions, and
replies from a per-test queue of scripted answers. With an empty queue it returns a
real PNG: a gradient whose colours depend on the brief and the first reference image and
whose shape follows the requested aspect ratio, so the same brief with the same first
reference gives the same first picture (a batch: one picture per product), and asking
again gives another one, as variations do.

Three ways to use it::

    with FakeGemini() as fake:                      # context manager
        fake.enqueue(error_reply(429), image_reply())
        ImageGenerator("k", base_url=fake.url).generate("a red bicycle")
        fake.requests[0].texts                      # what the client sent

    def test_x(fake_gemini): ...                    # pytest fixture (below)

    python -m devtools.fake_gemini --port 8765          # standalone, for the UI / e2e tests
    RAGKIT_GEMINI_BASE_URL=http://127.0.0.1:8765 GEMINI_API_KEY=anything streamlit run app.py

In the standalone server nothing is queued, so a brief can ask for a failure by
containing a tag (handy to see how the Studio page shows each error):
``[fake:blocked]`` ``[fake:safety]`` ``[fake:image-safety]`` ``[fake:text]``
``[fake:invalid-key]`` ``[fake:403]`` ``[fake:429]`` ``[fake:500]`` ``[fake:503]``
``[fake:slow=SECONDS]`` ``[fake:quota=SECONDS]`` (a 429 with Gemini's RetryInfo delay). ``--delay SECONDS``
makes every image answer take that long, like a real model.

Models, as today's API has them (read 2026-12-07, see ragkit/studio/models.py for the sources):
``GET /v1beta/models`` (ListModels, paged with ``pageSize``/``pageToken``, at most ``max_page_size`` a
page) and ``GET /v1beta/models/{id}`` list ``OFFERED``; ``generateContent`` on any other id (a shut-down
one such as ``gemini-2.5-flash-image``, or one never heard of) answers 404 NOT_FOUND in the API's words,
and an ``imageConfig.imageSize`` or ``aspectRatio`` the model doesn't offer answers 400 INVALID_ARGUMENT.
Tests change what is offered with ``offer(id, ...)`` and ``retire(id)``; ``list_models_down`` makes
ListModels fail (503) as an unreachable listing would.
Chats: for the 3.x image models (``gemini-3…image…``) every answer's first part and image parts carry a
``thoughtSignature`` (remembered in ``signatures``), and a request whose history sends a model turn back
without them is refused with 400 INVALID_ARGUMENT, "... is missing a thought_signature ...", as the API
does (``RecordedRequest.turns`` shows what came back). google-genai's chats keep them by themselves.

Captions: a request that asks for JSON (``responseMimeType`` application/json, as Describe does) with an
image is answered with ``{"caption": ..., "tags": [...]}`` for that image (``caption_for``: the same
image, the same caption), billed as a text model bills it. ``caption_mode`` (``--caption MODE``) switches
every such answer to a failure: ``bad-json``, ``missing-field``, ``too-many-tags``, ``long-caption``,
``safety`` (finishReason SAFETY), ``max-tokens`` (cut off, finishReason MAX_TOKENS) or ``429``.
"""
from __future__ import annotations

import argparse
import base64
import colorsys
import hashlib
import io
import json
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

from PIL import Image

API_KEY_PLACEHOLDER = "{api_key}"  # in an error message: replaced by the key the client sent
_PATH = re.compile(r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^/:]+):generateContent$")
_MODELS_PATH = re.compile(r"^/(?P<version>v1beta|v1|v1alpha)/models(?:/(?P<model>[^/:?]+))?$")
_TAG = re.compile(r"\[fake:(?P<name>[a-z0-9-]+)(?:=(?P<arg>[0-9.]+))?\]")


# --------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class Reply:
    """One scripted answer: an HTTP status, a JSON body, and an optional delay first."""
    status: int = 200
    body: dict[str, Any] | str | None = None  # None: the default image answer; str: sent as raw text/html
    delay_s: float = 0.0


def make_png(brief: str = "", aspect_ratio: str | None = None, long_side: int = 96) -> bytes:
    """A deterministic gradient PNG: colours from a hash of the brief, shape from the ratio."""
    digest = hashlib.sha256(brief.encode("utf-8")).digest()
    width, height = _size_for_ratio(aspect_ratio, long_side)
    start = colorsys.hsv_to_rgb(digest[0] / 255, 0.8, 0.95)
    end = colorsys.hsv_to_rgb(digest[1] / 255, 0.9, 0.45)
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for x in range(width):
        for y in range(height):
            t = (x + y) / max(1, width + height - 2)
            pixels[x, y] = tuple(int(255 * (a + (b - a) * t)) for a, b in zip(start, end))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _size_for_ratio(aspect_ratio: str | None, long_side: int) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+):(\d+)", aspect_ratio or "")
    if not match:
        return long_side, long_side
    w, h = int(match[1]), int(match[2])
    if w >= h:
        return long_side, max(1, round(long_side * h / w))
    return max(1, round(long_side * w / h)), long_side


IMAGE_TOKENS = 1120     # what one 1K image of the 3.x image models is billed as
IMAGE_TOKENS_BY_SIZE = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}
REFERENCE_TOKENS = 258  # an input image (one tile)


def usage_metadata(prompt: int = 12, image: int = IMAGE_TOKENS, text: int = 0, thoughts: int = 0,
                   reference_images: int = 0) -> dict[str, Any]:
    """usageMetadata as Gemini sends it: totals plus the per-modality details of prompt and output."""
    prompt_details = [{"modality": "TEXT", "tokenCount": prompt}]
    if reference_images:
        prompt_details.append({"modality": "IMAGE", "tokenCount": REFERENCE_TOKENS * reference_images})
    prompt_total = prompt + REFERENCE_TOKENS * reference_images
    output_details = [d for d in ({"modality": "TEXT", "tokenCount": text}, {"modality": "IMAGE", "tokenCount": image})
                      if d["tokenCount"]]
    usage: dict[str, Any] = {"promptTokenCount": prompt_total, "candidatesTokenCount": text + image,
                             "totalTokenCount": prompt_total + text + image + thoughts,
                             "promptTokensDetails": prompt_details}
    if output_details:
        usage["candidatesTokensDetails"] = output_details
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _usage(prompt: int = 12, output: int = IMAGE_TOKENS) -> dict[str, int]:
    return {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output}


def image_reply(text: str = "Here is your image.", png: bytes | None = None, *,
                mime: str = "image/png", usage: dict[str, int] | None = None,
                thought: bool = False) -> Reply:
    """A successful answer: a text part and an inline image (a real PNG unless png= is given).

    thought=True adds a leading "thought" text part and a thought image first, as
    Nano Banana Pro does while it thinks; clients must skip both.
    """
    data = png if png is not None else make_png(text)
    parts: list[dict[str, Any]] = []
    if thought:
        parts.append({"text": "Planning the composition...", "thought": True})
        parts.append({"inlineData": {"mimeType": "image/png", "data": _b64(make_png("draft"))}, "thought": True})
    if text:
        parts.append({"text": text})
    parts.append({"inlineData": {"mimeType": mime, "data": _b64(data)}})
    return Reply(200, _candidate(parts, "STOP", usage or _usage()))


def text_reply(text: str = "I can't draw that, but here is a description instead.") -> Reply:
    """The model answered in words only (finish STOP, no image)."""
    return Reply(200, _candidate([{"text": text}], "STOP", _usage(output=40)))


def blocked_reply(reason: str = "SAFETY", message: str | None = None) -> Reply:
    """The prompt was refused before generation: promptFeedback.blockReason, no candidates."""
    feedback: dict[str, Any] = {"blockReason": reason}
    if message:
        feedback["blockReasonMessage"] = message
    return Reply(200, {"promptFeedback": feedback, "usageMetadata": _usage(output=0),
                       "modelVersion": "fake"})


def finish_reply(reason: str = "IMAGE_SAFETY", text: str | None = None,
                 finish_message: str | None = None) -> Reply:
    """A candidate stopped for `reason` (SAFETY, IMAGE_SAFETY, PROHIBITED_CONTENT ...) without an image."""
    parts = [{"text": text}] if text else []
    body = _candidate(parts, reason, _usage(output=0))
    if finish_message:
        body["candidates"][0]["finishMessage"] = finish_message
    if not parts:
        body["candidates"][0].pop("content")  # what Gemini sends: no content at all
    return Reply(200, body)


_ERROR_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without "
                               "established identity). Please use API Key or other form of API consumer identity to call this API."),
    404: ("NOT_FOUND", "models/nope is not found for API version v1beta, or is not supported for generateContent."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}


def error_reply(code: int, message: str | None = None, status: str | None = None,
                *, retry_delay_s: int | None = None) -> Reply:
    """An error body in Google's format with the matching HTTP status.

    Defaults give realistic messages: 400 is the invalid-API-key answer, 429 says
    RESOURCE_EXHAUSTED. retry_delay_s adds a google.rpc.RetryInfo detail, as Gemini does on 429.
    """
    default_status, default_message = _ERROR_DEFAULTS.get(code, ("UNKNOWN", f"HTTP {code}"))
    error: dict[str, Any] = {"code": code, "message": message or default_message,
                             "status": status or default_status}
    details: list[dict[str, Any]] = []
    if code == 400 and message is None:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}})
    if retry_delay_s is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay_s}s"})
    if details:
        error["details"] = details
    return Reply(code, {"error": error})


def quota_reply(retry_delay_s: float = 37, model: str = "gemini-nano-banana-2.1") -> Reply:
    """A 429 the way Gemini sends one on a per-minute quota: QuotaFailure, Help and RetryInfo details."""
    delay = f"{retry_delay_s:g}s"
    error = {
        "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": f"You exceeded your current quota, please check your plan and billing details. For more "
                   f"information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
                   f"Please retry in {retry_delay_s:g}s.",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-PaidTier",
                "quotaDimensions": {"location": "global", "model": model}, "quotaValue": "10"}]},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                {"description": "Learn more about Gemini API quotas",
                 "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
        ],
    }
    return Reply(429, {"error": error})


def slow_reply(delay_s: float, then: Reply | None = None) -> Reply:
    """Wait delay_s seconds before answering (with `then`, default an image) -- for timeouts."""
    base = then or Reply()
    return Reply(base.status, base.body, delay_s)


# --------------------------------------------------------------------------- captions
_CAPTION_SUBJECTS = ("lighthouse", "sneaker", "teapot", "bicycle", "armchair", "backpack", "cactus", "guitar",
                     "lantern", "umbrella", "kettle", "skateboard", "violin", "hourglass", "typewriter", "compass")
_CAPTION_COLOURS = ("crimson", "teal", "amber", "violet", "olive", "coral", "indigo", "ochre")
_CAPTION_SETTINGS = ("on a pastel podium", "on a wooden table", "against a concrete wall", "in soft studio light")
CAPTION_MODES = ("ok", "bad-json", "missing-field", "too-many-tags", "long-caption", "safety", "max-tokens", "429")


def caption_for(image: bytes) -> tuple[str, list[str]]:
    """The fake's caption and tags for an image: picked from word lists by the image's hash."""
    digest = hashlib.sha256(image).digest()
    subject = _CAPTION_SUBJECTS[digest[0] % len(_CAPTION_SUBJECTS)]
    colour = _CAPTION_COLOURS[digest[1] % len(_CAPTION_COLOURS)]
    setting = _CAPTION_SETTINGS[digest[2] % len(_CAPTION_SETTINGS)]
    article = "An" if colour[0] in "aeiou" else "A"
    return f"{article} {colour} {subject} {setting}.", [subject, colour, "product shot"]


def caption_usage(output_text: str, prompt: int = 80, images: int = 1) -> dict[str, Any]:
    """A text model's usageMetadata: the instruction and the image in, the JSON text out."""
    return usage_metadata(prompt=prompt, image=0, text=max(1, len(output_text) // 4), reference_images=images)


def caption_text_reply(text: str, finish: str = "STOP") -> Reply:
    """A text model's answer: `text` as the one part (JSON or not), finishing with `finish`."""
    return Reply(200, _candidate([{"text": text}], finish, caption_usage(text)))


def caption_reply(caption: str, tags: list[str]) -> Reply:
    """A well-formed caption answer."""
    return caption_text_reply(json.dumps({"caption": caption, "tags": tags}))


def caption_failure_reply(mode: str, image: bytes = b"") -> Reply:
    """A caption answer that goes wrong in one of the CAPTION_MODES ways (other than ok)."""
    caption, tags = caption_for(image)
    if mode == "bad-json":
        return caption_text_reply('{"caption": "A teapot on a table", "tags": ["teapot", ')
    if mode == "missing-field":
        return caption_text_reply(json.dumps({"tags": tags}))
    if mode == "too-many-tags":
        return caption_reply(caption, [f"tag {n}" for n in range(12)])
    if mode == "long-caption":
        return caption_reply(" ".join([caption] * 40), tags)
    if mode == "safety":
        body = _candidate([], "SAFETY", caption_usage("", images=1))
        body["candidates"][0].pop("content")
        return Reply(200, body)
    if mode == "max-tokens":
        return caption_text_reply(json.dumps({"caption": caption, "tags": tags})[:25], finish="MAX_TOKENS")
    if mode == "429":
        return quota_reply(1, model="gemini-3.5-flash-lite")
    raise ValueError(f"unknown caption mode {mode!r}; one of {', '.join(CAPTION_MODES)}")


def _candidate(parts: list[dict[str, Any]], finish: str, usage: dict[str, int]) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
            "usageMetadata": usage, "modelVersion": "fake", "responseId": "fake-response"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not: google-genai (via pydantic) sends URL-safe,
    and the real API accepts both."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class FakeModel:
    """One model as ListModels describes it, with the sizes and ratios generateContent accepts."""
    id: str
    display_name: str
    methods: tuple[str, ...] = ("generateContent", "countTokens", "batchGenerateContent")
    sizes: tuple[str, ...] = ()    # image models: imageSize values accepted
    ratios: tuple[str, ...] = ()   # image models: aspectRatio values accepted
    input_limit: int = 1_048_576
    output_limit: int = 65_536

    def to_json(self) -> dict[str, Any]:
        """The shape google-genai's _Model_from_mldev reads."""
        return {"name": f"models/{self.id}", "version": "001", "displayName": self.display_name,
                "description": f"{self.display_name} (fake)", "inputTokenLimit": self.input_limit,
                "outputTokenLimit": self.output_limit, "supportedGenerationMethods": list(self.methods),
                "temperature": 1.0, "topP": 0.95, "topK": 64, "maxTemperature": 2.0, "thinking": True}


_CLASSIC = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
_WIDE = _CLASSIC + ("1:4", "4:1", "1:8", "8:1")
OFFERED: tuple[FakeModel, ...] = (
    FakeModel("gemini-nano-banana-2.1", "Gemini Nano Banana 2.1", sizes=("1K", "2K", "4K"), ratios=_WIDE,
              input_limit=131_072, output_limit=32_768),
    FakeModel("gemini-3.1-flash-image", "Gemini 3.1 Flash Image", sizes=("512", "1K", "2K", "4K"), ratios=_WIDE,
              input_limit=131_072, output_limit=32_768),
    FakeModel("gemini-3-pro-image", "Gemini 3 Pro Image", sizes=("1K", "2K", "4K"), ratios=_CLASSIC,
              input_limit=65_536, output_limit=32_768),
    FakeModel("gemini-3.1-flash-lite-image", "Gemini 3.1 Flash-Lite Image", sizes=("1K",), ratios=_CLASSIC,
              input_limit=65_536, output_limit=4_096),
    FakeModel("gemini-3.5-flash-lite", "Gemini 3.5 Flash-Lite"),
    FakeModel("gemini-3.1-flash-lite", "Gemini 3.1 Flash-Lite"),
    FakeModel("gemini-3.6-flash", "Gemini 3.6 Flash"),
    FakeModel("gemini-3.8-flash", "Gemini 3.8 Flash"),
    FakeModel("gemini-3.8-flash-tts", "Gemini 3.8 Flash TTS"),
    FakeModel("gemini-embedding-001", "Gemini Embedding 001", methods=("embedContent", "countTextTokens")),
)


def not_found_reply(model: str, version: str = "v1beta") -> Reply:
    """The API's 404 for a model id it doesn't serve (shut down, or never existed)."""
    return error_reply(404, f"models/{model} is not found for API version {version}, or is not supported for "
                            "generateContent. Call ListModels to see the list of available models and their "
                            "supported methods.", "NOT_FOUND")


def _invalid(message: str) -> Reply:
    return error_reply(400, message, "INVALID_ARGUMENT")


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class RecordedRequest:
    """What a client sent, plus convenience views of the Gemini request body."""
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: dict[str, Any]
    at: float = 0.0  # time.monotonic() when it arrived (to check back-off)

    @property
    def model(self) -> str | None:
        match = _PATH.match(self.path.split("?", 1)[0])
        return match["model"] if match else None

    def parts(self) -> Iterator[dict[str, Any]]:
        for content in self.body.get("contents", []):
            yield from content.get("parts", [])

    def _inline(self) -> Iterator[dict[str, Any]]:
        # Proto JSON accepts camelCase and snake_case; google-genai 3.x sends
        # {"inlineData": {"mime_type": ..., "data": ...}}, so accept both spellings.
        for part in self.parts():
            blob = part.get("inlineData", part.get("inline_data"))
            if isinstance(blob, dict):
                yield blob

    @property
    def texts(self) -> list[str]:
        return [p["text"] for p in self.parts() if "text" in p]

    @property
    def brief(self) -> str:
        return " ".join(self.texts)

    @property
    def images(self) -> list[tuple[str, bytes]]:
        """(mime type, decoded bytes) of every inline image, in order."""
        return [(blob.get("mimeType", blob.get("mime_type", "")), _b64decode(blob.get("data", "")))
                for blob in self._inline()]

    @property
    def turns(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(role, parts) of every content in the request, in order: a chat sends its whole history."""
        return [(c.get("role", "user"), list(c.get("parts", []))) for c in self.body.get("contents", [])]

    @property
    def generation_config(self) -> dict[str, Any]:
        return self.body.get("generationConfig", {})

    @property
    def response_modalities(self) -> list[str]:
        return self.generation_config.get("responseModalities", [])

    @property
    def aspect_ratio(self) -> str | None:
        return self.generation_config.get("imageConfig", {}).get("aspectRatio")

    @property
    def image_size(self) -> str | None:
        return self.generation_config.get("imageConfig", {}).get("imageSize")

    @property
    def wants_json(self) -> bool:
        """Structured output was asked for (a caption request)."""
        return self.generation_config.get("responseMimeType") == "application/json"

    @property
    def response_schema(self) -> dict[str, Any]:
        return self.generation_config.get("responseSchema", {})


# --------------------------------------------------------------------------- server
class FakeGemini:
    """A threaded HTTP server on 127.0.0.1 speaking enough of the Gemini REST API."""

    def __init__(self, port: int = 0, *, tags: bool = True, delay_s: float = 0.0, caption_mode: str = "ok") -> None:
        self._port = port
        self.caption_mode = caption_mode  # how JSON (caption) requests are answered: CAPTION_MODES
        self.tags = tags  # honour [fake:...] tags in briefs when nothing is queued
        self.delay_s = delay_s  # every default image answer waits this long (a model's time to draw)
        self.requests: list[RecordedRequest] = []
        self.default: Reply | Callable[[RecordedRequest], Reply] | None = None
        self._queue: deque[Reply] = deque()
        self.models: dict[str, FakeModel] = {m.id: m for m in OFFERED}  # what ListModels lists and generateContent serves
        self.max_page_size = 4  # ListModels pages like the API does: the client must follow nextPageToken
        self.list_models_down = False  # ListModels answers 503 (an unreachable listing)
        self.list_calls = 0
        self._drawn: Counter[str] = Counter()  # default pictures drawn per brief and first reference
        self.signatures: set[bytes] = set()  # thought signatures issued (3.x image models; see signing below)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.batches = FakeBatches(self)  # the Batch API (section "Batch API" below)

    # -- scripting
    def enqueue(self, *replies: Reply) -> "FakeGemini":
        """Answer the next requests with these replies, in order; then fall back to the default."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def always(self, reply: Reply | Callable[[RecordedRequest], Reply]) -> "FakeGemini":
        """Answer every request (once the queue is empty) with this reply or function."""
        self.default = reply
        return self

    def offer(self, model_id: str, *, text: bool = False, sizes: tuple[str, ...] = ("1K",),
              ratios: tuple[str, ...] = _CLASSIC, display_name: str | None = None) -> "FakeModel":
        """List and serve one more model (a new release): an image model unless text=True."""
        model = FakeModel(model_id, display_name or model_id, sizes=() if text else sizes, ratios=() if text else ratios)
        with self._lock:
            self.models[model_id] = model
        return model

    def retire(self, model_id: str) -> None:
        """Shut a model down: no longer listed, and generateContent answers 404."""
        with self._lock:
            self.models.pop(model_id, None)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGemini is not running; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- lifecycle
    def start(self) -> "FakeGemini":
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True  # a slow reply must never block shutdown
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-gemini", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a slow reply
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- used by the handler
    def _refusal(self, request: RecordedRequest) -> Reply | None:
        """What the API says before generating: 404 for a model it doesn't serve, 400 for a size or ratio
        the model doesn't offer."""
        match = _PATH.match(request.path.split("?", 1)[0])
        model = self.models.get(match["model"]) if match else None
        if model is None:
            return not_found_reply(match["model"] if match else "?", match["version"] if match else "v1beta")
        if request.image_size is not None and request.image_size not in model.sizes:
            return _invalid(f"Image size {request.image_size} is not supported by models/{model.id}. "
                            f"Supported sizes: {', '.join(model.sizes) or 'none'}.")
        if request.aspect_ratio is not None and model.ratios and request.aspect_ratio not in model.ratios:
            return _invalid(f"Aspect ratio {request.aspect_ratio} is not supported by models/{model.id}.")
        return None

    def _record_and_choose(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if callable(self.default):
            return self.default(request)
        if self.default is not None:
            return self.default
        if request.wants_json and request.images:
            return self._caption_reply(request)
        return (self.tags and _reply_for_tags(request.brief)) or Reply(delay_s=self.delay_s)

    def _caption_reply(self, request: RecordedRequest) -> Reply:
        image = request.images[0][1]
        if self.caption_mode != "ok":
            return caption_failure_reply(self.caption_mode, image)
        return caption_reply(*caption_for(image))

    def _default_image_body(self, request: RecordedRequest) -> dict[str, Any]:
        """The gradient for this brief, billed like Gemini bills it: the brief's words and each
        reference image in, one image and a line of text out."""
        first_reference = hashlib.sha256(request.images[0][1]).hexdigest() if request.images else ""
        seed = request.brief + first_reference  # one product, one picture
        with self._lock:  # asked again (a variation): another picture, as a model would draw
            repeat = self._drawn[seed]
            self._drawn[seed] += 1
        png = make_png(seed if not repeat else f"{seed}#{repeat}", request.aspect_ratio)
        text = f"Generated for: {request.brief[:80]}"
        usage = usage_metadata(prompt=len(request.brief.split()), text=len(text.split()),
                               reference_images=len(request.images),
                               image=IMAGE_TOKENS_BY_SIZE.get(request.image_size or "1K", IMAGE_TOKENS))
        return image_reply(text, png, usage=usage).body or {}

    def _check_signatures(self, request: RecordedRequest) -> Reply | None:
        """A refusal for a chat turn sent back without its thought signature (recorded like any request)."""
        refusal = _check_signatures_of(self, request)
        if refusal is not None:
            with self._lock:
                self.requests.append(request)
        return refusal

    def _sign(self, request: RecordedRequest, body: dict[str, Any] | str) -> dict[str, Any] | str:
        return _sign_body(self, request, body)

    def _sleep(self, seconds: float) -> bool:
        """Sleep, but wake early when the server stops; True if the server is stopping."""
        return self._stopping.wait(seconds)


# --------------------------------------------------------------------------- chats: thought signatures
# Google's thought-signature page (ai.google.dev/gemini-api/docs/thought-signatures, read 2026-12-07) and
# the Vertex AI copy: the 3.x image models sign the first part after their thoughts and every image part
# they return, and a follow-up turn must send those parts back with their signatures, or the request
# is refused with 400 INVALID_ARGUMENT. google-genai's chats (client.chats.create) do this by keeping
# the model's Content as it came. The wording below follows the API's message for a missing signature
# ("... is missing a thought_signature ... Please refer to .../thought-signatures for more details.").
SIGNATURE_DOCS = "https://ai.google.dev/gemini-api/docs/thought-signatures"


def signs_thoughts(model: str | None) -> bool:
    """The models whose answers carry thought signatures here: the 3.x image models."""
    return bool(model) and model.startswith("gemini-3") and "image" in model


def missing_signature_reply(content_index: int, part_index: int, what: str = "Image part") -> Reply:
    """The API's refusal of a history turn sent back without the signature it was given."""
    return error_reply(400, f"{what} is missing a thought_signature in content position {content_index + 1}, "
                            f"part position {part_index + 1}. Please refer to {SIGNATURE_DOCS} for more "
                            "details.", "INVALID_ARGUMENT")


def _needs_signature(parts: list[dict[str, Any]]) -> list[int]:
    """Which parts of a model turn were signed: the first one after the thoughts, and every image."""
    visible = [i for i, p in enumerate(parts) if not p.get("thought")]
    signed = set(visible[:1])
    signed.update(i for i in visible if "inlineData" in parts[i] or "inline_data" in parts[i])
    return sorted(signed)


def _signature_of(part: dict[str, Any]) -> bytes | None:
    raw = part.get("thoughtSignature", part.get("thought_signature"))
    try:
        return _b64decode(raw) if isinstance(raw, str) and raw else None
    except ValueError:
        return None


def _check_signatures_of(fake: "FakeGemini", request: RecordedRequest) -> Reply | None:
    if not signs_thoughts(request.model):
        return None
    for content_index, (role, parts) in enumerate(request.turns):
        if role != "model":
            continue
        for part_index in _needs_signature(parts):
            signature = _signature_of(parts[part_index])
            what = "Image part" if "inlineData" in parts[part_index] or "inline_data" in parts[part_index] else "Part"
            if signature is None:
                return missing_signature_reply(content_index, part_index, what)
            if signature not in fake.signatures:
                return error_reply(400, f"Invalid thought signature in content position {content_index + 1}, "
                                        f"part position {part_index + 1}.", "INVALID_ARGUMENT")
    return None


def _sign_body(fake: "FakeGemini", request: RecordedRequest, body: dict[str, Any] | str) -> dict[str, Any] | str:
    """Add thoughtSignature to an answer's signed parts (3.x image models), remembering each one."""
    if not signs_thoughts(request.model) or not isinstance(body, dict) or not body.get("candidates"):
        return body
    content = body["candidates"][0].get("content")
    if not isinstance(content, dict):
        return body
    parts = [dict(p) for p in content.get("parts", [])]
    for index in _needs_signature(parts):
        signature = hashlib.sha256(f"{request.brief}|{len(fake.signatures)}|{index}|{time.time_ns()}".encode()).digest()
        with fake._lock:
            fake.signatures.add(signature)
        parts[index]["thoughtSignature"] = _b64(signature)
    candidate = {**body["candidates"][0], "content": {**content, "parts": parts}}
    return {**body, "candidates": [candidate, *body["candidates"][1:]]}


def _reply_for_tags(brief: str) -> Reply | None:
    """Scripted failures for the standalone server, chosen by a [fake:...] tag in the brief."""
    match = _TAG.search(brief)
    if not match:
        return None
    name, arg = match["name"], match["arg"]
    simple: dict[str, Callable[[], Reply]] = {
        "blocked": lambda: blocked_reply("SAFETY"),
        "safety": lambda: finish_reply("SAFETY"),
        "image-safety": lambda: finish_reply("IMAGE_SAFETY"),
        "text": lambda: text_reply(),
        "invalid-key": lambda: error_reply(400),
        "403": lambda: error_reply(403), "429": lambda: error_reply(429),
        "500": lambda: error_reply(500), "503": lambda: error_reply(503),
    }
    if name == "slow":
        return slow_reply(float(arg or 30))
    if name == "quota":  # Gemini's 429 with a RetryInfo delay of `arg` seconds
        return quota_reply(float(arg or 37))
    return simple[name]() if name in simple else None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGemini  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; the SDK reuses connections

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        if self.fake.batches.handle(self, "POST"):
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"code": 400, "message": "Invalid JSON payload received.",
                                       "status": "INVALID_ARGUMENT"}})
            return
        request = RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                  time.monotonic())
        if not _PATH.match(self.path.split("?", 1)[0]):
            self._send(404, {"error": {"code": 404, "message": f"Unknown path {self.path}", "status": "NOT_FOUND"}})
            return
        refusal = self.fake._check_signatures(request)
        reply = refusal or self.fake._record_and_choose(request)
        if reply.delay_s and self.fake._sleep(reply.delay_s):
            return  # server is shutting down
        body_out = reply.body if reply.body is not None else self.fake._default_image_body(request)
        body_out = self.fake._sign(request, body_out)
        self._send(reply.status, _with_key(body_out, request.headers.get("x-goog-api-key", "")))

    def do_GET(self) -> None:  # noqa: N802
        if self.fake.batches.handle(self, "GET"):
            return
        path, _, query = self.path.partition("?")
        match = _MODELS_PATH.match(path)
        if not match:
            self._send(404, {"error": {"code": 404, "message": f"Unknown path {path}", "status": "NOT_FOUND"}})
            return
        fake = self.fake
        if fake.list_models_down:
            self._send(503, error_reply(503).body or {})
            return
        with fake._lock:
            fake.list_calls += 1
            models = list(fake.models.values())
        if match["model"]:  # models.get
            found = next((m for m in models if m.id == match["model"]), None)
            if found is None:
                self._send(404, {"error": {"code": 404, "message": f"models/{match['model']} is not found for API "
                                           f"version {match['version']}.", "status": "NOT_FOUND"}})
            else:
                self._send(200, found.to_json())
            return
        params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        size = min(fake.max_page_size, int(params.get("pageSize") or 50))
        start = int(params.get("pageToken") or 0)
        body: dict[str, Any] = {"models": [m.to_json() for m in models[start:start + size]]}
        if start + size < len(models):
            body["nextPageToken"] = str(start + size)
        self._send(200, body)

    def _send(self, status: int, body: dict[str, Any] | str) -> None:
        raw_text = isinstance(body, str)  # e.g. a proxy's HTML error page
        data = (body if raw_text else json.dumps(body)).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=UTF-8" if raw_text else "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing left to tell it

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output clean; requests are recorded instead


def _with_key(body: dict[str, Any] | str, key: str) -> dict[str, Any] | str:
    """Echo the caller's key into an error message that asks for it (tests key scrubbing)."""
    if isinstance(body, str):
        return body.replace(API_KEY_PLACEHOLDER, key)
    error = body.get("error")
    if isinstance(error, dict) and API_KEY_PLACEHOLDER in str(error.get("message", "")):
        error = {**error, "message": error["message"].replace(API_KEY_PLACEHOLDER, key)}
        return {**body, "error": error}
    return body


# =========================================================================== Batch API
# Half-price batches, as google-genai 3.x calls them (batches.py, files.py, _api_client.upload_file):
#   POST /{v}/models/{model}:batchGenerateContent  {"batch": {"displayName", "inputConfig":
#        {"requests": {"requests": [{"request": {...}, "metadata": {...}}]}} | {"fileName": "files/X"}}}
#   GET  /{v}/batches/{id}            -> {"name", "metadata": {"state": "BATCH_STATE_...", "output": {...}}, "done"}
#   POST /{v}/batches/{id}:cancel
#   POST /upload/{v}/files            (X-Goog-Upload-Command: start) -> header x-goog-upload-url
#   POST <upload url>                 (upload, finalize; the bytes) -> x-goog-upload-status: final, {"file": {...}}
#   GET  /{v}/files/{id}:download?alt=media -> the file's bytes
# Every request in a batch is answered the way generateContent would answer it (the queue, `always`, the
# default picture) and recorded in `requests`. A batch stays RUNNING for `polls_until_done` GETs, then
# SUCCEEDED; inline requests get inline answers, a file gets a JSONL file of answers. Kept in its own
# section so that changes to the generateContent fake above merge cleanly.
_BATCH_CREATE = re.compile(r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^/:]+):batchGenerateContent$")
_BATCH = re.compile(r"^/(?:v1beta|v1|v1alpha)/batches/(?P<id>[^/:]+)(?P<cancel>:cancel)?$")
_UPLOAD_START = re.compile(r"^/upload/(?:v1beta|v1|v1alpha)/files$")
_UPLOAD_SESSION = re.compile(r"^/upload-session/(?P<id>[0-9]+)$")
_DOWNLOAD = re.compile(r"^(?:/(?:v1beta|v1|v1alpha))?/files/(?P<id>[^/:]+):download$")


@dataclass
class FakeBatch:
    name: str
    model: str
    display_name: str
    keys: list[str]                       # the requests' keys, in order
    answers: list[dict[str, Any]]         # {"response": ...} or {"error": ...}, in order
    from_file: bool
    state: str = "BATCH_STATE_PENDING"
    polls: int = 0


class FakeBatches:
    def __init__(self, fake: "FakeGemini") -> None:
        self.fake = fake
        self.jobs: dict[str, FakeBatch] = {}
        self.files: dict[str, bytes] = {}          # "files/ID" -> content
        self.created: list[FakeBatch] = []         # in order, for assertions
        self.gets = 0                              # GET batches/{id} calls (polls)
        self.polls_until_done = 1                  # GETs that still say RUNNING
        self._sessions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._counter = 0

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def handle(self, handler: "_Handler", method: str) -> bool:
        """Answer a Batch API or file request; False if the path is not one (generateContent goes on)."""
        path = handler.path.split("?", 1)[0]
        routes = ((_BATCH_CREATE, "POST", self._create), (_BATCH, "GET", self._get), (_BATCH, "POST", self._cancel),
                  (_UPLOAD_START, "POST", self._upload_start), (_UPLOAD_SESSION, "POST", self._upload_chunk),
                  (_DOWNLOAD, "GET", self._download))
        for pattern, verb, answer in routes:
            match = pattern.match(path)
            if match and verb == method:
                length = int(handler.headers.get("Content-Length") or 0)
                raw = handler.rfile.read(length) if length else b""
                answer(handler, match, raw)
                return True
        return False

    # -- batches
    def _create(self, handler: "_Handler", match: re.Match, raw: bytes) -> None:
        batch = json.loads(raw or b"{}").get("batch", {})
        source = batch.get("inputConfig", {})
        if "fileName" in source:
            lines = [json.loads(line) for line in self.files.get(source["fileName"], b"").decode().splitlines() if line]
            items = [(str(line.get("key", i)), line.get("request", {})) for i, line in enumerate(lines)]
        else:
            requests = source.get("requests", {}).get("requests", [])
            items = [(str((r.get("metadata") or {}).get("key", i)), r.get("request", {})) for i, r in enumerate(requests)]
        headers = {k.lower(): v for k, v in handler.headers.items()}
        answers = [self._answer(match["version"], match["model"], request, headers) for _, request in items]
        job = FakeBatch(f"batches/fake{self._next()}", match["model"], batch.get("displayName", ""),
                        [key for key, _ in items], answers, "fileName" in source)
        with self._lock:
            self.jobs[job.name] = job
            self.created.append(job)
        handler._send(200, self._operation(job))

    def _answer(self, version: str, model: str, request: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        recorded = RecordedRequest("POST", f"/{version}/models/{model}:generateContent", headers, request,
                                   time.monotonic())
        reply = self.fake._record_and_choose(recorded)
        if reply.status != 200:
            error = (reply.body or {}).get("error") if isinstance(reply.body, dict) else None
            return {"error": error or {"code": reply.status, "message": "fake failure"}}
        return {"response": reply.body if isinstance(reply.body, dict) else self.fake._default_image_body(recorded)}

    def _get(self, handler: "_Handler", match: re.Match, raw: bytes) -> None:
        job = self.jobs.get(f"batches/{match['id']}")
        if job is None:
            handler._send(404, {"error": {"code": 404, "message": "batch not found", "status": "NOT_FOUND"}})
            return
        with self._lock:
            self.gets += 1
            if job.state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                job.polls += 1
                job.state = "BATCH_STATE_SUCCEEDED" if job.polls > self.polls_until_done else "BATCH_STATE_RUNNING"
        handler._send(200, self._operation(job))

    def _cancel(self, handler: "_Handler", match: re.Match, raw: bytes) -> None:
        job = self.jobs.get(f"batches/{match['id']}")
        if job is None:
            handler._send(404, {"error": {"code": 404, "message": "batch not found", "status": "NOT_FOUND"}})
            return
        with self._lock:
            if job.state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                job.state = "BATCH_STATE_CANCELLED"
        handler._send(200, {})

    def _operation(self, job: FakeBatch) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{job.model}", "displayName": job.display_name, "state": job.state,
            "createTime": "2026-12-07T00:00:00Z"}
        if job.state == "BATCH_STATE_SUCCEEDED":
            if job.from_file:
                name = f"files/out-{job.name.split('/')[-1]}"
                self.files[name] = "".join(json.dumps({"key": key, **answer}) + "\n"
                                           for key, answer in zip(job.keys, job.answers)).encode()
                metadata["output"] = {"responsesFile": name}
            else:
                metadata["output"] = {"inlinedResponses": {"inlinedResponses": [
                    {**answer, "metadata": {"key": key}} for key, answer in zip(job.keys, job.answers)]}}
        return {"name": job.name, "metadata": metadata,
                "done": job.state not in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")}

    # -- files
    def _upload_start(self, handler: "_Handler", match: re.Match, raw: bytes) -> None:
        session = str(self._next())
        self._sessions[session] = {"meta": json.loads(raw or b"{}").get("file", {}), "data": b""}
        host = handler.headers.get("Host", "127.0.0.1")
        handler.send_response(200)
        handler.send_header("x-goog-upload-url", f"http://{host}/upload-session/{session}")
        handler.send_header("x-goog-upload-status", "active")
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    def _upload_chunk(self, handler: "_Handler", match: re.Match, raw: bytes) -> None:
        session = self._sessions.get(match["id"])
        if session is None:
            handler._send(404, {"error": {"code": 404, "message": "no such upload", "status": "NOT_FOUND"}})
            return
        session["data"] += raw
        final = "finalize" in handler.headers.get("X-Goog-Upload-Command", "")
        body = b"{}"
        if final:
            name = session["meta"].get("name") or f"files/in{match['id']}"
            self.files[name] = session["data"]
            body = json.dumps({"file": {"name": name, "mimeType": session["meta"].get("mimeType", "application/jsonl"),
                                        "sizeBytes": str(len(session["data"])), "state": "ACTIVE"}}).encode()
        handler.send_response(200)
        handler.send_header("x-goog-upload-status", "final" if final else "active")
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _download(self, handler: "_Handler", match: re.Match, raw: bytes) -> None:
        data = self.files.get(f"files/{match['id']}")
        if data is None:
            handler._send(404, {"error": {"code": 404, "message": "file not found", "status": "NOT_FOUND"}})
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


# --------------------------------------------------------------------------- standalone
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Gemini API on 127.0.0.1 for manual testing.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                        help="answer each image request after this long, like a real model (default 0)")
    parser.add_argument("--caption", default="ok", choices=CAPTION_MODES, metavar="MODE",
                        help=f"how caption (Describe) requests are answered: {', '.join(CAPTION_MODES)} (default ok)")
    args = parser.parse_args(argv)
    server = FakeGemini(args.port, delay_s=args.delay, caption_mode=args.caption).start()
    print(f"Fake Gemini listening on {server.url}  (Ctrl-C to stop)")
    print(f"  RAGKIT_GEMINI_BASE_URL={server.url} GEMINI_API_KEY=fake-key streamlit run app.py")
    print("  Put [fake:429], [fake:blocked], [fake:safety], [fake:text], [fake:slow=30] ... in a brief to see errors.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
