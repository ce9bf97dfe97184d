"""Search beyond one vector, on the pages (AppTest: the real app.py, real Milvus Lite, the tiny model):
more filters, words too, composed queries, links that reproduce a search, the Duplicates view."""
from __future__ import annotations

import pytest

from ragkit.ingest.pipeline import Upload
from tests.e2e_support import all_text, app_env, new_app, run, seed, shown, texts  # noqa: F401 - fixtures
from tests.e2e_support import no_streamlit_warnings, open_buttons, streamlit_warnings  # noqa: F401 - streamlit_warnings: a fixture
from tests.images_factory import jpeg_bytes, png_bytes

SEARCH = "app_pages/search.py"


@pytest.fixture
def shapes(seed):
    """Twelve pictures: 4 landscape JPEGs, 4 portrait PNGs (2 of them 400 x 1200), 4 square JPEGs
    tagged 'hero'. Returns {name: Asset}."""
    uploads = ([Upload(f"wide-{i}.jpg", jpeg_bytes(300 + i, (320, 200))) for i in range(4)]
               + [Upload(f"tall-{i}.png", png_bytes(310 + i, (200, 320) if i < 2 else (400, 1200))) for i in range(4)])
    assets = dict(seed(uploads).added)
    assets.update(seed([Upload(f"square-{i}.jpg", jpeg_bytes(320 + i, (256, 256))) for i in range(4)],
                       tags=["hero"]).added)
    return assets


def search_page():
    at = run(new_app())
    at.switch_page(SEARCH)
    return run(at)


def hit_names(at, assets) -> set[str]:
    by_id = {a.sha256: name for name, a in assets.items()}
    return {by_id[t.key.rsplit(".", 1)[1]] for t in at.toggle if t.key.startswith("search.pick.")}


def test_more_filters_narrow_search_and_the_library_grid(app_env, shapes, streamlit_warnings):
    at = search_page()
    at.slider(key="search.k").set_value(50)
    at.text_input(key="search.text").set_value("a picture")
    run(at)
    assert len(hit_names(at, shapes)) == 12
    at.multiselect(key="search.types").set_value(["png"])
    at.number_input(key="search.min_side").set_value(300)
    run(at)
    assert hit_names(at, shapes) == {"tall-2.png", "tall-3.png"}  # PNG, and both sides >= 300 px
    at.multiselect(key="search.types").set_value([])
    at.number_input(key="search.min_side").set_value(0)
    at.segmented_control(key="search.orientation").set_value("Square")
    run(at)
    assert hit_names(at, shapes) == {f"square-{i}.jpg" for i in range(4)}
    assert [p.proto.popover.label for p in at.get("popover")] == ["More filters (1)"]
    no_streamlit_warnings(at, streamlit_warnings)

    at.switch_page("app_pages/library.py")
    run(at)
    at.segmented_control(key="library.orientation").set_value("Landscape")
    run(at)
    assert "**4** of 12 images match" in texts(at.markdown)
    assert len(open_buttons(at)) == 4
    # Days: everything was added today (UTC), so a window that ends yesterday keeps nothing, and
    # a start after the end is a warning, not a crash.
    from datetime import datetime, timedelta, timezone
    today = datetime.now(timezone.utc).date()
    at.date_input(key="library.until").set_value(today - timedelta(days=1))
    run(at)
    assert any("No images match" in i for i in texts(at.info))
    at.date_input(key="library.since").set_value(today)
    run(at)
    assert any("swap the dates" in w for w in texts(at.warning))
    assert "**4** of 12 images match" in texts(at.markdown)  # the dates are left out meanwhile
    no_streamlit_warnings(at, streamlit_warnings)


def hit_ids(at) -> list[str]:
    return [t.key.rsplit(".", 1)[1] for t in at.toggle if t.key.startswith("search.pick.")]


def route_badges(at) -> list[str]:
    return [m.value for m in at.main.markdown if m.value.startswith((":violet-badge[", ":green-badge[", ":blue-badge["))]


@pytest.fixture
def coded(seed):
    """Eight pictures, one of them named by its product code."""
    uploads = [Upload(f"shot-{i}.jpg", jpeg_bytes(400 + i)) for i in range(7)]
    uploads.append(Upload("SKU-4471 red cape.jpg", jpeg_bytes(407)))
    return dict(seed(uploads).added)


