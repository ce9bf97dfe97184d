"""The Gemini client: Nano Banana through google-genai, a brief plus reference images -> new images.

One ``ImageGenerator`` owns one ``genai.Client`` (connection pool reused across
calls). Every failure leaves this module as a typed ``GenerationError`` whose message
says what to do next, and no message, log line or repr ever contains the API key.

Verified against google-genai 3.4.0 (see the Studio notes in the README):
* ``HttpOptions.timeout`` is in milliseconds; a timeout surfaces as the transport's
  ``TimeoutException`` (httpx2 by default, httpx if that backend is chosen), raw.
* Connection failures surface as the transport's ``ConnectError``, raw.
* HTTP errors surface as ``google.genai.errors.ClientError`` (4xx) / ``ServerError``
  (5xx), both ``APIError`` with ``.code``, ``.status``, ``.message``, ``.details``.
* The SDK only retries when ``retry_options`` is set; we pin ``attempts=1`` anyway
  and run our own bounded, logged retry so the count in messages is the truth.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from ragkit.config import mask_secrets, redact_uri
from ragkit.errors import (
    GenerationError,
    GenerationServerError,
    GenerationTimeoutError,
    InvalidApiKeyError,
    MissingApiKeyError,
    ModelGoneError,
    NoImageReturnedError,
    PromptBlockedError,
    QuotaExceededError,
    SafetyStopError,
    TooManyReferencesError,
)
from ragkit.limits import MAX_VARIATIONS
from ragkit.studio.cost import usage_problem
from ragkit.studio.models import (DEFAULT_MODEL, ModelInfo, check_output, model_info, normalise_size,
                                  too_many_references)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"  # the image models' documented endpoint; the SDK's own default is v1
MAX_BACKOFF_S = 60.0
ACCEPTED_REFERENCE_MIMES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ReferenceImage:
    data: bytes
    mime: str
    sha256: str | None = None  # the library asset this came from (provenance)

    def __repr__(self) -> str:  # never dump megabytes of bytes into a log
        return f"ReferenceImage(mime={self.mime!r}, bytes={len(self.data)}, sha256={self.sha256!r})"


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    mime: str

    def __repr__(self) -> str:
        return f"GeneratedImage(mime={self.mime!r}, bytes={len(self.data)})"


@dataclass
class Generation:
    prompt: str
    model: str
    images: list[GeneratedImage]
    text: str
    reference_ids: list[str]
    aspect_ratio: str | None
    usage: dict[str, int]  # token and image counts, summed over variations (see _usage)
    seconds: float
    warnings: list[str] = field(default_factory=list)
    size: str | None = None  # image_config.image_size as sent (None: the model's default)
    details: dict[str, Any] = field(default_factory=dict)  # provenance beyond the brief: kit, cost, ...


@dataclass
class _Answer:
    """What one request produced."""
    images: list[GeneratedImage]
    text: str
    usage: dict[str, int]
    warnings: list[str]


# ----------------------------------------------------------------------------- transport errors
def _transport_classes(name: str) -> tuple[type[BaseException], ...]:
    """The named exception class from every HTTP backend google-genai may use (httpx2, httpx)."""
    found: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


_TIMEOUT_ERRORS = _transport_classes("TimeoutException") + (TimeoutError,)
_CONNECT_ERRORS = _transport_classes("ConnectError") + (ConnectionRefusedError,)
_TRANSPORT_ERRORS = _transport_classes("TransportError")  # disconnects, protocol errors

_SAFETY_FINISH = frozenset({"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT",
                            "BLOCKLIST", "SPII", "RECITATION", "IMAGE_RECITATION", "MODEL_ARMOR"})
_KEY_REJECTED = re.compile(r"API[ _]key (not valid|invalid|expired)|API_KEY_INVALID", re.IGNORECASE)


class _Retryable(Exception):
    """Internal: a failure worth another attempt, carrying the error to raise if we give up."""

    def __init__(self, final: Callable[[int, float], GenerationError], delay_hint_s: float | None = None):
        super().__init__("retryable")
        self.final = final  # (retries done, seconds spent) -> the error for the user
        self.delay_hint_s = delay_hint_s


class _Secret:
    """Holds the key so that repr(), str() and vars() dumps show *** instead."""
    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


# ----------------------------------------------------------------------------- generator
class ImageGenerator:
    """Sends a brief and reference images to a Nano Banana model and returns the images."""

    def __init__(self, api_key: str, *, model: str = DEFAULT_MODEL, base_url: str | None = None,
                 timeout_s: float = 120, max_retries: int = 3, backoff_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        key = (api_key or "").strip()
        if not key:
            raise MissingApiKeyError(_MISSING_KEY_MESSAGE)
        self._key = _Secret(key)
        self.model = model
        self.base_url = base_url or None
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = float(backoff_s)
        self._sleep = sleep
        self._client = self._make_client()

    @classmethod
    def from_settings(cls, settings: Any) -> "ImageGenerator":
        """Build from ragkit Settings; raises MissingApiKeyError when no key is configured."""
        if not getattr(settings, "gemini_api_key", ""):
            raise MissingApiKeyError(_MISSING_KEY_MESSAGE)
        return cls(settings.gemini_api_key, model=settings.gemini_model or DEFAULT_MODEL,
                   base_url=settings.gemini_base_url or None)

    def __repr__(self) -> str:
        return (f"ImageGenerator(model={self.model!r}, endpoint={self.endpoint!r}, "
                f"timeout_s={self.timeout_s:g}, max_retries={self.max_retries}, api_key='***')")

    @property
    def endpoint(self) -> str:
        """Where requests go, safe to display (credentials in the URL removed)."""
        return redact_uri(self.base_url or DEFAULT_ENDPOINT)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "ImageGenerator":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _make_client(self) -> genai.Client:
        options = types.HttpOptions(
            base_url=self.base_url,
            api_version=API_VERSION,
            timeout=max(1, round(self.timeout_s * 1000)),  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),  # we retry ourselves, with a count we report
        )
        try:
            # vertexai=False: ignore GOOGLE_GENAI_USE_VERTEXAI; this is an AI Studio key.
            return genai.Client(api_key=self._key.value, vertexai=False, http_options=options)
        except ValueError as exc:
            raise GenerationError(self._scrub(f"Cannot set up the Gemini client: {exc}")) from None

    # -- public
    def generate(self, brief: str, references: Sequence[ReferenceImage] = (), *, model: str | None = None,
                 aspect_ratio: str | None = None, variations: int = 1,
                 on_progress: Callable[[int, int], None] | None = None, size: str | None = None) -> Generation:
        """Generate `variations` images for one brief (one request each, run concurrently).

        on_progress(done, total) is called from the calling thread (Streamlit widgets
        only work there): once with (0, total), then after each request finishes.
        """
        started = time.monotonic()
        info = model_info(model or self.model)
        size = normalise_size(size)
        prompt = self._validate(brief, references, info, aspect_ratio, variations, size)
        contents: list[Any] = [prompt, *(types.Part.from_bytes(data=r.data, mime_type=r.mime) for r in references)]
        image_config = (types.ImageConfig(aspect_ratio=aspect_ratio or None, image_size=size)
                        if aspect_ratio or size else None)
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=image_config,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),  # no tools here
        )
        outcomes = self._run_variations(lambda: self._generate_one(info, contents, config), variations, on_progress)
        generation = self._combine(outcomes, prompt, info, references, aspect_ratio, started)
        generation.size = size
        return generation

    # -- validation (before any network call)
    @staticmethod
    def _validate(brief: str, references: Sequence[ReferenceImage], info: ModelInfo,
                  aspect_ratio: str | None, variations: int, size: str | None = None) -> str:
        prompt = (brief or "").strip()
        if not prompt:
            raise GenerationError("The brief is empty. Describe the image you want (subject, setting, "
                                  "style, mood) before generating.")
        too_many = too_many_references(len(references), info)
        if too_many:
            raise TooManyReferencesError(too_many)
        for ref in references:
            if ref.mime not in ACCEPTED_REFERENCE_MIMES:
                raise GenerationError(f"A reference image is {ref.mime}, which Gemini does not accept "
                                      "(PNG, JPEG, WebP, HEIC, HEIF). Pass it through prepare_reference() first.")
        if problem := check_output(info, aspect_ratio, size):
            raise GenerationError(problem)
        if not 1 <= variations <= MAX_VARIATIONS:
            raise GenerationError(f"Ask for between 1 and {MAX_VARIATIONS} variations (got {variations}).")
        return prompt

    # -- concurrency
    def _run_variations(self, task: Callable[[], _Answer], n: int,
                        on_progress: Callable[[int, int], None] | None) -> list[_Answer | GenerationError]:
        """Run `task` n times concurrently; results (answer or typed error) in request order."""
        progress = on_progress or (lambda done, total: None)
        progress(0, n)
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="nano-banana") as pool:
            futures: list[Future[_Answer]] = [pool.submit(task) for _ in range(n)]
            for done, _ in enumerate(as_completed(futures), start=1):
                progress(done, n)
        outcomes: list[_Answer | GenerationError] = []
        for future in futures:
            exc = future.exception()
            if exc is None:
                outcomes.append(future.result())
            elif isinstance(exc, GenerationError):
                outcomes.append(exc)
            else:
                raise exc  # a bug in our own code: don't dress it up as a generation failure
        return outcomes

    def _combine(self, outcomes: list[_Answer | GenerationError], prompt: str, info: ModelInfo,
                 references: Sequence[ReferenceImage], aspect_ratio: str | None, started: float) -> Generation:
        answers = [o for o in outcomes if isinstance(o, _Answer)]
        failures = [(i, o) for i, o in enumerate(outcomes, start=1) if isinstance(o, GenerationError)]
        if not answers:
            raise failures[0][1]  # all failed: the first typed error says why
        notes = [w for a in answers for w in a.warnings]
        for index, error in failures:
            note = self._scrub(f"{len(failures)} of {len(outcomes)} variations failed "
                               f"(variation {index}): {error}")
            log.warning("%s", note)
            notes.append(note)
        usage = {k: sum(a.usage.get(k, 0) for a in answers) for k in answers[0].usage}
        return Generation(
            prompt=prompt, model=info.id,
            images=[img for a in answers for img in a.images],
            text="\n\n".join(a.text for a in answers if a.text),
            reference_ids=[r.sha256 or hashlib.sha256(r.data).hexdigest() for r in references],
            aspect_ratio=aspect_ratio, usage=usage,
            seconds=time.monotonic() - started, warnings=notes,
        )

    # -- one request, with bounded retry
    def _generate_one(self, info: ModelInfo, contents: list[Any], config: types.GenerateContentConfig) -> _Answer:
        return self.read(self.send(info, contents, config), info)

    def send(self, info: ModelInfo, contents: list[Any], config: types.GenerateContentConfig, *,
             model_setting: str = "RAGKIT_GEMINI_MODEL") -> types.GenerateContentResponse:
        """One request with the bounded retry (429s wait for the server's delay, through `sleep`): the
        answer as the SDK read it, or a typed GenerationError. Also what captions (ragkit.studio.captions)
        send; `model_setting` is the setting a 404 tells the person to check."""
        return self.request(info, lambda: self._client.models.generate_content(
            model=info.id, contents=contents, config=config), model_setting=model_setting)

    def request(self, info: ModelInfo, call: Callable[[], types.GenerateContentResponse], *,
                model_setting: str = "RAGKIT_GEMINI_MODEL") -> types.GenerateContentResponse:
        """Any SDK call that answers like generate_content (a chat's send_message too: ragkit.studio.edit),
        with the bounded retry and the typed, scrubbed errors. `call` must be safe to repeat: a chat
        records a turn only when it succeeded."""
        return self._retrying(lambda: self._sdk(call, info, model_setting))

    def call_api(self, call: Callable[[genai.Client], Any], model: str | None = None) -> Any:
        """Another SDK call (the Batch API, file uploads) with the same bounded retry and typed errors."""
        info = model_info(model or self.model)
        return self._retrying(lambda: self._sdk(lambda: call(self._client), info))

    def _retrying(self, attempt: Callable[[], Any]) -> Any:
        started = time.monotonic()
        retries = 0
        while True:
            try:
                return attempt()
            except _Retryable as failure:
                if retries >= self.max_retries:
                    raise failure.final(retries, time.monotonic() - started) from None
                delay = min(MAX_BACKOFF_S, max(self.backoff_s * 2 ** retries, failure.delay_hint_s or 0.0))
                retries += 1
                log.info("Gemini busy or rate-limited; retry %d of %d in %.1f s", retries, self.max_retries, delay)
                self._sleep(delay)

    def chat(self, info: ModelInfo, config: types.GenerateContentConfig, history: list[types.Content]) -> Any:
        """A google-genai chat on this client: it sends the whole history (thought signatures included)
        with each message, and records a turn only when the answer was valid."""
        return self._client.chats.create(model=info.id, config=config, history=list(history))

    def read(self, response: types.GenerateContentResponse, info: ModelInfo) -> "_Answer":
        """Images, text and usage from an answer, or the typed (scrubbed) error for a refusal."""
        try:
            return _read_response(response, info)
        except GenerationError as exc:  # refusal texts come from the server: scrub them too
            raise type(exc)(self._scrub(str(exc))) from None

    def _sdk(self, call: Callable[[], Any], info: ModelInfo, model_setting: str = "RAGKIT_GEMINI_MODEL") -> Any:
        """One SDK call; every SDK/transport failure becomes a GenerationError or _Retryable."""
        try:
            return call()
        except genai_errors.APIError as exc:
            raise self._http_error(exc, info, model_setting) from None
        except _TIMEOUT_ERRORS:
            raise GenerationTimeoutError(
                f"{info.label} did not answer within {self.timeout_s:g} s. Image generation can be slow under "
                "load: try again, use fewer reference images, or raise the timeout.") from None
        except _CONNECT_ERRORS as exc:
            raise GenerationServerError(self._scrub(
                f"Cannot reach the Gemini endpoint {self.endpoint} ({_reason(exc)}). Check the network "
                "connection and proxy settings, or RAGKIT_GEMINI_BASE_URL if you set one.")) from None
        except _TRANSPORT_ERRORS as exc:
            message = self._scrub(f"The connection to {self.endpoint} failed mid-request ({_reason(exc)})")
            raise _Retryable(lambda n, s: GenerationServerError(
                f"{message}; {_retried(n)}. Try again in a minute.")) from None
        except (genai_errors.UnknownApiResponseError, json.JSONDecodeError):  # the SDK raises either
            raise GenerationServerError(
                f"{self.endpoint} answered with something that is not Gemini JSON. If you set "
                "RAGKIT_GEMINI_BASE_URL, check that it points at a Gemini-compatible API.") from None
        except Exception as exc:  # anything else the SDK raises (e.g. an answer it cannot parse)
            raise GenerationError(self._scrub(
                f"The Gemini client failed unexpectedly ({type(exc).__name__}: {_reason(exc)}). "
                "Try again; if it keeps happening, report it with the brief you used.")) from None

    def _http_error(self, exc: genai_errors.APIError, info: ModelInfo,
                    model_setting: str = "RAGKIT_GEMINI_MODEL") -> Exception:
        """Map an HTTP error answer to the typed error (or a retry) a person can act on."""
        code = int(exc.code or 0)
        status = exc.status or ""
        detail = self._scrub(f"{code} {status}: {exc.message or 'no message'}".replace(" :", ":"))
        if code in (401, 403) or (code == 400 and _KEY_REJECTED.search(f"{exc.message} {exc.details}")):
            return InvalidApiKeyError(
                f"Gemini rejected the API key ({detail}). Check GEMINI_API_KEY in the environment or in "
                f".streamlit/secrets.toml, and that the key is allowed to use {info.label}; create a key at "
                "https://aistudio.google.com/apikey.")
        if code == 429:
            hint = _retry_delay_s(exc.details)
            return _Retryable(lambda n, s: QuotaExceededError(
                f"Gemini quota or rate limit reached for {info.label} ({detail}); {_retried(n, s)}. Wait a "
                "minute and try again, ask for fewer variations, or check your plan's limits at "
                "https://ai.google.dev/gemini-api/docs/rate-limits."), hint)
        if code >= 500 or code == 408:
            return _Retryable(lambda n, s: GenerationServerError(
                f"Gemini had a server problem ({detail}); {_retried(n, s)}. The service may be overloaded: "
                "try again in a few minutes."))
        if code == 404:  # a shut-down or unknown model id: say so, with what the key can use instead
            from ragkit.studio.discovery import gone_message, live_ids_or_known
            kind = "text" if model_setting == "RAGKIT_CAPTION_MODEL" else "image"
            return ModelGoneError(gone_message(info.id, kind, live_ids_or_known(self._client, kind), model_setting))
        return GenerationError(f"Gemini rejected the request ({detail}).")

    def _scrub(self, text: str) -> str:
        """The key never leaves this module inside a message: not every message it writes (its
        warnings, its log lines) passes user_message, and its key need not come from Settings."""
        return mask_secrets(text, [self._key.value])


_MISSING_KEY_MESSAGE = (
    "No Gemini API key is configured. Set GEMINI_API_KEY in the environment "
    "(export GEMINI_API_KEY=your-key) or add the line GEMINI_API_KEY = \"your-key\" to "
    ".streamlit/secrets.toml, then restart ragkit. Get a key at https://aistudio.google.com/apikey.")


def _retried(n: int, seconds: float | None = None) -> str:
    if n == 0:
        return "did not retry"
    spent = f" over {seconds:.0f} s" if seconds and seconds >= 1 else ""
    return f"retried {n} time{'s' if n != 1 else ''}{spent}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _retry_delay_s(details: Any) -> float | None:
    """The server's google.rpc.RetryInfo retryDelay ("37s") in seconds, if it sent one."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = re.fullmatch(r"\s*([\d.]+)s\s*", str(item.get("retryDelay", "")))
            if match:
                return float(match[1])
    return None


# ----------------------------------------------------------------------------- responses
def _enum_name(value: Any) -> str:
    """FinishReason / BlockedReason as a plain name (unknown values come through as strings)."""
    return str(getattr(value, "value", value) or "")


def read_answer(response: types.GenerateContentResponse, model: str) -> _Answer:
    """Images, text and usage of an answer that came some other way (the Batch API); typed error for a refusal."""
    return _read_response(response, model_info(model))


def _read_response(response: types.GenerateContentResponse, info: ModelInfo) -> _Answer:
    """Images, text and usage from one answer, or the typed error for a refusal / no image."""
    feedback = response.prompt_feedback
    if feedback and feedback.block_reason:
        reason = _enum_name(feedback.block_reason)
        extra = f" {model_message(feedback.block_reason_message)}" if feedback.block_reason_message else ""
        raise PromptBlockedError(f"Gemini blocked the brief before generating anything (reason: {reason}).{extra} "
                                 "Rephrase the brief or use different reference images.")
    candidate = response.candidates[0] if response.candidates else None
    parts = (candidate.content.parts or []) if candidate and candidate.content else []
    visible = [p for p in parts if not p.thought]  # Pro "thinks" in text and draft images first
    images = [GeneratedImage(p.inline_data.data, p.inline_data.mime_type or "image/png")
              for p in visible if p.inline_data and p.inline_data.data]
    text = model_message("".join(p.text for p in visible if p.text).strip(), MAX_MODEL_TEXT)
    finish = model_message(_enum_name(candidate.finish_reason), 60) if candidate else ""
    finish_message = model_message(candidate.finish_message or "") if candidate else ""
    notes: list[str] = []
    if finish in _SAFETY_FINISH:
        if not images:
            extra = f": {finish_message}" if finish_message else ""
            raise SafetyStopError(f"{info.label} stopped for safety reasons (finish reason: {finish}{extra}). "
                                  "Rephrase the brief or try different reference images.")
        notes.append(f"{info.label} flagged part of the output ({finish}); some images may be missing.")
    if not images:
        raise NoImageReturnedError(_no_image_message(info, text, finish))
    usage = _usage(response.usage_metadata, len(images))
    if problem := usage_problem(usage):
        notes.append(f"Gemini reported usage that can't be true ({problem}): this generation's cost is counted "
                     "as unknown.")
    return _Answer(images, text, usage, notes)


MAX_MODEL_MESSAGE = 1000   # characters of a finish or block message kept and shown
MAX_MODEL_TEXT = 4000      # characters of the model's text answer kept


def model_message(text: object, limit: int = MAX_MODEL_MESSAGE) -> str:
    """A message from the model (finish message, block message, text answer), bounded: a proxy or a
    bug can send megabytes, which would be stored in every job's state and printed whole."""
    text = str(text or "")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit:,} more characters not shown)"


