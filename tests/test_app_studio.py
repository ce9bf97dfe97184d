"""The Studio page through streamlit's AppTest: the real app.py, real Milvus Lite, the tiny model,
and the real google-genai client talking to the local Gemini-format server (devtools/fake_gemini.py)."""
from __future__ import annotations

import pytest

from ragkit.ingest.pipeline import Upload
from ragkit.studio import file_name_for, too_many_references
from ragkit.ui import state
from ragkit.ui.tray import TRAY_KEY
from tests.conftest import GEMINI_TEST_KEY
from tests.e2e_support import all_text, app_env, new_app, run, seed, shown, texts, with_key  # noqa: F401 - fixtures
from devtools.fake_gemini import blocked_reply, error_reply, image_reply, make_png
from tests.images_factory import jpeg_bytes

KEY = GEMINI_TEST_KEY
STUDIO = "app_pages/studio.py"
LIBRARY = "app_pages/library.py"
BRIEF = "A model wearing these sneakers on a sunny beach"
# The Studio page's widget keys (app_pages/studio.py).
K_BRIEF, K_MODEL, K_ASPECT = "studio.brief", "studio.model", "studio.aspect"
K_VARIATIONS, K_SAVE_TAGS = "studio.variations", "studio.save-tags"
LITE = "gemini-3.1-flash-lite-image"


@pytest.fixture
def refs(seed):
    """Four library images; their ids in upload order."""
    report = seed([Upload(f"product-{n}.jpg", jpeg_bytes(i)) for n, i in enumerate(range(200, 204))])
    return [asset.sha256 for _, asset in report.added]


def studio(tray: list[str] = ()):
    at = new_app()
    at.session_state[TRAY_KEY] = list(tray)
    run(at)
    at.switch_page(STUDIO)
    return run(at)


def page_text(at) -> str:
    """Everything a person (or a screen reader) could read: every element's proto, as text."""
    return "\n".join(str(node.proto) for node in at if getattr(node, "proto", None) is not None)


def results(at):
    return [b for b in at.button if b.key and b.key.startswith(("studio.save.", "studio.open."))]


def test_without_a_key_the_page_explains_and_disables_generate(app_env, refs):
    at = studio(refs[:2])
    assert texts(at.title) == ["Studio"]
    text = all_text(at)
    assert "Add a Gemini API key" in text and "aistudio.google.com/apikey" in text
    assert any("GEMINI_API_KEY" in c for c in texts(at.code))
    assert "python -m devtools.fake_gemini" in text
    generate = at.button(key="studio.generate")
    assert generate.disabled and "API key" in generate.help
    # The rest of the page works: presets fill the brief, the tray shows its two references.
    at.button(key="studio.preset.2").click()
    run(at)
    assert at.text_area(key=K_BRIEF).value.startswith("A clean e-commerce hero shot")
    assert {b.key for b in at.button if b.key.startswith("studio.tray-remove.")} == {
        f"studio.tray-remove.{sha}" for sha in refs[:2]}
    assert "References · 2 of 14" in texts(at.subheader)
    # ... and so do Library and Search.
    at.switch_page(LIBRARY)
    run(at)
    assert texts(at.title) == ["Library"]
    assert all("Random weights" in e for e in texts(at.error))  # the sidebar's note, nothing else
    at.switch_page("app_pages/search.py")
    run(at)
    assert texts(at.title) == ["Search"]