def open_library(settings, tiny_embedder):
    from ragkit.library import Library
    return Library.open(settings, embedder=tiny_embedder)


def test_words_too_finds_codes_and_each_hit_says_which_route_found_it(app_env, coded, settings, tiny_embedder):
    at = search_page()
    assert at.toggle(key="search.words-too").value is True  # hybrid by default
    at.text_input(key="search.text").set_value("SKU-4471")
    run(at)
    code = coded["SKU-4471 red cape.jpg"].sha256
    assert hit_ids(at)[0] == code
    badges = route_badges(at)
    assert len(badges) == len(hit_ids(at)) == 6
    assert shown(badges[0]).endswith("words: 4471, sku]")  # by words (and maybe by picture too)
    assert ":blue-badge[:material/image: picture]" in badges[1:]

    at.toggle(key="search.words-too").set_value(False)  # by what the pictures show only
    run(at)
    library = open_library(settings, tiny_embedder)
    try:
        expected = [h.asset.sha256 for h in library.search_text("SKU-4471", 6, keywords=False)]
    finally:
        library.close()
    assert hit_ids(at) == expected and not route_badges(at)


def test_composed_query_moves_an_example_by_words_and_away_from_others(app_env, coded, settings, tiny_embedder):
    example = coded["shot-0.jpg"].sha256
    at = search_page()
    at.session_state["search.similar"] = example
    at.segmented_control(key="search.mode").set_value("Similar image")
    run(at)
    plain = hit_ids(at)
    at.text_input(key="search.with").set_value("red cape")
    run(at)  # the weight counts once there are words
    at.slider(key="search.weight").set_value(0.8)
    at.text_input(key="search.not").set_value("people")
    run(at)
    library = open_library(settings, tiny_embedder)
    try:
        expected = library.search_composed(similar=example, text="red cape", text_weight=0.8, not_text="people", k=6)
    finally:
        library.close()
    assert hit_ids(at) == [h.asset.sha256 for h in expected] != plain
    assert example not in hit_ids(at)
    assert any("with “red cape” (weight 0.80), not “people”" in shown(m) for m in texts(at.markdown))

    at.segmented_control(key="search.mode").set_value("Example image")
    run(at)
    at.file_uploader(key="search.example").set_value(("query.jpg", jpeg_bytes(401), "image/jpeg"))
    run(at)
    library = open_library(settings, tiny_embedder)
    try:
        expected = library.search_composed(image=jpeg_bytes(401), text="red cape", text_weight=0.8,
                                           not_text="people", k=6)
    finally:
        library.close()
    assert hit_ids(at) == [h.asset.sha256 for h in expected]


# --- links ------------------------------------------------------------------------------------
def fresh_session(params: dict, page: str = SEARCH):
    """Another browser opening the link: a new session, the same URL."""
    at = new_app()
    at.query_params = dict(params)
    at.switch_page(page)
    return run(at)


def test_a_search_link_shows_the_same_results_in_another_session(app_env, shapes, streamlit_warnings):
    at = search_page()
    at.text_input(key="search.text").set_value("a picture")
    at.slider(key="search.k").set_value(5)
    at.toggle(key="search.words-too").set_value(False)
    at.multiselect(key="search.types").set_value(["jpeg"])
    at.segmented_control(key="search.orientation").set_value("Square")
    at.multiselect(key="search.tags").set_value(["hero"])
    run(at)
    results = hit_ids(at)
    assert len(results) == 4
    link = dict(at.query_params)
    assert link == {"q": "a picture", "words": "0", "k": "5", "tag": "hero", "type": "jpeg", "orientation": "square"}

    other = fresh_session(link)
    assert hit_ids(other) == results
    assert other.text_input(key="search.text").value == "a picture"
    assert other.toggle(key="search.words-too").value is False
    assert other.segmented_control(key="search.orientation").value == "Square"
    assert not [w for w in texts(other.warning) if "link" in w], texts(other.warning)
    no_streamlit_warnings(other, streamlit_warnings)

    similar = shapes["wide-0.jpg"].sha256
    composed = fresh_session({"similar": similar, "with": "red", "weight": "0.8", "k": "3"})
    assert composed.segmented_control(key="search.mode").value == "Similar image"
    assert len(hit_ids(composed)) == 3 and similar not in hit_ids(composed)
    assert dict(composed.query_params) == {"mode": "similar", "similar": similar, "with": "red", "weight": "0.8",
                                           "k": "3"}
    assert fresh_session(dict(composed.query_params)).session_state["search.weight"] == 0.8


