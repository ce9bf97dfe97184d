"""The Search page and the reference tray through AppTest: real Milvus Lite, the tiny model."""
from __future__ import annotations

import re

import pytest

from ragkit.ingest.pipeline import Provenance, Upload
from ragkit.records import SOURCE_GENERATED
from tests.e2e_support import all_text, app_env, new_app, run, seed, shown, texts  # noqa: F401 - fixtures
from tests.images_factory import jpeg_bytes, png_bytes

SEARCH = "app_pages/search.py"
SCORE = re.compile(r":orange-badge\[(-?\d\.\d\d)\]")


@pytest.fixture
def library_of_ten(seed):
    """Ten images: 6 uploads tagged 'studio', 2 tagged 'beach', 2 generated. Returns {name: Asset}."""
    assets = {}
    for report in (seed([Upload(f"shot-{i}.jpg", jpeg_bytes(200 + i)) for i in range(6)], tags=["studio"]),
                   seed([Upload(f"beach-{i}.jpg", jpeg_bytes(210 + i)) for i in range(2)], tags=["beach"]),
                   seed([Upload(f"gen-{i}.png", png_bytes(220 + i), source=SOURCE_GENERATED,
                                provenance=Provenance("a cape", "gemini-2.5-flash-image")) for i in range(2)])):
        assets.update({name: asset for name, asset in report.added})
    return assets


def search_page():
    at = run(new_app())
    at.switch_page(SEARCH)
    return run(at)


def hit_ids(at) -> list[str]:
    return [t.key.rsplit(".", 1)[1] for t in at.toggle if t.key.startswith("search.pick.")]


def hit_scores(at) -> list[float]:
    return [float(m.group(1)) for c in at.main.markdown if (m := SCORE.search(c.value))]


def text_search(at, text: str):
    at.text_input(key="search.text").set_value(text)
    return run(at)


def test_search_on_an_empty_library_points_to_the_library(app_env):
    at = search_page()
    assert texts(at.title) == ["Search"]
    assert any("nothing to search yet" in i for i in texts(at.info))
    assert at.get("page_link")


def test_text_search_shows_scored_thumbnails(app_env, library_of_ten, settings, tiny_embedder):
    from ragkit.library import Library
    at = search_page()
    assert "Search 10 images" in all_text(at)  # before a query: what the page can do
    assert not hit_ids(at)
    text_search(at, "a red silk cape with gold trim")
    ids = hit_ids(at)
    assert len(ids) == 6  # default top-k
    assert set(ids) <= {a.sha256 for a in library_of_ten.values()}
    library = Library.open(settings, embedder=tiny_embedder)
    try:  # best first: by picture and by words fused ("cape" is in the generated images' brief)
        expected = library.search_text("a red silk cape with gold trim", 6)
    finally:
        library.close()
    assert ids == [h.asset.sha256 for h in expected]
    assert {library_of_ten["gen-0.png"].sha256, library_of_ten["gen-1.png"].sha256} <= set(ids[:2])
    scores = hit_scores(at)
    assert len(scores) == 6 and scores == [round(h.score, 2) for h in expected]  # shown as 0.83
    assert len(at.main.image) == 6
    assert any("**6** results for “a red silk cape with gold trim”" in m for m in texts(at.markdown))


def test_top_k_filters_min_score_and_sort(app_env, library_of_ten):
    at = search_page()
    at.slider(key="search.k").set_value(50)
    text_search(at, "campaign picture")
    assert len(hit_ids(at)) == 10
    at.slider(key="search.k").set_value(3)
    run(at)
    assert len(hit_ids(at)) == 3

    at.slider(key="search.k").set_value(20)
    at.multiselect(key="search.tags").set_value(["beach"])
    run(at)
    beach = {library_of_ten[f"beach-{i}.jpg"].sha256 for i in range(2)}
    assert set(hit_ids(at)) == beach

    at.multiselect(key="search.tags").set_value([])
    at.segmented_control(key="search.source").set_value("Generated")
    run(at)
    assert set(hit_ids(at)) == {library_of_ten[f"gen-{i}.png"].sha256 for i in range(2)}

    at.segmented_control(key="search.source").set_value("All")
    run(at)
    scores = hit_scores(at)
    cutoff = round((scores[0] + scores[-1]) / 2, 2)
    at.slider(key="search.min-score").set_value(max(cutoff, 0.01))
    run(at)
    kept = hit_scores(at)
    assert kept and all(s >= max(cutoff, 0.01) - 0.005 for s in kept)
    at.slider(key="search.min-score").set_value(1.0)
    run(at)
    assert not hit_ids(at) and any("No images match" in i for i in texts(at.info))

    at.slider(key="search.min-score").set_value(0.0)
    run(at)
    at.segmented_control(key="search.sort").set_value("Newest")
    run(at)
    created = {a.sha256: a.created_at for a in library_of_ten.values()}
    newest_first = [created[i] for i in hit_ids(at)]
    assert newest_first == sorted(newest_first, reverse=True)


def test_search_by_example_image(app_env, library_of_ten):
    at = search_page()
    at.segmented_control(key="search.mode").set_value("Example image")
    run(at)
    at.file_uploader(key="search.example").set_value(("query.jpg", jpeg_bytes(203), "image/jpeg"))
    run(at)
    assert hit_ids(at)[0] == library_of_ten["shot-3.jpg"].sha256  # the same picture is the best match
    assert hit_scores(at)[0] >= 0.99
    assert any("images like query\\.jpg" in m for m in texts(at.markdown))
    assert at.sidebar.metric[0].value == "10"  # the example is not added to the library


