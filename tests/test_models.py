"""Issue 17 §1-3, §7: today's models, live discovery, gone models and output sizes, through the real
google-genai client against the local server that answers like today's API (ListModels, 404 for shut-down
ids in the API's words, 400 for a size the model doesn't offer)."""
from __future__ import annotations

import json

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from ragkit.cli import main as cli
from ragkit.config import DEFAULT_CAPTION_MODEL, Settings
from ragkit.errors import GenerationError, ModelGoneError
from ragkit.studio import ImageGenerator, discovery, generate_from, save_generated_image
from ragkit.studio.captions import Captioner
from ragkit.studio.cost import CostLedger
from ragkit.studio.generation import ReferenceImage
from ragkit.studio.models import DEFAULT_MODEL, MODELS, RETIRED, check_output, model_info
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from tests.conftest import free_port
from tests.images_factory import jpeg_bytes

KEY = "models-test-key-7c1e55"


@pytest.fixture
def studio_env(ragkit_env, fake_gemini) -> dict[str, str]:
    return {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake_gemini.url}


def settings_for(env: dict[str, str], tmp_path) -> Settings:
    return Settings.load(env=env, cwd=tmp_path, secrets_files=[])


@pytest.fixture
def lib(tmp_path, studio_env, tiny_embedder):
    library = Library.open(settings_for(studio_env, tmp_path), embedder=tiny_embedder)
    yield library
    library.close()


