"""ragkit.studio.generation (the Gemini client) driven through the REAL google-genai client against a local fake Gemini.

Everything runs on 127.0.0.1; sleeps are no-ops (recorded) so retries cost nothing.
"""
from __future__ import annotations

import io
import logging
import threading
import time
import traceback
from typing import Callable

import pytest
from PIL import Image

from ragkit.config import Settings
from ragkit.errors import (
    GenerationError,
    ModelGoneError,
    GenerationServerError,
    GenerationTimeoutError,
    InvalidApiKeyError,
    InvalidImageError,
    MissingApiKeyError,
    NoImageReturnedError,
    PromptBlockedError,
    QuotaExceededError,
    SafetyStopError,
    TooManyReferencesError,
)
from ragkit.studio import MODELS, ImageGenerator, ReferenceImage, model_info, prepare_reference
from tests.conftest import free_port
from devtools.fake_gemini import (
    API_KEY_PLACEHOLDER,
    FakeGemini,
    Reply,
    blocked_reply,
    error_reply,
    finish_reply,
    image_reply,
    slow_reply,
    text_reply,
)

KEY = "AIzaSy-test-KEY-5f3a9c0e1d"  # distinctive, so a leak anywhere is easy to spot
FLASH, PRO, LITE = "gemini-nano-banana-2.1", "gemini-3-pro-image", "gemini-3.1-flash-lite-image"