def test_a_bad_example_image_is_a_clear_error(app_env, library_of_ten):
    at = search_page()
    at.segmented_control(key="search.mode").set_value("Example image")
    run(at)
    at.file_uploader(key="search.example").set_value(("notes.txt", b"not a picture", "text/plain"))
    run(at)
    assert any("The example image can't be used" in shown(e) for e in texts(at.error))
    assert not hit_ids(at)


def test_more_like_this_and_clear(app_env, library_of_ten):
    at = search_page()
    at.segmented_control(key="search.mode").set_value("Similar image")
    run(at)
    assert any("Find similar" in i for i in texts(at.info))  # how to get here
    at.segmented_control(key="search.mode").set_value("Words")
    run(at)
    text_search(at, "shoes")
    first = hit_ids(at)[0]
    at.button(key=f"search.more.{first}").click()
    run(at)
    assert at.segmented_control(key="search.mode").value == "Similar image"
    assert first not in hit_ids(at) and len(hit_ids(at)) == 6
    at.button(key="search.clear-similar").click()
    run(at)
    assert at.segmented_control(key="search.mode").value == "Words"


def test_more_like_this_starts_fresh_keeping_only_this_searchs_filters(app_env, library_of_ten):
    """Issue 21.8: More like this carried over the words of an earlier composed search."""
    at = search_page()
    text_search(at, "shoes")
    at.button(key=f"search.more.{hit_ids(at)[0]}").click()
    run(at)
    at.text_input(key="search.with").set_value("in blue")
    at.text_input(key="search.not").set_value("text")
    run(at)
    assert "in blue" in all_text(at)  # the composed search's heading
    at.segmented_control(key="search.source").set_value("Uploaded")  # set on this search: kept
    run(at)
    at.button(key=f"search.more.{hit_ids(at)[0]}").click()
    run(at)
    assert at.text_input(key="search.with").value == "" and at.text_input(key="search.not").value == ""
    assert "in blue" not in all_text(at) and "“text”" not in all_text(at)
    assert at.segmented_control(key="search.source").value == "Uploaded"
    assert all(library_of_ten_sources(library_of_ten, hit_ids(at)))


def library_of_ten_sources(assets, ids):
    by_id = {a.sha256: a for a in assets.values()}
    return [not by_id[i].is_generated for i in ids]


def test_pick_references_into_the_tray_across_pages(app_env, library_of_ten):
    at = search_page()
    text_search(at, "hero shot")
    first, second = hit_ids(at)[:2]
    at.toggle(key=f"search.pick.{first}").set_value(True)
    run(at)
    at.toggle(key=f"search.pick.{second}").set_value(True)
    run(at)
    assert at.session_state["ragkit.tray"] == [first, second]
    assert "**References** · 2" in texts(at.sidebar.markdown)
    assert len(at.sidebar.image) == 2

    # Unpick one; the tray follows.
    at.toggle(key=f"search.pick.{first}").set_value(False)
    run(at)
    assert at.session_state["ragkit.tray"] == [second]
    at.toggle(key=f"search.pick.{first}").set_value(True)
    run(at)

    # The tray lives in the session: the Library page shows it, and the details toggle agrees.
    at.switch_page("app_pages/library.py")
    run(at)
    assert "**References** · 2" in texts(at.sidebar.markdown)
    at.button(key=f"library.open.{second}").click()
    run(at)
    assert at.toggle(key=f"library.details.pick.{second}").value is True

    # Open Studio shows the references (tray.render_grid); Clear empties the tray everywhere.
    at.button(key="tray.open-studio").click()
    run(at)
    assert texts(at.title) == ["Studio"]
    assert {f"studio.tray-remove.{first}", f"studio.tray-remove.{second}"} <= {b.key for b in at.button}
    assert "tray.open-studio" not in {b.key for b in at.sidebar.button}  # already there
    at.button(key=f"studio.tray-remove.{first}").click()
    run(at)
    assert at.session_state["ragkit.tray"] == [second]
    at.button(key="tray.clear").click()
    run(at)
    assert at.session_state["ragkit.tray"] == []
    assert "**References** · 0" in texts(at.sidebar.markdown)
    at.switch_page(SEARCH)
    run(at)
    assert not any(t.value for t in at.toggle if t.key.startswith("search.pick."))


def test_search_remembers_hits_across_reruns(app_env, library_of_ten, monkeypatch):
    from ragkit.library import Library
    calls = []
    original = Library.search_text

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Library, "search_text", counting)
    at = search_page()
    text_search(at, "summer")
    first = hit_ids(at)[0]
    at.toggle(key=f"search.pick.{first}").set_value(True)
    run(at)
    run(at)
    assert len(calls) == 1  # picking a reference doesn't search again


def test_deleted_reference_leaves_the_tray(app_env, library_of_ten):
    at = search_page()
    text_search(at, "anything")
    first = hit_ids(at)[0]
    at.toggle(key=f"search.pick.{first}").set_value(True)
    run(at)
    at.switch_page("app_pages/library.py")
    run(at)
    at.button(key=f"library.open.{first}").click()
    run(at)
    at.button(key="library.delete").click()
    run(at)
    at.button(key="library.delete-confirm").click()
    run(at)
    assert at.session_state["ragkit.tray"] == []
    assert "**References** · 0" in texts(at.sidebar.markdown)
