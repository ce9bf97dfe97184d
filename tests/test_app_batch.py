"""The Studio's Batch and Brand kits tabs through Streamlit's AppTest: the real app.py, real Milvus Lite,
the tiny model, the real google-genai client against the local Gemini-format server."""
from __future__ import annotations

import dataclasses
import time

import pytest

from ragkit.ingest.pipeline import Upload
from ragkit.studio import batch, kits
from ragkit.studio.cost import format_usd
from ragkit.ui.tray import TRAY_KEY
from tests.e2e_support import all_text, app_env, new_app, run, seed, shown, texts, with_key  # noqa: F401 - fixtures
from devtools.fake_gemini import slow_reply
from tests.conftest import GEMINI_TEST_KEY
from tests.images_factory import jpeg_bytes

STUDIO, LIBRARY = "app_pages/studio.py", "app_pages/library.py"
BRIEF = "The product on a pastel podium"


@pytest.fixture
def catalogue(seed):
    """Three product shots tagged 'spring' and two brand images; their ids."""
    products = seed([Upload(f"shoe-{i}.jpg", jpeg_bytes(300 + i)) for i in range(3)], tags=["spring"])
    brand = seed([Upload(f"{name}.jpg", jpeg_bytes(390 + i)) for i, name in enumerate(["logo", "palette"])])
    return [a.sha256 for _, a in products.added], [a.sha256 for _, a in brand.added]


def open_tab(tab: str, tray: list[str] = ()):
    at = new_app()
    at.session_state[TRAY_KEY] = list(tray)
    run(at)
    at.switch_page(STUDIO)
    run(at)
    at.session_state["studio.tab"] = tab
    return run(at)


def wait_until(at, done, timeout: float = 60.0):
    """Rerun the page (as the tab's fragment does every second) until done(at)."""
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, all_text(at)[-2000:]
        time.sleep(0.3)
        run(at)
    return at


def progress_text(at) -> str:
    return " ".join(p.proto.text for p in at.get("progress"))


def test_a_batch_runs_in_the_background_shows_progress_elsewhere_and_is_reviewed(with_key, catalogue, settings):
    fake = with_key
    fake.always(slow_reply(0.4))
    products, brand = catalogue
    kits.kit_store(settings).save(kits.make_kit("Acme", style="pastel", reference_ids=brand[:1]))
    at = open_tab("Batch")
    assert "One brief for many products" in all_text(at)

    at.text_area(key="batch.brief").set_value(BRIEF)
    at.selectbox(key="batch.tag").set_value("spring")
    at.selectbox(key="batch.kit").set_value("Acme")
    at.segmented_control(key="batch.variations").set_value(2)
    run(at)
    summary = " ".join(texts(at.caption))
    assert "3 products × 2 = **6 requests**, each with 2 references (of 14)" in summary and "about $0.2" in summary
    at.number_input(key="batch.concurrency").set_value(1)
    run(at)
    at.button(key="batch.start").click()
    run(at)

    # In flight: the progress; one request at a time is being drawn, the others say they are queued.
    assert "of 6 images" in progress_text(at)
    wait_until(at, lambda page: any("Drawing…" in caption for caption in texts(page.caption)), timeout=20)
    captions = texts(at.caption)
    assert sum("Drawing…" in c for c in captions) == 1 and any("Queued" in c for c in captions)
    assert sum("Drawing…" in m for m in texts(at.markdown)) == 1  # the one product's badge
    # The sidebar of another page says how far it got.
    at.switch_page(LIBRARY)
    run(at)
    assert any("of 6 images" in note for note in texts(at.sidebar.info))
    at.switch_page(STUDIO)
    run(at)
    assert at.session_state["studio.tab"] == "Batch"  # back where the person left
    wait_until(at, lambda page: "6 of 6 images" in progress_text(page))

    assert len(fake.requests) == 6
    for request in fake.requests:
        assert "Brand style: pastel" in request.brief and len(request.images) == 2
    job_id = at.session_state["batch.job"]
    cost = batch.job_store(settings).load(job_id).cost_usd
    assert cost > 0 and f"6 of 6 images · cost {format_usd(cost)}" in progress_text(at)  # the job's cost
    assert {b.key.split(".")[3] for b in at.button if b.key and b.key.startswith("batch.approve.")} == \
        {p[:12] for p in products}
    first = next(b for b in at.button if b.key and b.key.startswith("batch.approve."))
    first.click()
    run(at)
    approve_all = at.button(key="batch.approve-all")
    assert approve_all.label == "Approve all the rest"
    approve_all.click()
    run(at)
    job = batch.job_store(settings).load(job_id)
    assert all(t.saved for t in job.takes) and len({t.saved for t in job.takes}) == 6
    assert "In the library" in all_text(at)
    assert not any(b.key and b.key.startswith("batch.approve.") for b in at.button)
    download = at.get("download_button")[0]
    assert download.proto.label == "Download the approved as zip" and not download.proto.disabled