def in_process(monkeypatch, env: dict[str, str], tmp_path, library=None) -> None:
    for name in [n for n in __import__("os").environ if n.startswith(("RAGKIT_", "GEMINI_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    if library is not None:
        monkeypatch.setattr("ragkit.cli.common.open_library", lambda settings: library)


# ----------------------------------------------------------------------------- the defaults work today
def test_the_defaults_are_models_the_api_offers_today(fake_gemini, studio_env, tmp_path):
    catalogue = discovery.discover(settings_for(studio_env, tmp_path))
    assert catalogue.live and DEFAULT_MODEL in catalogue.image and DEFAULT_CAPTION_MODEL in catalogue.text
    assert not set(RETIRED) & set(MODELS), "a shut-down id in the table of current models"
    assert "gemini-3.8-flash-tts" not in catalogue.text and "gemini-embedding-001" not in catalogue.text


def test_generate_with_no_model_set_works(lib, fake_gemini, studio_env, tmp_path, monkeypatch, capsys):
    env = {k: v for k, v in studio_env.items() if k != "RAGKIT_GEMINI_MODEL"}
    in_process(monkeypatch, env, tmp_path, lib)
    code = cli.main(["generate", "a lamp on a desk", "--out", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert fake_gemini.requests[-1].model == DEFAULT_MODEL == json.loads(out)["model"]


def test_describe_with_no_model_set_works(fake_gemini, studio_env, tmp_path):
    with Captioner.from_settings(settings_for(studio_env, tmp_path)) as captioner:
        description = captioner.describe(ReferenceImage(jpeg_bytes(3), "image/jpeg"))
    assert description.caption and description.model == DEFAULT_CAPTION_MODEL
    assert fake_gemini.requests[-1].model == DEFAULT_CAPTION_MODEL


# ----------------------------------------------------------------------------- a model that is gone
def test_a_shut_down_model_answers_404_in_the_api_s_words(fake_gemini):
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake_gemini.url, api_version="v1beta"))
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.5-flash-image", contents="a lamp")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    assert caught.value.message == ("models/gemini-2.5-flash-image is not found for API version v1beta, or is not "
                                    "supported for generateContent. Call ListModels to see the list of available "
                                    "models and their supported methods.")


def test_a_404_becomes_one_line_naming_the_live_replacements(fake_gemini):
    with ImageGenerator(KEY, base_url=fake_gemini.url, model="gemini-3-pro-image-preview") as generator:
        with pytest.raises(ModelGoneError) as caught:
            generator.generate("a lamp")
    message = str(caught.value)
    assert "gemini-3-pro-image-preview is no longer offered" in message and "2026-06-25" in message
    assert "RAGKIT_GEMINI_MODEL=gemini-3-pro-image" in message  # Google's named replacement, live
    assert "gemini-nano-banana-2.1" in message and "\n" not in message and KEY not in message


def test_the_cli_exits_non_zero_with_that_line_before_anything_is_sent(fake_gemini, studio_env, tmp_path, monkeypatch,
                                                                       capsys):
    in_process(monkeypatch, {**studio_env, "RAGKIT_GEMINI_MODEL": "gemini-2.5-flash-image"}, tmp_path)
    code = cli.main(["generate", "a lamp", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0 and fake_gemini.requests == []  # ListModels said so: no paid request
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: The model gemini-2.5-flash-image is no longer offered")
    assert "RAGKIT_GEMINI_MODEL=gemini-nano-banana-2.1" in lines[0]


def test_a_caption_model_that_is_gone_names_live_text_models(fake_gemini, studio_env, tmp_path):
    settings = settings_for({**studio_env, "RAGKIT_CAPTION_MODEL": "gemini-2.5-flash"}, tmp_path)
    with Captioner.from_settings(settings, max_retries=0) as captioner:
        with pytest.raises(ModelGoneError) as caught:
            captioner.describe(ReferenceImage(jpeg_bytes(4), "image/jpeg"))
    assert "RAGKIT_CAPTION_MODEL=gemini-3.5-flash-lite" in str(caught.value)


def test_models_command_lists_what_the_key_can_use_and_what_is_gone(fake_gemini, studio_env, tmp_path, monkeypatch,
                                                                    capsys):
    fake_gemini.retire("gemini-3-pro-image")
    in_process(monkeypatch, {**studio_env, "RAGKIT_GEMINI_MODEL": "gemini-3-pro-image"}, tmp_path)
    code = cli.main(["models", "--json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 1 and report["live"] is True
    image_ids = [m["id"] for m in report["image_models"]]
    assert image_ids[0] == DEFAULT_MODEL and "gemini-3-pro-image" not in image_ids
    gone = {c["setting"]: c for c in report["configured"]}
    assert gone["RAGKIT_GEMINI_MODEL"]["gone"] and gone["RAGKIT_GEMINI_MODEL"]["switch_to"] == DEFAULT_MODEL
    assert not gone["RAGKIT_CAPTION_MODEL"]["gone"]
    assert report["defaults"] == {"image": DEFAULT_MODEL, "caption": DEFAULT_CAPTION_MODEL}
    assert "no longer offered" in err
    # ListModels was paged (the fake gives at most 4 a page) and every page was read.
    assert len(image_ids) == 3 and len(report["text_models"]) == 4


# ----------------------------------------------------------------------------- new and unknown models
def test_an_unknown_new_model_is_usable_with_conservative_limits_and_no_price(lib, fake_gemini, studio_env, tmp_path,
                                                                             monkeypatch, capsys):
    fake_gemini.offer("gemini-4-flash-image", sizes=("1K", "2K"))
    in_process(monkeypatch, studio_env, tmp_path, lib)
    assert cli.main(["models", "--json"]) == 0
    entry = next(m for m in json.loads(capsys.readouterr().out)["image_models"] if m["id"] == "gemini-4-flash-image")
    assert entry["known"] is False and entry["max_references"] == 3 and entry["sizes"] == ["1K"]
    assert entry["price_per_image"] == {"1K": None}  # "price unknown", never $0
    assert cli.main(["models"]) == 0 and "price unknown" in capsys.readouterr().out

    generation = generate_from(lib, ImageGenerator(KEY, base_url=fake_gemini.url), "a lamp", [],
                               model="gemini-4-flash-image")
    assert generation.images and generation.details["cost_usd"] is None
    assert fake_gemini.requests[-1].model == "gemini-4-flash-image"


def test_offline_the_known_table_stands_in_and_says_so(ragkit_env, tmp_path, monkeypatch, capsys):
    env = {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    discovery.forget()
    catalogue = discovery.discover(settings_for(env, tmp_path))
    assert not catalogue.live and catalogue.image == tuple(MODELS)
    assert "known table" in catalogue.note and "2026-12-07" in catalogue.note
    in_process(monkeypatch, env, tmp_path)
    assert cli.main(["models"]) == 0
    out, err = capsys.readouterr()
    assert "known table" in err and DEFAULT_MODEL in out
    # Offline, an id the table says was shut down is still reported gone.
    in_process(monkeypatch, {**env, "RAGKIT_GEMINI_MODEL": "gemini-2.5-flash-image"}, tmp_path)
    assert cli.main(["models"]) == 1


def test_the_list_is_cached_per_key_for_about_an_hour(fake_gemini, studio_env, tmp_path):
    settings = settings_for(studio_env, tmp_path)
    discovery.discover(settings)
    calls = fake_gemini.list_calls
    assert discovery.discover(settings).live and fake_gemini.list_calls == calls  # no new request
    other = settings_for({**studio_env, "GEMINI_API_KEY": "another-key"}, tmp_path)
    discovery.discover(other)
    assert fake_gemini.list_calls > calls
    assert all(KEY not in key for key in discovery._cache)  # hashed, never the key itself


# ----------------------------------------------------------------------------- output size
def test_size_reaches_the_request_the_ledger_and_the_provenance(lib, fake_gemini):
    reference = lib.ingest_uploads([Upload("p.jpg", jpeg_bytes(8))]).added[0][1]
    generator = ImageGenerator(KEY, base_url=fake_gemini.url)
    generation = generate_from(lib, generator, "a lamp", [reference.sha256], model="gemini-3.1-flash-image",
                               aspect_ratio="8:1", size="512")
    request = fake_gemini.requests[-1]
    assert (request.image_size, request.aspect_ratio) == ("512", "8:1")
    entry = json.loads(CostLedger(lib.settings.data_dir).path.read_text().splitlines()[-1])
    assert entry["size"] == "512" and entry["model"] == "gemini-3.1-flash-image"
    saved = save_generated_image(lib, generation, generation.images[0])
    assert lib.get(saved.sha256).details["size"] == "512"
    # A 4K image is billed more tokens than a 512 one: the ledger's cost follows the size.
    big = generate_from(lib, generator, "a lamp", [], model="gemini-3.1-flash-image", size="4K")
    assert big.details["cost_usd"] > generation.details["cost_usd"]


def test_a_size_or_ratio_the_model_lacks_is_refused_before_sending(fake_gemini):
    with ImageGenerator(KEY, base_url=fake_gemini.url) as generator:
        with pytest.raises(GenerationError, match="does not offer size 512; choose one of 1K, 2K, 4K"):
            generator.generate("a lamp", size="512")  # Nano Banana 2.1 has no 512
        with pytest.raises(GenerationError, match="does not offer aspect ratio 8:1"):
            generator.generate("a lamp", model="gemini-3-pro-image", aspect_ratio="8:1")
    assert fake_gemini.requests == []
    assert check_output(model_info("gemini-3.1-flash-image"), "8:1", "512") is None


def test_the_server_refuses_a_size_the_model_does_not_offer(fake_gemini):
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake_gemini.url, api_version="v1beta"))
    config = types.GenerateContentConfig(image_config=types.ImageConfig(image_size="4K"))
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="gemini-3.1-flash-lite-image", contents="a lamp", config=config)
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert fake_gemini.requests[-1].image_size == "4K"


def test_batch_size_is_checked_before_any_job_exists(lib, fake_gemini, studio_env, tmp_path, monkeypatch, capsys):
    product = lib.ingest_uploads([Upload("p.jpg", jpeg_bytes(9))]).added[0][1].sha256
    in_process(monkeypatch, studio_env, tmp_path, lib)
    code = cli.main(["batch", "--brief", "on a beach", "--ref-each", product, "--size", "512"])
    assert code != 0 and "does not offer size 512" in capsys.readouterr().err
    assert not (lib.settings.data_dir / "jobs").exists() or not any((lib.settings.data_dir / "jobs").iterdir())
    code = cli.main(["batch", "--brief", "on a beach", "--ref-each", product, "--size", "2k", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r.image_size for r in fake_gemini.requests] == ["2K"]


def test_a_listing_that_fails_falls_back_to_the_table_and_generation_still_works(fake_gemini, studio_env, tmp_path):
    fake_gemini.list_models_down = True  # ListModels answers 503
    catalogue = discovery.discover(settings_for(studio_env, tmp_path))
    assert not catalogue.live and "ServerError" in catalogue.note and "known table" in catalogue.note
    discovery.require_offered(settings_for(studio_env, tmp_path), DEFAULT_MODEL)  # the table has it: no error
    with ImageGenerator(KEY, base_url=fake_gemini.url) as generator:
        assert generator.generate("a lamp").images