# ----------------------------------------------------------------------------- helpers
class SleepRecorder:
    """Stands in for time.sleep: records the back-off delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_generator(fake_gemini: FakeGemini, sleeps: SleepRecorder):
    made: list[ImageGenerator] = []

    def make(**kwargs) -> ImageGenerator:
        kwargs = {"base_url": fake_gemini.url, "sleep": sleeps, "max_retries": 3, "backoff_s": 2.0, **kwargs}
        generator = ImageGenerator(KEY, **kwargs)
        made.append(generator)
        return generator

    yield make
    for generator in made:
        generator.close()


@pytest.fixture(autouse=True)
def capture_all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # SDK, httpx2/httpcore2 and ragkit, everything
    return caplog


def assert_key_never_shown(exc: BaseException | None, caplog: pytest.LogCaptureFixture,
                           extra: list[str] = ()) -> None:
    texts = [record.getMessage() for record in caplog.records] + list(extra)
    if exc is not None:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    leaks = [t for t in texts if KEY in t]
    assert not leaks, f"API key leaked in: {leaks[:2]}"


def png_bytes(size: tuple[int, int], color=(200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(size: tuple[int, int], color=(30, 90, 200), orientation: int | None = None) -> bytes:
    image = Image.new("RGB", size, color)
    image.paste((250, 250, 0), (0, 0, size[0] // 4, size[1] // 4))  # a marker in the top-left corner
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# ----------------------------------------------------------------------------- what is sent
def test_request_carries_brief_references_config_and_key(make_generator, fake_gemini, capture_all_logs):
    refs = [prepare_reference(png_bytes((64, 48)), sha256="a" * 64),
            prepare_reference(jpeg_bytes((80, 80)), sha256="b" * 64)]
    result = make_generator().generate("  a red bicycle on a beach  ", refs, aspect_ratio="4:5")

    (request,) = fake_gemini.requests
    assert request.path == f"/v1beta/models/{FLASH}:generateContent"
    assert request.headers["x-goog-api-key"] == KEY
    assert request.texts == ["a red bicycle on a beach"]
    assert [mime for mime, _ in request.images] == ["image/png", "image/jpeg"]
    assert [data for _, data in request.images] == [r.data for r in refs]
    assert request.response_modalities == ["TEXT", "IMAGE"]
    assert request.aspect_ratio == "4:5"

    assert result.prompt == "a red bicycle on a beach" and result.model == FLASH
    assert result.reference_ids == ["a" * 64, "b" * 64]
    assert result.aspect_ratio == "4:5"
    assert len(result.images) == 1 and result.images[0].mime == "image/png"
    assert decode(result.images[0].data).size == (77, 96)  # the fake honours 4:5: a real picture
    assert result.text.startswith("Generated for: a red bicycle")
    # Usage as Gemini reports it (fake: a token per word, 258 per reference image, 1120 per 1K image out).
    assert result.usage == {"prompt_tokens": 6 + 2 * 258, "output_tokens": 8 + 1120, "total_tokens": 522 + 1128,
                            "text_tokens": 8, "image_tokens": 1120, "thoughts_tokens": 0, "images": 1}
    assert result.seconds > 0 and result.warnings == []
    assert_key_never_shown(None, capture_all_logs, [repr(result)])


def test_no_aspect_ratio_means_no_image_config_and_model_override(make_generator, fake_gemini):
    make_generator().generate("a lamp", model=PRO)
    (request,) = fake_gemini.requests
    assert request.model == PRO
    assert request.aspect_ratio is None
    assert request.images == []


def test_same_client_is_reused_across_calls(make_generator, fake_gemini):
    generator = make_generator()
    client = generator._client
    generator.generate("one")
    generator.generate("two")
    assert generator._client is client
    assert [r.brief for r in fake_gemini.requests] == ["one", "two"]


def test_thought_parts_are_skipped(make_generator, fake_gemini):
    fake_gemini.enqueue(image_reply("Final image.", thought=True))
    result = make_generator().generate("a poster", model=PRO)
    assert len(result.images) == 1  # the draft "thought" image is not returned
    assert result.text == "Final image."


# ----------------------------------------------------------------------------- references
def test_big_reference_is_downscaled_before_sending(make_generator, fake_gemini):
    ref = prepare_reference(jpeg_bytes((3000, 2000)), mime="image/jpeg", sha256="c" * 64)
    make_generator().generate("make it autumn", [ref])
    ((mime, sent),) = fake_gemini.requests[0].images
    image = decode(sent)
    assert mime == "image/jpeg" and image.format == "JPEG"
    assert image.size == (1536, 1024)  # long side 1536, aspect kept


def test_prepare_reference_keeps_alpha_as_png_and_passes_small_images_through():
    small = png_bytes((300, 200))
    assert prepare_reference(small, sha256="d").data == small  # byte for byte

    transparent = prepare_reference(png_bytes((2000, 4000), (10, 20, 30, 0), mode="RGBA"))
    assert transparent.mime == "image/png"
    assert decode(transparent.data).size == (768, 1536)
    assert decode(transparent.data).mode == "RGBA"

    opaque_rgba = prepare_reference(png_bytes((1600, 100), (10, 20, 30, 255), mode="RGBA"))
    assert opaque_rgba.mime == "image/jpeg"  # no real transparency: JPEG is far smaller


def test_prepare_reference_applies_exif_rotation():
    # Orientation 6: stored landscape, shown portrait. The model must see it upright.
    ref = prepare_reference(jpeg_bytes((120, 60), orientation=6))
    image = decode(ref.data)
    assert image.size == (60, 120)
    assert ref.mime == "image/jpeg"


def test_prepare_reference_converts_formats_gemini_does_not_take():
    buffer = io.BytesIO()
    Image.new("P", (40, 40)).save(buffer, format="GIF")
    ref = prepare_reference(buffer.getvalue(), mime="image/gif")
    assert ref.mime == "image/jpeg" and decode(ref.data).format == "JPEG"


@pytest.mark.parametrize("data", [b"", b"not an image at all", png_bytes((50, 50))[:60]])
def test_prepare_reference_rejects_undecodable_data(data):
    with pytest.raises(InvalidImageError):
        prepare_reference(data, mime="image/png")


# ----------------------------------------------------------------------------- variations
def test_variations_run_concurrently_in_order(make_generator, fake_gemini):
    fake_gemini.always(lambda request: slow_reply(0.4))
    progress: list[tuple[int, int, str]] = []
    started = time.monotonic()
    result = make_generator().generate(
        "a teapot", variations=4,
        on_progress=lambda done, total: progress.append((done, total, threading.current_thread().name)))
    elapsed = time.monotonic() - started

    assert len(fake_gemini.requests) == 4
    assert len(result.images) == 4
    assert elapsed < 1.2, f"4 x 0.4 s requests took {elapsed:.2f} s: not concurrent"
    assert [(d, t) for d, t, _ in progress] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert {name for _, _, name in progress} == {threading.current_thread().name}  # UI-safe thread
    assert result.usage["images"] == 4 and result.usage["image_tokens"] == 4 * 1120  # summed over variations


def test_some_variations_fail_the_rest_are_returned_with_warnings(make_generator, fake_gemini, capture_all_logs):
    fake_gemini.enqueue(image_reply(), error_reply(400, "Unsupported image format.", "INVALID_ARGUMENT"),
                        image_reply())
    result = make_generator().generate("a chair", variations=3)
    assert len(result.images) == 2
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("1 of 3 variations failed")
    assert "Unsupported image format." in result.warnings[0]
    assert_key_never_shown(None, capture_all_logs, result.warnings)


def test_all_variations_failing_raises_the_typed_error(make_generator, fake_gemini, capture_all_logs):
    fake_gemini.always(finish_reply("IMAGE_SAFETY"))
    with pytest.raises(SafetyStopError) as caught:
        make_generator().generate("a chair", variations=3)
    assert len(fake_gemini.requests) == 3
    assert_key_never_shown(caught.value, capture_all_logs)


# ----------------------------------------------------------------------------- retries
def test_429_then_success_retries_with_backoff(make_generator, fake_gemini, sleeps):
    fake_gemini.enqueue(error_reply(429))
    result = make_generator().generate("a kite")
    assert len(result.images) == 1
    assert len(fake_gemini.requests) == 2
    assert sleeps.calls == [2.0]


def test_429_forever_gives_quota_error_after_max_retries(make_generator, fake_gemini, sleeps, capture_all_logs):
    fake_gemini.always(error_reply(429))
    with pytest.raises(QuotaExceededError) as caught:
        make_generator(max_retries=3).generate("a kite")
    assert len(fake_gemini.requests) == 4  # max_retries + 1: the SDK adds no retries of its own
    assert sleeps.calls == [2.0, 4.0, 8.0]  # exponential back-off
    message = str(caught.value)
    assert "retried 3 times" in message and "RESOURCE_EXHAUSTED" in message
    assert_key_never_shown(caught.value, capture_all_logs)


def test_server_retry_delay_hint_is_honoured(make_generator, fake_gemini, sleeps):
    fake_gemini.enqueue(error_reply(429, retry_delay_s=7))
    make_generator().generate("a kite")
    assert sleeps.calls == [7.0]


def test_503_then_success(make_generator, fake_gemini, sleeps):
    fake_gemini.enqueue(error_reply(503), error_reply(500))
    assert len(make_generator().generate("a boat").images) == 1
    assert sleeps.calls == [2.0, 4.0]


def test_500_forever_gives_server_error(make_generator, fake_gemini, sleeps, capture_all_logs):
    fake_gemini.always(error_reply(500))
    with pytest.raises(GenerationServerError) as caught:
        make_generator(max_retries=2).generate("a boat")
    assert len(fake_gemini.requests) == 3
    assert "retried 2 times" in str(caught.value) and "500" in str(caught.value)
    assert_key_never_shown(caught.value, capture_all_logs)


# ----------------------------------------------------------------------------- failures a person sees
ErrorCase = tuple[Callable[[FakeGemini], object], type[Exception], list[str]]
ERROR_CASES: dict[str, ErrorCase] = {
    "invalid key 400": (lambda f: f.always(error_reply(400)), InvalidApiKeyError,
                        ["API key not valid", "GEMINI_API_KEY", "secrets.toml"]),
    "unauthenticated 401": (lambda f: f.always(error_reply(401)), InvalidApiKeyError, ["401", "GEMINI_API_KEY"]),
    "permission 403": (lambda f: f.always(error_reply(403)), InvalidApiKeyError, ["403", "PERMISSION_DENIED"]),
    "other 4xx": (lambda f: f.always(error_reply(400, "Request payload size exceeds the limit.", "INVALID_ARGUMENT")),
                  GenerationError, ["Request payload size exceeds the limit."]),
    "unknown model 404": (lambda f: f.always(error_reply(404)), ModelGoneError,
                          ["no longer offered", "RAGKIT_GEMINI_MODEL", "gemini-nano-banana-2.1"]),
    "key echoed by server": (lambda f: f.always(error_reply(400, f"Bad key {API_KEY_PLACEHOLDER} for project",
                                                            "INVALID_ARGUMENT")),
                             GenerationError, ["Bad key *** for project"]),
    "prompt blocked": (lambda f: f.always(blocked_reply("PROHIBITED_CONTENT")), PromptBlockedError,
                       ["blocked", "PROHIBITED_CONTENT", "Rephrase"]),
    "text only": (lambda f: f.always(text_reply("I would rather describe a sunset in words.")),
                  NoImageReturnedError, ["I would rather describe a sunset in words."]),
    "no image, no text": (lambda f: f.always(finish_reply("NO_IMAGE")), NoImageReturnedError, ["NO_IMAGE"]),
    "not gemini json": (lambda f: f.always(Reply(200, "<html>Proxy login for {api_key}</html>")),
                        GenerationServerError, ["not Gemini JSON", "RAGKIT_GEMINI_BASE_URL"]),
    "empty answer": (lambda f: f.always(Reply(200, {})), NoImageReturnedError, ["returned no image"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_failures_become_typed_errors_without_the_key(case, make_generator, fake_gemini, sleeps, capture_all_logs):
    script, expected, fragments = ERROR_CASES[case]
    script(fake_gemini)
    with pytest.raises(expected) as caught:
        make_generator().generate("a lighthouse at dusk")
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert len(fake_gemini.requests) == 1 and sleeps.calls == []  # none of these is worth a retry
    assert_key_never_shown(caught.value, capture_all_logs)


@pytest.mark.parametrize("reason", ["SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT",
                                    "BLOCKLIST", "SPII", "RECITATION"])
def test_safety_finish_reasons(reason, make_generator, fake_gemini, capture_all_logs):
    fake_gemini.always(finish_reply(reason))
    with pytest.raises(SafetyStopError) as caught:
        make_generator().generate("a lighthouse at dusk")
    assert f"finish reason: {reason}" in str(caught.value)
    assert_key_never_shown(caught.value, capture_all_logs)


def test_timeout(make_generator, fake_gemini, sleeps, capture_all_logs):
    fake_gemini.always(slow_reply(5))
    started = time.monotonic()
    with pytest.raises(GenerationTimeoutError) as caught:
        make_generator(timeout_s=0.3).generate("a slow snail")
    assert time.monotonic() - started < 2.5
    assert "0.3 s" in str(caught.value)
    assert_key_never_shown(caught.value, capture_all_logs)


def test_connection_refused(sleeps, capture_all_logs):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with ImageGenerator(KEY, base_url=url, sleep=sleeps) as generator:
        with pytest.raises(GenerationServerError) as caught:
            generator.generate("anything")
    assert "Cannot reach the Gemini endpoint" in str(caught.value) and url in str(caught.value)
    assert_key_never_shown(caught.value, capture_all_logs)


def test_missing_key_from_settings(capture_all_logs):
    with pytest.raises(MissingApiKeyError) as caught:
        ImageGenerator.from_settings(Settings(gemini_api_key=""))
    message = str(caught.value)
    assert "GEMINI_API_KEY" in message and ".streamlit/secrets.toml" in message
    with pytest.raises(MissingApiKeyError):
        ImageGenerator("   ")


def test_from_settings_uses_model_and_base_url(fake_gemini):
    settings = Settings(gemini_api_key=KEY, gemini_model=PRO, gemini_base_url=fake_gemini.url)
    with ImageGenerator.from_settings(settings) as generator:
        generator.generate("a mug")
    assert fake_gemini.requests[0].model == PRO


# ----------------------------------------------------------------------------- checked before the network
def test_too_many_references_is_refused_before_any_request(make_generator, fake_gemini):
    refs = [ReferenceImage(png_bytes((8, 8)), "image/png")] * 4
    with pytest.raises(TooManyReferencesError) as caught:
        make_generator().generate("a collage", refs, model=LITE)
    assert "Nano Banana 2 Lite" in str(caught.value) and "at most 3" in str(caught.value)
    with pytest.raises(TooManyReferencesError, match="Nano Banana Pro takes at most 14"):
        make_generator().generate("a collage", refs * 4, model=PRO)
    assert fake_gemini.requests == []
    make_generator().generate("a collage", refs * 3 + refs[:2], model=PRO)  # 14 is fine
    assert len(fake_gemini.requests[0].images) == 14


@pytest.mark.parametrize("kwargs", [{"brief": "   "}, {"brief": "x", "variations": 9},
                                    {"brief": "x", "aspect_ratio": "7:3"}])
def test_invalid_requests_fail_fast(kwargs, make_generator, fake_gemini):
    brief = kwargs.pop("brief")
    with pytest.raises(GenerationError):
        make_generator().generate(brief, **kwargs)
    assert fake_gemini.requests == []


# ----------------------------------------------------------------------------- models and repr
def test_models_and_unknown_model_default():
    assert model_info(FLASH).label == "Nano Banana 2.1" and model_info(FLASH).max_references == 14
    assert model_info(PRO).label == "Nano Banana Pro" and model_info(PRO).max_references == 14
    assert set(MODELS) == {FLASH, PRO, LITE, "gemini-3.1-flash-image"}
    for info in MODELS.values():
        assert {"1:1", "16:9", "9:16", "21:9", "4:5"} <= set(info.aspect_ratios)
    custom = model_info("my-tuned-image-model")
    assert custom.id == custom.label == "my-tuned-image-model"
    assert custom.max_references == 3  # conservative


def test_repr_never_shows_the_key(make_generator):
    generator = make_generator()
    assert KEY not in repr(generator) and KEY not in str(generator)
    assert KEY not in repr(vars(generator).get("_key"))