def test_an_interrupted_job_is_resumed_from_the_tab_and_only_the_rest_is_sent(with_key, catalogue, settings,
                                                                            tiny_embedder):
    from ragkit.library import Library
    fake = with_key
    products, _ = catalogue
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        store = batch.job_store(settings)
        job = store.create(batch.plan_batch(library, BRIEF, ref_each=products))
        store.update(job.id, lambda j: setattr(j.takes[0], "status", batch.DONE))  # done before a restart
    finally:
        library.close()
    at = open_tab("Batch")
    assert "Not sent yet (Resume)" in all_text(at)
    at.button(key="batch.resume").click()
    run(at)
    wait_until(at, lambda page: "3 of 3 images" in progress_text(page))
    assert len(fake.requests) == 2
    assert {r.images[0][1] for r in fake.requests} == {  # the two products that were not done
        (settings.data_dir / "originals" / p[:2] / p).read_bytes() for p in products[1:]}


def test_a_damaged_job_is_shown_as_damaged_and_the_other_jobs_and_new_batch_still_work(with_key, catalogue, settings,
                                                                                      tiny_embedder):
    import json
    from ragkit.library import Library
    products, _ = catalogue
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        store = batch.job_store(settings)
        good = store.create(batch.plan_batch(library, BRIEF, ref_each=products))
    finally:
        library.close()
    state = json.loads((store.job_folder(good.id) / "state.json").read_text())
    store.job_folder("0123456789").mkdir(parents=True)
    (store.job_folder("0123456789") / "state.json").write_text(
        json.dumps({**state, "id": "0123456789", "created_at": "yesterday"}))

    at = open_tab("Batch")
    text = all_text(at)
    assert "Something unexpected" not in text
    assert "batch job 0123456789" in text and "is damaged" in text  # listed as damaged, with what to do
    assert at.session_state["batch.job"] == good.id and at.text_area(key="batch.brief")  # the rest works
    at.button(key="batch.delete-damaged.0123456789").click()
    run(at)
    assert "is damaged" not in all_text(at) and not store.job_folder("0123456789").exists()


def test_half_price_next_to_now_sends_one_gemini_batch_and_the_results_land_in_review(with_key, catalogue, settings,
                                                                                      monkeypatch):
    from ragkit.studio import half_price
    monkeypatch.setattr(half_price.HalfPriceRunner, "poll_s", 0.05)
    fake = with_key
    at = open_tab("Batch")
    at.text_area(key="batch.brief").set_value(BRIEF)
    at.selectbox(key="batch.tag").set_value("spring")
    at.segmented_control(key="batch.variations").set_value(1)
    run(at)
    now = " ".join(texts(at.caption))
    at.segmented_control(key="batch.when").set_value("Half price, results within a day")
    run(at)
    half = " ".join(texts(at.caption))
    import re
    now_usd, half_usd = (float(re.search(r"about \$([0-9.]+)", text)[1]) for text in (now, half))
    assert half_usd == pytest.approx(now_usd / 2, rel=0.05)  # the estimate at the batch price
    at.button(key="batch.start").click()
    run(at)
    wait_until(at, lambda page: "3 of 3 images" in progress_text(page))
    assert len(fake.batches.created) == 1 and len(fake.requests) == 3  # one batch, no direct requests
    job = batch.job_store(settings).load(at.session_state["batch.job"])
    assert job.spec.half_price and job.counts()["done"] == 3


