"""Describe in the app (ragkit/ui/captions.py on the Library page) through streamlit's AppTest: the real
app.py, real Milvus Lite, the tiny model, the real google-genai client against devtools/fake_gemini.py."""
from __future__ import annotations

import pytest

from ragkit.ingest.pipeline import Upload
from tests.e2e_support import all_text, app_env, new_app, run, seed, shown, texts, with_key  # noqa: F401 - fixtures
from devtools.fake_gemini import caption_reply
from tests.images_factory import jpeg_bytes



def finish_describe(at):
    """Wait for the background Describe, then draw the page again (the browser polls every second)."""
    from ragkit.ui import captions, state
    found = captions.current(state.library())
    assert found is not None and found.job.wait(60)
    return run(at)


def test_describe_all_then_accept_a_suggested_tag_in_the_details(with_key, seed):
    added = seed([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in range(3)]).added
    with_key.always(caption_reply("A red kite above a windy beach.", ["kite", "beach"]))
    at = run(new_app())
    at.button(key="library.describe-all").click()
    finish_describe(run(at))

    assert any("Described 3 of 3 images" in s and "0 failed" in s for s in texts(at.success)), texts(at.success)
    assert len(with_key.requests) == 3 and all(r.wants_json and r.images for r in with_key.requests)

    sha = added[0][1].sha256
    at.button(key=f"library.open.{sha}").click()
    run(at)
    assert "A red kite above a windy beach." in shown(all_text(at))
    [pills] = [g for g in at.get("button_group") if g.key == f"library.suggested.{sha}"]
    assert at.button(key="library.accept-tags").disabled  # nothing picked yet
    pills.set_value(["kite"])
    run(at)
    at.button(key="library.accept-tags").click()
    run(at)
    from ragkit.ui import state
    asset = state.library().get(sha)
    assert asset.tags == ("kite",) and asset.details["suggested_tags"] == ["beach"]
    assert at.multiselect(key=f"library.edit-tags.{sha}").value == ["kite"]  # the tag editor shows it

    with_key.always(caption_reply("A blue kite over the dunes.", ["dunes"]))
    at.button(key="library.describe-one").click()  # "Describe again", for this image only
    finish_describe(run(at))
    assert "A blue kite over the dunes." in shown(all_text(at)) and len(with_key.requests) == 4
    assert state.library().get(sha).tags == ("kite",)  # the new suggestion waits too


def test_without_a_key_describe_says_how_to_set_one(app_env, seed):
    [(_, asset)] = seed([Upload("shot.jpg", jpeg_bytes(1))]).added
    at = run(new_app())
    assert at.button(key="library.describe-all").disabled
    assert at.checkbox(key="library.upload-describe").disabled
    assert "GEMINI_API_KEY" in shown(all_text(at))
    at.button(key=f"library.open.{asset.sha256}").click()
    run(at)
    assert at.button(key="library.describe-one").disabled
    assert "No caption yet." in texts(at.caption)


def test_an_upload_with_describe_ticked_captions_the_new_images(with_key):
    at = run(new_app())
    at.file_uploader[0].set_value([(f"new-{i}.jpg", jpeg_bytes(10 + i), "image/jpeg") for i in range(2)])
    run(at)
    at.checkbox(key="library.upload-describe").check()
    at.button(key="library.add").click()
    run(at)
    from ragkit.ui import uploads
    pending = uploads.get()
    assert pending is None or pending.job.wait(60)
    finish_describe(run(at))
    assert any("Described 2 of 2 images" in s for s in texts(at.success)), texts(at.success)
    from ragkit.ui import state
    assert all(a.caption for a in state.library().page(0, 10).assets)


HOSTILE_TAGS = ["![s](http://127.0.0.1:9/sugg.png)", "$q^2$", ":material/home: home", "[click](http://x.io)"]


def test_suggested_tags_are_shown_as_text_never_as_an_image_a_formula_or_an_icon(with_key, seed):
    from ragkit.tags import normalise_tag
    from ragkit.ui.markdown import md_escape
    [(_, asset)] = seed([Upload("shot.jpg", jpeg_bytes(1))]).added
    with_key.always(caption_reply("A kite.", HOSTILE_TAGS))
    at = run(new_app())
    at.button(key="library.describe-all").click()
    finish_describe(run(at))
    at.button(key=f"library.open.{asset.sha256}").click()
    run(at)
    [pills] = [g for g in at.get("button_group") if g.key == f"library.suggested.{asset.sha256}"]
    labels = [option.content for option in pills.proto.options]
    assert labels == [md_escape(normalise_tag(tag)) for tag in HOSTILE_TAGS]  # was: the raw Markdown
    for label in labels:
        assert "![" not in label and "](" not in label and ":material/" not in label
        assert "$" not in label.replace("\\$", "")
def test_a_gone_caption_model_shows_one_line_and_switches_in_one_click(with_key, seed, monkeypatch):
    monkeypatch.setenv("RAGKIT_CAPTION_MODEL", "gemini-2.5-flash")  # shut down on 2026-06-17
    seed([Upload("shot.jpg", jpeg_bytes(5))])
    at = run(new_app())
    errors = [shown(e) for e in texts(at.error) if "Random weights" not in e]
    assert len(errors) == 1 and "gemini-2.5-flash is no longer offered" in errors[0]
    assert at.button(key="library.describe-all").disabled
    at.button(key="captions.switch-model").click()
    run(at)
    assert not [e for e in texts(at.error) if "Random weights" not in e]
    assert not at.button(key="library.describe-all").disabled
    at.button(key="library.describe-all").click()
    finish_describe(run(at))
    assert [r.model for r in with_key.requests] == ["gemini-3.5-flash-lite"]
