"""Editing a result in a conversation (ragkit.studio.edit): the real google-genai chats against the local
Gemini server, which signs the 3.x image models' answers and refuses a follow-up that drops a signature,
as the API does; saving a version with its parent; lineage; `generate --edit`."""
from __future__ import annotations

import json

import pytest
from google.genai import types

from ragkit.cli import main as cli
from ragkit.errors import GenerationError, NoImageReturnedError
from ragkit.ingest.pipeline import Upload
from ragkit.studio import ImageGenerator
from ragkit.studio.edit import (EDIT_KEY, lineage, lineage_lines, save_version, send_edit, start_from_asset,
                                start_from_image)
from ragkit.studio.generation import GeneratedImage
from devtools.fake_gemini import make_png, text_reply
from tests.images_factory import jpeg_bytes

KEY = "edit-test-key-93b7c1d0e2"
NB2 = "gemini-3.1-flash-image"


@pytest.fixture
def studio_env(ragkit_env, fake_gemini) -> dict[str, str]:
    return {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake_gemini.url}


@pytest.fixture
def lib(library):
    return library  # conftest's: a fresh library in tmp_path


@pytest.fixture
def generator(fake_gemini):
    made = ImageGenerator(KEY, base_url=fake_gemini.url, sleep=lambda s: None)
    yield made
    made.close()


def product(lib) -> str:
    return lib.ingest_uploads([Upload("sneaker.jpg", jpeg_bytes(41))]).added[0][1].sha256


def model_parts(request) -> list[dict]:
    return [part for role, parts in request.turns if role == "model" for part in parts]


def test_a_conversation_carries_the_thought_signatures_from_turn_to_turn(lib, generator, fake_gemini):
    sha = product(lib)
    session = start_from_asset(lib, sha, NB2)
    first = send_edit(lib, generator, session, "make the background blue")
    second = send_edit(lib, generator, session, "now add a soft shadow")

    assert len(session.versions) == 3 and first.sha256 != second.sha256 != session.original.sha256
    turn1, turn2 = fake_gemini.requests
    assert turn1.model == turn2.model == NB2
    # The first turn sends the picture and the instruction; the second the whole conversation back.
    assert [role for role, _ in turn1.turns] == ["user"] and len(turn1.images) == 1
    assert [role for role, _ in turn2.turns] == ["user", "model", "user"]
    assert turn2.texts[-1] == "now add a soft shadow"
    echoed = [part for part in model_parts(turn2) if "thoughtSignature" in part]
    assert len(echoed) == 2  # the text part and the image part the server signed
    assert session.signatures() == 4  # two per answer, kept for the next turn
    assert first.cost_usd is not None or first.usage["images"] == 1


def test_a_follow_up_without_the_signatures_is_refused_like_the_api(lib, generator, fake_gemini):
    session = start_from_asset(lib, product(lib), NB2)
    send_edit(lib, generator, session, "make the background blue")
    # A client that rebuilds the model's turn from its image and text loses the signatures.
    session.history = [content if content.role == "user" else types.Content(role="model", parts=[
        types.Part(text=p.text) if p.text else types.Part(inline_data=p.inline_data) for p in content.parts])
        for content in session.history]
    with pytest.raises(GenerationError) as refused:
        send_edit(lib, generator, session, "now add a soft shadow")
    assert "400 INVALID_ARGUMENT" in str(refused.value) and "thought_signature" in str(refused.value)
    assert KEY not in str(refused.value)
    assert len(session.versions) == 2  # the failed turn added nothing


def test_a_turn_without_an_image_keeps_the_conversation_as_it_was(lib, generator, fake_gemini):
    session = start_from_asset(lib, product(lib), NB2)
    send_edit(lib, generator, session, "make the background blue")
    before = list(session.history)
    fake_gemini.enqueue(text_reply("I would rather not."))
    with pytest.raises(NoImageReturnedError):
        send_edit(lib, generator, session, "draw something else")
    assert session.history == before and len(session.versions) == 2
    send_edit(lib, generator, session, "add a shadow")  # the next turn still carries valid signatures
    assert len(session.versions) == 3
    with pytest.raises(GenerationError, match="Say what to change"):
        send_edit(lib, generator, session, "   ")


def test_saved_versions_point_to_their_parent_and_the_lineage_goes_back_to_the_original(lib, generator):
    original = product(lib)
    session = start_from_asset(lib, original, NB2)
    send_edit(lib, generator, session, "make the background blue")
    send_edit(lib, generator, session, "add a soft shadow")
    second = save_version(lib, session, 2, tags=["edit"])  # version 1 stays unsaved

    record = lib.get(second.sha256).details[EDIT_KEY]
    assert record["parent"] == session.versions[1].sha256 and record["parent_saved"] is False
    assert record["instruction"] == "add a soft shadow" and record["model"] == NB2
    assert record["origin"] == original
    assert lib.get(second.sha256).reference_ids == (session.versions[1].sha256,)
    chain = lineage(lib, lib.get(second.sha256))
    assert [step.sha256 for step in chain] == [second.sha256, session.versions[1].sha256, original]
    assert [step.in_library for step in chain] == [True, False, True]
    lines = lineage_lines(chain)
    assert "edited from an unsaved version (not in the library) by “add a soft shadow”" in lines[0]
    assert "edited from sneaker.jpg by “make the background blue”" in lines[1]

    first = save_version(lib, session, 1)  # saved later: the chain now finds it in the library
    assert [s.in_library for s in lineage(lib, lib.get(second.sha256))] == [True, True, True]
    assert lib.get(first.sha256).details[EDIT_KEY]["parent"] == original


def test_an_unsaved_studio_result_can_be_edited_and_a_damaged_record_gives_no_lineage(lib, generator):
    image = GeneratedImage(make_png("a red bicycle"), "image/png")
    session = start_from_image(image, NB2, prompt="a red bicycle")
    send_edit(lib, generator, session, "make it green")
    saved = save_version(lib, session, 1)
    chain = lineage(lib, lib.get(saved.sha256))
    assert chain[-1].label == "a Studio result of “a red bicycle”" and not chain[-1].in_library
    broken = lib.get(saved.sha256)
    object.__setattr__(broken, "details", {EDIT_KEY: {"parent": 42}})
    assert lineage(lib, broken) == []


def test_cli_generate_edit_saves_the_new_version_and_reports_its_parent(lib, fake_gemini, studio_env, tmp_path,
                                                                        monkeypatch, capsys):
    original = product(lib)
    for name, value in studio_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("ragkit.cli.common.open_library", lambda settings: lib)
    code = cli.main(["generate", "--edit", original, "make the background blue", "--model", NB2, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["parent"]["sha256"] == original and report["instruction"] == "make the background blue"
    new = lib.get(report["asset"]["sha256"])
    assert new.details[EDIT_KEY]["parent"] == original and new.prompt == "make the background blue"
    assert (tmp_path / report["asset"]["path"]).is_file() and KEY not in out + err

    code = cli.main(["generate", "--edit", "f" * 64, "anything", "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