def test_kit_editor_creates_edits_and_refuses_to_overwrite_someone_else_s_save(app_env, catalogue, settings):
    _, brand = catalogue
    at = open_tab("Brand kits", tray=brand)
    new_kit = at.selectbox(key="kits.open").options[0]
    assert new_kit == "+ New kit" and new_kit.isascii()  # issue 21.10: "➕" drew as a missing glyph (⊠)
    at.text_input(key="kits.name._new.0").set_value("Acme summer")
    at.text_area(key="kits.style._new.0").set_value("pastel, flat light")
    at.text_input(key="kits.avoid._new.0").set_value("text, watermarks")
    at.selectbox(key="kits.aspect._new.0").set_value("4:5")
    at.button(key="kits.add-tray._new.0").click()
    run(at)
    assert "**References** · 2 of 6" in texts(at.markdown)
    at.button(key="kits.save._new.0").click()
    run(at)
    store = kits.kit_store(settings)
    saved = store.get("Acme summer")
    assert (saved.version, saved.style, saved.avoid, saved.aspect, saved.reference_ids) == (
        1, "pastel, flat light", ("text", "watermarks"), "4:5", tuple(brand))
    assert at.selectbox(key="kits.open").value == "Acme summer"

    # I edit; meanwhile a teammate saves version 2. My Save is refused, my text stays, Reload shows theirs.
    at.text_area(key="kits.style.Acme summer.1").set_value("mine: neon")
    store.save(dataclasses.replace(saved, style="theirs: earthy"))
    run(at)
    assert any("Someone else saved this kit since you opened it" in i for i in texts(at.info))
    at.button(key="kits.save.Acme summer.1").click()
    run(at)
    assert any("Someone else saved the brand kit 'Acme summer'" in shown(e) for e in texts(at.error))
    assert at.text_area(key="kits.style.Acme summer.1").value == "mine: neon"
    assert store.get("Acme summer").style == "theirs: earthy"
    at.button(key="kits.reload").click()
    run(at)
    assert at.text_area(key="kits.style.Acme summer.2").value == "theirs: earthy"


def test_kit_references_are_picked_in_place_and_a_kit_is_renamed_but_never_onto_another(app_env, catalogue,
                                                                                       settings):
    products, brand = catalogue
    store = kits.kit_store(settings)
    store.save(kits.make_kit("Acme", style="pastel"))
    store.save(kits.make_kit("Straße", style="other"))
    at = open_tab("Brand kits")  # an empty tray: no round trip through the Library
    assert at.selectbox(key="kits.open").value == "Acme"
    form = "Acme.1"
    assert len(at.get("image")) >= 5, "the newest images show as thumbnails"
    assert all(at.button(key=f"kits.pick.{form}.{sha}") for sha in [*products, *brand])
    at.multiselect(key=f"kits.find-tags.{form}").set_value(["spring"])
    run(at)
    shown_ids = {b.key.rsplit(".", 1)[1] for b in at.button if b.key and b.key.startswith(f"kits.pick.{form}.")}
    assert shown_ids == set(products)  # the tag filter narrows the picker
    at.button(key=f"kits.pick.{form}.{products[0]}").click()
    run(at)
    assert "**References** · 1 of 6" in texts(at.markdown)
    assert at.button(key=f"kits.pick.{form}.{products[0]}").disabled  # already in the kit
    at.text_input(key=f"kits.find.{form}").set_value("shoe")
    run(at)
    assert any("Best matches" in c for c in texts(at.caption))
    at.button(key=f"kits.save.{form}").click()
    run(at)
    assert store.get("Acme").reference_ids == (products[0],)

    form = "Acme.2"
    at.text_input(key=f"kits.new-name.{form}").set_value("STRASSE")  # the same name as Straße, folded
    at.button(key=f"kits.rename.{form}").click()
    run(at)
    assert any("'Straße' exists already" in shown(e) for e in texts(at.error))
    assert store.get("Acme").version == 2 and store.get("Straße").style == "other"
    at.text_input(key=f"kits.new-name.{form}").set_value("Acme Winter")
    at.button(key=f"kits.rename.{form}").click()
    run(at)
    assert at.selectbox(key="kits.open").value == "Acme Winter"
    assert store.find("Acme") is None and store.get("Acme Winter").reference_ids == (products[0],)
    assert at.text_area(key="kits.style.Acme Winter.3").value == "pastel"