def test_hostile_link_values_are_warnings_and_the_rest_still_works(app_env, shapes):
    at = fresh_session({"q": "a picture", "k": "9999", "since": "2026-13-01", "type": ["png", "exe"],
                        "orientation": 'x" or 1==1', "weight": "nan", "similar": "../../etc/passwd",
                        "tag": "bad\u0000tag", "min_side": "-1", "words": "maybe", "debug": "1"})
    warning = shown(" ".join(texts(at.warning)))
    for part in ("k=", "since=", "'exe'", "orientation=", "weight=", "similar=", "tag=", "min_side=", "words=",
                 "“debug” is not something a link can set"):
        assert part in warning, part
    assert hit_names(at, shapes) == {f"tall-{i}.png" for i in range(4)}  # the valid rest: "a picture", PNG only
    assert at.slider(key="search.k").value == 6
    assert dict(at.query_params) == {"q": "a picture", "k": "6", "type": "png"}  # the URL now says what is shown


def test_a_link_to_a_deleted_example_or_asset_says_so(app_env, shapes, settings, tiny_embedder):
    gone = shapes["tall-0.png"].sha256
    library = open_library(settings, tiny_embedder)
    try:
        library.delete([gone])
    finally:
        library.close()
    at = fresh_session({"similar": gone})
    assert any("is no longer in the library" in w for w in texts(at.warning))
    assert at.segmented_control(key="search.mode").value == "Words" and not hit_ids(at)
    page = fresh_session({"asset": gone}, page="app_pages/library.py")
    assert any("this link points to" in w and "no longer in the library" in w for w in texts(page.warning))


def test_the_library_keeps_the_open_asset_in_the_url(app_env, shapes):
    at = run(new_app())
    wide = shapes["wide-1.jpg"].sha256
    at.button(key=f"library.open.{wide}").click()
    run(at)
    assert dict(at.query_params) == {"asset": wide}
    other = fresh_session({"asset": wide}, page="app_pages/library.py")
    assert "### wide-1.jpg" in [shown(m) for m in texts(other.markdown)]  # the details dialog is open
    assert dict(other.query_params) == {"asset": wide}


def test_search_links_round_trip_any_search_exactly():
    from ragkit.storage.filters import Filters
    from ragkit.search.links import SearchLink, parse_search, search_params
    cases = [SearchLink(),
             SearchLink(words='a "red" cape & SKU-4471 ?k=50 #top', words_too=False, k=12,
                        filters=Filters(tags=("ünïcødé 🦄", 'a"quote'), source="generated", since="2026-01-01",
                                        until="2026-01-31", types=("png", "webp"), orientation="portrait",
                                        min_side=2048)),
             SearchLink(mode="similar", similar="ab" * 32, with_words="in red", weight=0.25, not_words="people"),
             SearchLink(mode="image", with_words="gold trim")]
    for link in cases:
        assert parse_search(search_params(link), default_k=6, max_k=50) == (link, [])


# --- the Duplicates view ----------------------------------------------------------------------
@pytest.fixture
def copies(seed):
    """Three shots, each with a half-size re-encoded copy, and three other pictures."""
    from tests.images_factory import encode, picture
    uploads = []
    for i in range(3):
        image = picture(500 + i, (640, 480))
        uploads += [Upload(f"shot-{i}.jpg", encode(image, "JPEG", quality=92)),
                    Upload(f"shot-{i}-small.jpg", encode(image.resize((320, 240)), "JPEG", quality=70))]
    uploads += [Upload(f"other-{i}.jpg", encode(picture(600 + i, (640, 480)), "JPEG", quality=92)) for i in range(3)]
    return dict(seed(uploads).added)


def group_rows(at) -> list[str]:
    return [m.value for m in at.main.markdown if m.value.startswith("**Group ")]


