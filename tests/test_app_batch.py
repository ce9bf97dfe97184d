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
    assert "3 products × 2 = **6 requests**, each with 2 references (of 3)" in summary and "about $0.2" in summary
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
    assert approve_all.label == "Approve all (5)"
    approve_all.click()
    run(at)
    job = batch.job_store(settings).load(job_id)
    assert all(t.saved for t in job.takes) and len({t.saved for t in job.takes}) == 6
    assert "In the library" in all_text(at)
    assert not any(b.key and b.key.startswith("batch.approve.") for b in at.button)
    download = at.get("download_button")[0]
    assert download.proto.label == "Download approved (6) as zip"


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


def test_kit_editor_creates_edits_and_refuses_to_overwrite_someone_else_s_save(app_env, catalogue, settings):
    _, brand = catalogue
    at = open_tab("Brand kits", tray=brand)
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


def test_a_kit_in_generate_counts_against_the_limit_and_says_what_is_wrong(with_key, catalogue, settings):
    products, brand = catalogue
    kits.kit_store(settings).save(kits.make_kit("Acme", reference_ids=brand))
    at = open_tab("Generate", tray=products[:1])
    assert "2 slots left for references" in texts(at.caption)
    at.selectbox(key="studio.kit").set_value("Acme")
    run(at)
    assert "References · 1 + 2 from the kit of 3" in texts(at.subheader)
    assert "No slot left for references" in texts(at.caption)
    at.session_state[TRAY_KEY] = products[:2]
    run(at)
    assert any("With the kit's 2 references: Nano Banana takes at most 3" in shown(w) for w in texts(at.warning))
    assert at.button(key="studio.generate").disabled