def test_generate_save_download_and_history(with_key, refs, settings):
    fake = with_key
    fake.enqueue(image_reply("First take.", make_png("first", "16:9")),
                 image_reply("Second take.", make_png("second", "16:9")))
    at = studio(refs[:2])
    assert not any("Add a Gemini API key" in m for m in texts(at.markdown))
    assert any(fake.url in c for c in texts(at.caption))  # the endpoint is shown, never the key
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    at.selectbox(key=K_ASPECT).set_value("16:9")
    at.segmented_control(key=K_VARIATIONS).set_value(2)
    run(at)
    generate = at.button(key="studio.generate")
    assert generate.label == "Generate 2 images" and not generate.disabled
    generate.click()
    run(at)

    # What the model got: the brief, both references, the aspect ratio; one request per variation.
    assert len(fake.requests) == 2
    for request in fake.requests:
        assert request.brief == BRIEF and len(request.images) == 2 and request.aspect_ratio == "16:9"
        assert request.model == "gemini-nano-banana-2.1"
    assert not at.get("progress")  # the progress box is gone once done
    assert any(shown(c).startswith("2 images · Nano Banana 2.1 · aspect 16:9 · ") for c in texts(at.caption))
    assert "Results" in texts(at.subheader)
    assert len(results(at)) == 2
    downloads = at.get("download_button")
    assert [d.proto.label for d in downloads] == ["Download", "Download"]
    assert all(d.proto.url.endswith(".png") and d.proto.ignore_rerun for d in downloads)

    # Save the first one, with a tag: a rerun keeps the results, the button says it is saved.
    at.text_input(key=K_SAVE_TAGS).set_value("Summer, promo")
    run(at)
    save = [b for b in results(at) if b.key.startswith("studio.save.")][0]
    save.click()
    run(at)
    buttons = results(at)
    assert len(buttons) == 2
    assert [b.key.split(".")[1] for b in buttons] == ["open", "save"]

    # The saved asset, seen through the app's own library (Milvus Lite: one client per file).
    app_library = _app_library(settings)
    generated = app_library.page(0, 10, source="generated").assets
    assert len(generated) == 1
    asset = generated[0]
    assert asset.prompt == BRIEF and asset.model == "gemini-nano-banana-2.1"
    assert list(asset.reference_ids) == refs[:2]
    assert set(asset.tags) == {"summer", "promo"}
    assert asset.filename == "a-model-wearing-these-sneakers-on-1.png"
    assert at.sidebar.metric[0].value == "5"  # the sidebar counts it at once

    # History: the saved image with its brief and model; "use as reference" puts it in the tray.
    assert "History" in texts(at.subheader)
    assert any(":violet-badge[Nano Banana 2" in m and "sunny beach" in m for m in texts(at.markdown))
    toggle = at.toggle(key=f"studio.history.pick.{asset.sha256}")
    assert not toggle.value
    toggle.set_value(True)
    run(at)
    assert at.session_state[TRAY_KEY] == [*refs[:2], asset.sha256]
    assert "References · 3 of 14" in texts(at.subheader)
    # "Reuse brief" brings its brief back into the editor.
    at.text_area(key=K_BRIEF).set_value("something else")
    run(at)
    at.button(key=f"studio.reuse.{asset.sha256}").click()
    run(at)
    assert at.text_area(key=K_BRIEF).value == BRIEF

    # "In the library" opens its details, with the provenance, on the Library page.
    at.button(key=[b.key for b in results(at) if b.key.startswith("studio.open.")][0]).click()
    run(at)
    assert texts(at.title) == ["Library"]
    text = shown(all_text(at))
    assert "How it was made" in text and "gemini-nano-banana-2.1" in text and "2 reference image(s)" in text

    # The key never reached the page (which page_text does see: the brief is in it).
    assert BRIEF in page_text(at) and KEY not in page_text(at)


def _app_library(settings):
    """The Library the app opened (cached per process): Milvus Lite allows one client per file."""
    return state._open_library(state.library_key(settings), settings)


def test_too_many_references_warns_and_disables_generate(with_key, refs):
    at = studio(refs)  # four, Nano Banana 2 Lite takes three
    at.selectbox(key=K_MODEL).set_value(LITE)
    run(at)
    warning = shown(" ".join(texts(at.warning)))
    assert "Nano Banana 2 Lite takes at most 3 reference images" in warning and "Remove 1" in warning
    assert "Nano Banana 2.1 (up to 14)" in warning
    generate = at.button(key="studio.generate")
    assert generate.disabled and "Too many references" in generate.help
    at.selectbox(key=K_MODEL).set_value("gemini-3-pro-image")
    run(at)
    assert not any("at most" in w for w in texts(at.warning))
    assert not at.button(key="studio.generate").disabled
    assert "References · 4 of 14" in texts(at.subheader)
    # Removing one from the tray also fixes it for Nano Banana 2 Lite.
    at.selectbox(key=K_MODEL).set_value(LITE)
    at.button(key=f"studio.tray-remove.{refs[3]}").click()
    run(at)
    assert not at.button(key="studio.generate").disabled
    assert at.session_state[TRAY_KEY] == refs[:3]


