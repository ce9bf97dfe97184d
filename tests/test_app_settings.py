"""The sidebar's Settings through streamlit's AppTest: re-index the library with another model from the
app, watch its progress while the pages keep working, and see the app switch to the new model."""
from __future__ import annotations

import threading

import pytest

from ragkit.ingest.embedder import make_random_checkpoint
from ragkit.ingest.pipeline import Upload
from tests.e2e_support import all_text, app_env, markdown_sources, new_app, run, seed, shown, texts  # noqa: F401 - fixtures
from tests.images_factory import jpeg_bytes

MODEL_B = "ragkit-tiny-b"


@pytest.fixture(scope="module")
def checkpoint_b(tmp_path_factory):
    return make_random_checkpoint(MODEL_B, tmp_path_factory.mktemp("model-b") / "ragkit-tiny-b.pt")


@pytest.fixture
def held_reindex(monkeypatch):
    """The reindex reports 2 of 6 done, then waits for `release.set()` before doing the real work."""
    from ragkit.ui import settings as ui_settings
    release = threading.Event()
    real = ui_settings.reindex

    def reindex_when_released(library, model, pretrained, *, on_progress=None, **kwargs):
        on_progress(2, 6)
        assert release.wait(60), "the test never released the reindex"
        return real(library, model, pretrained, on_progress=on_progress, settle_seconds=0.1, **kwargs)

    monkeypatch.setattr(ui_settings, "reindex", reindex_when_released)
    yield release
    release.set()


def test_reindex_from_the_sidebar_while_the_pages_keep_working(app_env, seed, checkpoint_b, held_reindex):
    from ragkit.ui import settings as ui_settings
    from ragkit.ui import state
    seed([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in range(6)])
    at = run(new_app())
    assert "ragkit-tiny/file:ragkit-tiny.pt" in shown(all_text(at))
    at.sidebar.text_input(key="settings.model").set_value(MODEL_B)
    at.sidebar.text_input(key="settings.weights").set_value(str(checkpoint_b))
    at.sidebar.button(key="settings.reindex-button").click()
    run(at)
    assert any("2 of 6" in p.proto.text for p in at.sidebar.get("progress")), "the progress shows"
    at.switch_page(state.SEARCH_PAGE)  # searching goes on with the current model meanwhile
    run(at)
    assert at.sidebar.metric[0].value == "6"

    held_reindex.set()
    job = ui_settings.job(state.library())
    assert job is not None and job.wait(120) and job.outcome().switched
    run(at)
    text = shown(all_text(at))
    assert "The library now uses `ragkit-tiny-b/file:ragkit-tiny-b.pt`" in text
    assert "ragkit-tiny-b · ragkit-tiny-b.pt" in text  # the sidebar's model line: the app switched
    # The environment still says A: the hint names it, without Markdown escapes in its code spans, and
    # says what to do (issue 21: "ViT\-B\-32\/file\:…" and no way out).
    hint = next(c for c in texts(at.sidebar.caption) if "RAGKIT_CLIP_PRETRAINED name" in c)
    assert "`ragkit-tiny/file:ragkit-tiny.pt`" in hint and "\\" not in hint, hint
    assert "re-index in Settings" in hint and "`RAGKIT_CLIP_MODEL=ragkit-tiny-b`" in hint, hint
    assert state.library().model_id.startswith("ragkit-tiny-b") and state.library().count() == 6
    at.sidebar.button(key="settings.dismiss").click()
    run(at)
    assert "The library now uses" not in shown(all_text(at))
    assert [c.model_id for c in state.library().store.other_collections()] == ["ragkit-tiny/file:ragkit-tiny.pt"]
    at.sidebar.button(key="settings.drop-old").click()  # the old index, kept until now
    run(at)
    assert state.library().store.other_collections() == [] and state.library().count() == 6


KEY = "sk-settings-apptest-7c41e0"


def test_settings_without_a_key_say_so_and_show_the_defaults_and_the_trash_days(app_env):
    from ragkit.config import DEFAULT_CAPTION_MODEL
    from ragkit.studio.models import DEFAULT_MODEL
    at = run(new_app())
    text = shown(all_text(at))
    assert "No Gemini API key is set" in text and "Check the key" not in text
    assert "deleted images stay in the trash for 30 days" in text.lower()
    assert f"RAGKIT_GEMINI_MODEL={DEFAULT_MODEL}" in text and f"RAGKIT_CAPTION_MODEL={DEFAULT_CAPTION_MODEL}" in text


def test_settings_show_the_key_s_source_never_the_key_a_check_and_the_model_defaults(app_env, fake_gemini,
                                                                                     monkeypatch):
    from ragkit.studio.models import DEFAULT_MODEL, model_info
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("RAGKIT_GEMINI_BASE_URL", fake_gemini.url)
    monkeypatch.setenv("RAGKIT_TRASH_DAYS", "7")
    at = run(new_app())
    text = shown(all_text(at))
    assert "A Gemini API key is set, from the environment (GEMINI_API_KEY)" in text
    assert "for 7 days" in text and model_info(DEFAULT_MODEL).label in text
    assert not fake_gemini.requests, "Gemini is asked only when the person presses Check"
    at.sidebar.button(key="settings.check-key").click()
    run(at)
    assert "The key works" in shown(all_text(at))
    assert "offered" in shown(all_text(at))

    fake_gemini.retire(DEFAULT_MODEL)  # shut down since: the next Check asks again and says so
    at.sidebar.button(key="settings.check-key").click()
    run(at)
    notes = shown("\n".join(texts(at.sidebar.caption)))
    assert f"The model {DEFAULT_MODEL} is no longer offered" in notes
    everything = "\n".join(markdown_sources(at)) + all_text(at)
    assert KEY not in everything and KEY[:8] not in everything and KEY[-6:] not in everything


def test_a_key_from_the_secrets_file_is_named_by_its_file(app_env, tmp_path):
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(f'GOOGLE_API_KEY = "{KEY}"\n')
    at = run(new_app())
    text = shown(all_text(at))
    assert f"from {tmp_path / '.streamlit' / 'secrets.toml'} (GOOGLE_API_KEY)" in text
    assert KEY not in "\n".join(markdown_sources(at))