def test_a_kit_in_generate_counts_against_the_limit_and_says_what_is_wrong(with_key, catalogue, settings):
    products, brand = catalogue
    kits.kit_store(settings).save(kits.make_kit("Acme", reference_ids=brand))
    at = open_tab("Generate", tray=products[:1])
    at.selectbox(key="studio.model").set_value("gemini-3.1-flash-lite-image")  # takes 3
    run(at)
    assert "2 slots left for references" in texts(at.caption)
    at.selectbox(key="studio.kit").set_value("Acme")
    run(at)
    assert "References · 1 + 2 from the kit of 3" in texts(at.subheader)
    assert "No slot left for references" in texts(at.caption)
    at.session_state[TRAY_KEY] = products[:2]
    run(at)
    assert any("With the kit's 2 references: Nano Banana 2 Lite takes at most 3" in shown(w) for w in texts(at.warning))
    assert at.button(key="studio.generate").disabled


HOSTILE_ASPECT = "![a](http://127.0.0.1:9/aspect.png)"


def test_an_aspect_the_model_does_not_offer_is_refused_before_a_job_exists(with_key, catalogue, settings,
                                                                           tiny_embedder):
    from ragkit.errors import BatchError
    from ragkit.library import Library
    products, _ = catalogue
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        with pytest.raises(BatchError, match=r"does not offer aspect ratio !\[a\]\(http://127\.0\.0\.1:9/asp"):
            batch.plan_batch(library, BRIEF, ref_each=products, aspect=HOSTILE_ASPECT)  # was: a job, every take failing
        assert batch.job_store(settings).list() == []
        assert batch.plan_batch(library, BRIEF, ref_each=products, aspect="4:5").aspect == "4:5"
    finally:
        library.close()


def test_a_job_card_shows_a_stored_aspect_as_text_not_an_image(with_key, catalogue, settings, tiny_embedder):
    from ragkit.library import Library
    products, _ = catalogue
    library = Library.open(settings, embedder=tiny_embedder)
    try:  # a job saved by an older ragkit, before the aspect was checked
        spec = dataclasses.replace(batch.plan_batch(library, BRIEF, ref_each=products), aspect=HOSTILE_ASPECT)
        batch.job_store(settings).create(spec)
    finally:
        library.close()
    at = open_tab("Batch")
    card = [c for c in texts(at.caption) if c.startswith("Job ")]
    assert card and all("![a](" not in c and "](http" not in c for c in card), card
    assert any("aspect \\!\\[a\\]" in c for c in card), card


def test_review_tiles_reject_is_undone_and_an_approved_image_gets_the_product_s_tags(with_key, catalogue, settings,
                                                                                   tiny_embedder):
    from ragkit.library import Library
    products, _ = catalogue
    keyed = dataclasses.replace(settings, gemini_api_key=GEMINI_TEST_KEY, gemini_base_url=with_key.url)
    library = Library.open(keyed, embedder=tiny_embedder)
    try:  # a finished job: 3 products x 2 variations
        store = batch.job_store(settings)
        job = store.create(batch.plan_batch(library, BRIEF, ref_each=products, variations=2))
        batch.run_batch(store, job.id, library, concurrency=2)
    finally:
        library.close()
    at = open_tab("Batch")
    # One tile per product, each with its shot and its two variations.
    assert len([b for b in at.button if b.key and b.key.startswith("batch.approve.")]) == 6
    key = f"{job.id}.{products[0][:12]}.0"
    path = job.image_path(job.take(products[0], 0))

    at.button(key=f"batch.reject.{key}").click()
    run(at)
    assert any("Rejected" in c for c in texts(at.caption))
    assert not any(b.key == f"batch.approve.{key}" for b in at.button)
    assert path.exists()  # the paid image is kept
    at.button(key=f"batch.restore.{key}").click()
    run(at)
    assert not any("Rejected" in c for c in texts(at.caption))

    at.button(key=f"batch.approve.{key}").click()
    run(at)
    saved = batch.job_store(settings).load(job.id).take(products[0], 0).saved
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        assert library.store.get(saved).tags == ("spring", job.tag)
    finally:
        library.close()
    assert "In the library" in all_text(at)