def test_duplicates_view_keeps_the_chosen_copy_and_deletes_the_others_after_confirming(
        app_env, copies, settings, streamlit_warnings):
    at = run(new_app())
    at.segmented_control(key="library.view").set_value("duplicates")
    run(at)
    from ragkit.search.duplicates import DEFAULT_THRESHOLD
    assert at.number_input(key="library.dup-threshold").value == DEFAULT_THRESHOLD  # the core's default
    assert any("random weights" in w for w in texts(at.warning))
    at.number_input(key="library.dup-threshold").set_value(0.998)  # random weights crowd pictures together
    at.button(key="library.dup-find").click()
    run(at)
    assert [g.split(" · lowest")[0] for g in group_rows(at)] == [f"**Group {n}** · 2 pictures" for n in (1, 2, 3)]
    assert "**3** groups of near-duplicates · keeping one of each would remove **3** images" in texts(at.markdown)

    small, original = copies["shot-1-small.jpg"].sha256, copies["shot-1.jpg"].sha256
    at.button(key=f"library.dup-keep.{original}.{small}").click()  # the group's suggestion is the bigger one
    run(at)
    assert any("Move **the other 1** to the trash" in w for w in texts(at.warning))
    assert settings.data_dir.joinpath("originals").exists()
    at.button(key=f"library.dup-yes.{original}").click()
    run(at)
    assert [g.split(" · lowest")[0] for g in group_rows(at)] == ["**Group 1** · 2 pictures", "**Group 2** · 2 pictures"]
    assert not any("has changed since" in i for i in texts(at.info))  # our own delete: no stale warning
    from ragkit.library import Library
    library = Library.open(settings)
    try:
        assert library.count() == 8 and library.store.get(original).trashed and not library.store.get(small).trashed
        assert library.trash_count() == 1  # restorable from the Trash view until it is emptied
    finally:
        library.close()
    no_streamlit_warnings(at, streamlit_warnings)


def test_duplicates_not_duplicates_is_remembered_and_one_copy_can_go(app_env, copies, settings, streamlit_warnings):
    """"Not duplicates" hides a group for good (a file in the data folder; a damaged one is one line and
    the view still works); "Remove this one" trashes only that copy; the toast says what happened."""
    def duplicates_page():
        at = run(new_app())
        at.segmented_control(key="library.view").set_value("duplicates")
        run(at)
        at.number_input(key="library.dup-threshold").set_value(0.998)
        at.button(key="library.dup-find").click()
        return run(at)

    at = duplicates_page()
    assert len(group_rows(at)) == 3
    shot0, shot0_small = copies["shot-0.jpg"].sha256, copies["shot-0-small.jpg"].sha256
    at.button(key=f"library.dup-dismiss.{shot0}").click()
    run(at)
    assert len(group_rows(at)) == 2
    assert f"library.dup-dismiss.{shot0}" not in [b.key for b in at.button]
    assert settings.data_dir.joinpath("duplicates-dismissed.json").is_file()

    at = duplicates_page()  # a new session, a new look: the answer is remembered
    assert len(group_rows(at)) == 2
    assert f"library.dup-dismiss.{shot0}" not in [b.key for b in at.button]

    shot2, shot2_small = copies["shot-2.jpg"].sha256, copies["shot-2-small.jpg"].sha256
    at.button(key=f"library.dup-drop.{shot2}.{shot2_small}").click()
    run(at)
    assert any(w.startswith("Move **shot\\-2\\-small") and "to the trash?" in w for w in texts(at.warning))
    at.button(key=f"library.dup-yes.{shot2}").click()
    run(at)
    assert [t.value for t in at.toast] == ["Moved 1 image to the trash"]
    assert len(group_rows(at)) == 1  # a group of one is no group
    from ragkit.library import Library
    library = Library.open(settings)
    try:
        assert library.store.get(shot2_small).trashed and not library.store.get(shot2).trashed
        assert not library.store.get(shot0_small).trashed  # dismissing deletes nothing
    finally:
        library.close()

    settings.data_dir.joinpath("duplicates-dismissed.json").write_text('{"groups": [[')  # damaged
    at = duplicates_page()
    damaged = [w for w in texts(at.warning) if "is damaged" in w]
    assert len(damaged) == 1 and "Delete the file" in damaged[0] and "dismissed" in damaged[0]
    assert len(group_rows(at)) == 2  # every group shown again, the view still works
    no_streamlit_warnings(at, streamlit_warnings)