def _no_image_message(info: ModelInfo, text: str, finish: str) -> str:
    if text:
        shown = text if len(text) <= 600 else text[:600] + "..."
        return (f"{info.label} answered with text but no image: \"{shown}\" Rephrase the brief so it clearly "
                "asks for a picture, or try again.")
    why = f" (finish reason: {finish})" if finish and finish != "STOP" else ""
    return f"{info.label} returned no image{why}. Try again, or rephrase the brief."


def _usage(meta: types.GenerateContentResponseUsageMetadata | None, images: int) -> dict[str, int]:
    """One answer's usage, the counts ragkit.studio.cost prices: prompt tokens (brief and references),
    output tokens split into text and image tokens (by the answer's per-modality details; without
    them, all output counts as image tokens when images came back: the dearer rate, never an
    under-estimate), thinking tokens, and the number of images."""
    prompt = (meta.prompt_token_count or 0) if meta else 0
    output = (meta.candidates_token_count or 0) if meta else 0
    thoughts = (meta.thoughts_token_count or 0) if meta else 0
    total = (meta.total_token_count or 0) if meta else 0
    by_modality = {_enum_name(d.modality): d.token_count or 0
                   for d in ((meta.candidates_tokens_details or []) if meta else [])}
    image_tokens = by_modality.get("IMAGE", 0) if by_modality else (output if images else 0)
    return {"prompt_tokens": prompt, "output_tokens": output, "total_tokens": total or prompt + output + thoughts,
            "text_tokens": output - image_tokens, "image_tokens": image_tokens, "thoughts_tokens": thoughts, "images": images}