def test_a_failed_generation_keeps_the_brief_and_the_tray(with_key, refs, monkeypatch):
    fake = with_key
    created = []

    class CountingGenerator(state.ImageGenerator):
        def __init__(self, *args, **kwargs):
            created.append(kwargs.get("base_url"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(state, "ImageGenerator", CountingGenerator)
    # A key-echoing error (the client must scrub it) and a blocked prompt: neither is retried.
    fake.enqueue(error_reply(400, message="API key not valid: {api_key}", status="INVALID_ARGUMENT"),
                 blocked_reply("PROHIBITED_CONTENT"))
    at = studio(refs[:2])
    at.button(key="studio.generate").click()  # no brief yet: said before anything is sent
    run(at)
    assert any("The brief is empty" in e for e in texts(at.error)) and not fake.requests
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    run(at)
    at.button(key="studio.generate").click()
    run(at)
    errors = shown(" ".join(texts(at.error)))
    assert "rejected the API key" in errors and "GEMINI_API_KEY" in errors
    assert not at.get("progress") and not results(at)
    assert at.text_area(key=K_BRIEF).value == BRIEF
    assert at.session_state[TRAY_KEY] == refs[:2]
    assert KEY not in page_text(at)

    # The error stays through unrelated reruns, until the next Generate replaces it.
    at.button(key="studio.preset.0").click()
    run(at)
    assert any("rejected the API key" in shown(e) for e in texts(at.error))
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    at.button(key="studio.generate").click()
    run(at)
    errors = shown(" ".join(texts(at.error)))
    assert "blocked the brief" in errors and "PROHIBITED_CONTENT" in errors and "API key" not in errors
    at.button(key="studio.dismiss-error").click()
    run(at)
    assert not [e for e in texts(at.error) if "Random weights" not in e]

    # Then it works, and earlier results are kept through a later failure.
    at.button(key="studio.generate").click()
    run(at)
    assert len(results(at)) == 1
    fake.enqueue(error_reply(400, message="API key not valid: {api_key}", status="INVALID_ARGUMENT"))
    at.button(key="studio.generate").click()
    run(at)
    assert any("rejected the API key" in shown(e) for e in texts(at.error))
    assert len(results(at)) == 1 and at.text_area(key=K_BRIEF).value == BRIEF
    assert KEY not in page_text(at)
    # Five Generate clicks, one client (per key, model and endpoint), reused.
    assert created == [fake.url]


def test_suggest_references_for_the_brief(with_key, refs):
    at = studio()
    assert "References · 0 of 14" in texts(at.subheader)
    at.button(key="studio.suggest").click()
    run(at)
    assert any("Write a brief first" in i for i in texts(at.info))
    at.text_area(key=K_BRIEF).set_value("a red product on white")
    at.button(key="studio.suggest").click()
    run(at)
    toggles = [t for t in at.toggle if t.key.startswith("studio.suggest.pick.")]
    assert len(toggles) == 4 and not any(t.value for t in toggles)
    picked = toggles[1].key.rsplit(".", 1)[1]
    toggles[1].set_value(True)
    run(at)
    assert at.session_state[TRAY_KEY] == [picked]
    assert at.button(key=f"studio.tray-remove.{picked}")
    # The suggestions stay (the picked one switched on) until hidden.
    assert [t.value for t in at.toggle if t.key.startswith("studio.suggest.pick.")].count(True) == 1
    at.button(key="studio.suggest-hide").click()
    run(at)
    assert not [t for t in at.toggle if t.key.startswith("studio.suggest.pick.")]


def test_brief_and_options_survive_a_trip_to_search(with_key, refs):
    at = studio(refs[:1])
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    at.selectbox(key=K_MODEL).set_value("gemini-3-pro-image")
    at.segmented_control(key=K_VARIATIONS).set_value(3)
    run(at)
    at.switch_page("app_pages/search.py")
    run(at)
    at.switch_page(STUDIO)
    run(at)
    assert at.text_area(key=K_BRIEF).value == BRIEF
    assert at.selectbox(key=K_MODEL).value == "gemini-3-pro-image"
    assert at.button(key="studio.generate").label == "Generate 3 images"


def test_model_choice_defaults_to_the_setting_and_uses_the_labels(with_key, monkeypatch, refs):
    monkeypatch.setenv("RAGKIT_GEMINI_MODEL", "gemini-3-pro-image")
    at = studio()
    model = at.selectbox(key=K_MODEL)
    assert model.value == "gemini-3-pro-image"
    # The models the key can use today (ListModels), by their labels, the current ones first.
    assert model.options == ["Nano Banana 2.1", "Nano Banana Pro", "Nano Banana 2 Lite", "Nano Banana 2 (3.1 Flash Image)"]


def test_file_names_and_reference_warning_helpers():
    assert file_name_for("A *clean* hero shot, no text!", 0, "image/png") == "a-clean-hero-shot-no-text-1.png"
    assert file_name_for("", 2, "image/jpeg") == "studio-3.jpg"
    assert file_name_for("…", 0, "image/x-unknown") == "studio-1.png"
    from ragkit.studio import MODELS
    assert too_many_references(3, MODELS["gemini-nano-banana-2.1"]) is None
    assert "Remove 2" in too_many_references(5, MODELS[LITE])
    assert "switch" not in too_many_references(15, MODELS["gemini-3-pro-image"])


def test_a_generation_in_flight_shows_on_other_pages_and_lands_in_the_studio(with_key, refs):
    """The Studio's job runs on while its user browses: the sidebar says so, the Studio collects it."""
    import threading

    from ragkit.jobs.thread import Job
    from ragkit.studio import ImageGenerator, load_references
    from ragkit.ui import pending

    fake = with_key
    fake.enqueue(image_reply("Beach.", make_png("beach", "1:1")), image_reply("Dunes.", make_png("dunes", "1:1")))
    at = studio(refs[:2])
    assert "Generating" not in " ".join(texts(at.sidebar.info))
    at.switch_page(LIBRARY)
    run(at)
    # What Generate leaves in the session, held back by a gate so the test sees it in flight.
    gate = threading.Event()
    generator = ImageGenerator(KEY, base_url=fake.url)
    references = load_references(_app_library(state.settings()), refs[:2])

    def work(progress):
        progress(0, 2)
        gate.wait(30)
        return generator.generate(BRIEF, references, variations=2, on_progress=progress)

    at.session_state[pending.K_PENDING] = pending.PendingGeneration(Job.start(work), "Nano Banana", 2, 2)
    run(at)
    note = " ".join(texts(at.sidebar.info))
    assert "Generating 2 images with Nano Banana: 0 of 2 finished" in note
    assert texts(at.title) == ["Library"] and not fake.requests

    gate.set()
    at.session_state[pending.K_PENDING].job.wait(30)
    run(at)
    assert "Your 2 images from the Studio are ready." in texts(at.sidebar.success)
    at.switch_page(STUDIO)
    run(at)
    assert len(results(at)) == 2 and len(fake.requests) == 2
    assert pending.K_PENDING not in at.session_state  # collected once: no note, no second collection
    at.switch_page(LIBRARY)
    run(at)
    assert not at.sidebar.success and "Generating" not in " ".join(texts(at.sidebar.info))
    generator.close()


@pytest.mark.parametrize("prices", ["", '{"gemini-nano-banana-2.1": null}'], ids=["priced", "unpriced"])
def test_each_result_and_the_total_spent_show_their_cost_and_an_unknown_price_is_unknown(
        with_key, refs, settings, monkeypatch, prices):
    from ragkit.studio.cost import CostLedger, format_usd
    monkeypatch.setenv("RAGKIT_PRICES", prices)
    at = studio(refs[:1])
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    at.segmented_control(key=K_VARIATIONS).set_value(2)
    run(at)
    at.button(key="studio.generate").click()
    run(at)
    run(at)  # the page as it is after the generation (the total spent is drawn above the results)

    spent = CostLedger(settings.data_dir).totals()
    assert (spent.generations, spent.images) == (1, 2)  # one generation of two images
    total = format_usd(spent.known_cost)
    assert total == ("unknown" if prices else format_usd(spent.cost_usd)) and total != "$0.000"
    captions = texts(at.caption)
    assert any(c.startswith("2 images · ") and f"· cost {total}" in c for c in captions), captions
    assert any(f"{total} spent on 1 generation " in c for c in captions), captions
    assert "$0.000" not in all_text(at)


# ----------------------------------------------------------------------------- models as the API has them today
def test_a_gone_configured_model_shows_one_line_and_switches_in_one_click(with_key, monkeypatch, refs):
    monkeypatch.setenv("RAGKIT_GEMINI_MODEL", "gemini-2.5-flash-image")  # shut down on 2026-10-02
    at = studio(refs[:1])
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    run(at)
    errors = [shown(e) for e in texts(at.error) if "Random weights" not in e]
    assert len(errors) == 1 and "gemini-2.5-flash-image is no longer offered" in errors[0]
    assert "Nano Banana 2.1 (gemini-nano-banana-2.1)" in errors[0]
    assert at.button(key="studio.generate").disabled and "no longer offered" in at.button(key="studio.generate").help
    switch = at.button(key=f"{K_MODEL}.switch")
    assert switch.label == "Switch to Nano Banana 2.1"
    switch.click()
    run(at)
    assert at.selectbox(key=K_MODEL).value == "gemini-nano-banana-2.1"
    assert not [e for e in texts(at.error) if "Random weights" not in e]
    assert not at.button(key="studio.generate").disabled


def test_size_is_offered_per_model_priced_and_sent(with_key, refs):
    at = studio(refs[:1])
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    at.selectbox(key=K_MODEL).set_value("gemini-3.1-flash-image")
    run(at)
    size = at.selectbox(key="studio.size.gemini-3.1-flash-image")
    assert size.options == ["512 px (draft)", "1K (1024 px)", "2K (2048 px)", "4K (4096 px)"] and size.value == "1K"
    size.set_value("4K")
    run(at)
    assert any("at 4K: about $0.15" in c for c in texts(at.caption)), texts(at.caption)
    at.button(key="studio.generate").click()
    run(at)
    from ragkit.ui import pending
    if pending.K_PENDING in at.session_state:
        at.session_state[pending.K_PENDING].job.wait(30)
        run(at)
    assert [r.image_size for r in with_key.requests] == ["4K"]


def test_a_new_model_the_api_lists_is_offered_with_price_unknown(with_key, refs):
    with_key.offer("gemini-4-flash-image")
    at = studio(refs[:1])
    assert "gemini-4-flash-image (new: price unknown)" in at.selectbox(key=K_MODEL).options
    at.selectbox(key=K_MODEL).set_value("gemini-4-flash-image")
    run(at)
    assert any("price unknown" in c for c in texts(at.caption))
# ----------------------------------------------------------------------------- edit, and work kept across a reload
NB2 = "gemini-3.1-flash-image"


def test_edit_a_result_in_a_conversation_then_save_a_version_with_its_lineage(with_key, refs, settings, monkeypatch):
    monkeypatch.setenv("RAGKIT_GEMINI_MODEL", NB2)
    fake = with_key
    at = studio(refs[:1])
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    run(at)
    at.button(key="studio.generate").click()
    run(at)
    edit = [b for b in at.button if b.key and b.key.startswith("studio.edit.")][0]
    edit.click()  # an unsaved result
    run(at)
    assert any(s.startswith("Edit · a Studio result of") for s in texts(at.subheader))
    at.text_input(key="studio.edit-instruction").set_value("make the background blue")
    at.button(key="FormSubmitter:studio-edit-form-Send").click()
    run(at)
    at.text_input(key="studio.edit-instruction").set_value("add a soft shadow")
    at.button(key="FormSubmitter:studio-edit-form-Send").click()
    run(at)

    # The follow-up carried the conversation back with the server's signatures (else a 400 shows).
    first, second = fake.requests[-2:]
    assert [role for role, _ in second.turns] == ["user", "model", "user"]
    assert sum("thoughtSignature" in p for role, parts in second.turns if role == "model" for p in parts) == 2
    assert all("Random weights" in e for e in texts(at.error)), texts(at.error)  # the sidebar's note only
    assert {b.key for b in at.button if b.key and b.key.startswith("studio.edit-version.")} == {
        "studio.edit-version.0", "studio.edit-version.1", "studio.edit-version.2"}
    assert [m.value for m in at.chat_message[0].markdown] == ["make the background blue"]
    assert any(c.startswith("Before (v1)") for c in texts(at.caption))  # v2 shown against its parent

    at.button(key="studio.edit-save.2").click()
    run(at)
    app_library = _app_library(settings)
    saved = app_library.page(0, 10, source="generated").assets
    assert [a.prompt for a in saved] == ["add a soft shadow"]
    at.button(key="studio.edit-open.2").click()  # "In the library": details show the lineage
    run(at)
    text = shown(all_text(at))
    assert "edited from an unsaved version (not in the library) by “add a soft shadow”" in text
    assert "edited from a Studio result of" in text and "by “make the background blue”" in text

    # Edit from the Library's details: any asset, here an upload; the panel opens in the Studio.
    at.switch_page(LIBRARY)
    at.session_state[state.OPEN_ASSET] = refs[1]
    run(at)
    at.button(key="library.edit").click()
    run(at)
    assert texts(at.title) == ["Studio"] and any(shown(s).startswith("Edit · product-1.jpg") for s in texts(at.subheader)), texts(at.subheader)
    # ... and from the Studio's History: the saved version, edited again.
    at.switch_page(STUDIO)  # (AppTest reruns the page it last switched to itself)
    run(at)
    at.button(key=f"studio.history-edit.{saved[0].sha256}").click()
    run(at)
    assert any(shown(s).startswith(f"Edit · {saved[0].filename}") for s in texts(at.subheader)), texts(at.subheader)


def test_a_reload_offers_back_the_brief_the_tray_and_the_unsaved_results(with_key, refs):
    fake = with_key
    fake.enqueue(image_reply("One.", make_png("one")), image_reply("Two.", make_png("two")))
    at = studio(refs[:2])
    at.text_area(key=K_BRIEF).set_value(BRIEF)
    run(at)
    at.button(key="studio.generate").click()
    run(at)
    at.button(key="studio.generate").click()
    run(at)
    assert any(e.proto.label.startswith("Earlier results (1)") for e in at.expander)

    again = studio()  # F5 / a new tab: a new session, the same person (the signed-in email here)
    assert at.text_area(key=K_BRIEF).value == BRIEF and not again.text_area(key=K_BRIEF).value
    offer = " ".join(texts(again.markdown))
    assert "Your earlier work is kept" in offer and "2 references" in offer and "2 results not saved yet" in offer
    assert any("7 days" in c and "3 generations" in c for c in texts(again.caption))
    again.button(key="studio.draft-restore").click()
    run(again)
    assert again.text_area(key=K_BRIEF).value == BRIEF
    assert again.session_state[TRAY_KEY] == refs[:2]
    assert len(again.session_state["studio.earlier"]) == 1, again.session_state["studio.earlier"]
    assert len(results(again)) == 2, (texts(again.error), [e.proto.label for e in again.expander])  # the last result, and the earlier one in its expander
    assert not any("Your earlier work is kept" in m for m in texts(again.markdown))

    other = new_app()
    other.user = {"email": "someone-else@example.com"}
    run(other)
    other.switch_page(STUDIO)
    run(other)
    assert not any("Your earlier work is kept" in m for m in texts(other.markdown))

    fresh = studio()
    fresh.button(key="studio.draft-discard").click()
    run(fresh)
    assert not any("Your earlier work is kept" in m for m in texts(studio().markdown))
