"""Acting on many assets in the app (AppTest: the real app.py, real Milvus Lite, the tiny model): a selection
that survives paging and filters, bulk tags, rights, zip, tray and delete; the Trash view (restore,
empty); usage rights in the details dialog and their badges; the tray asks before an expired asset."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ragkit.ingest.pipeline import Upload
from ragkit.rights import DAY_MS, now_ms, rights_change
from tests.e2e_support import all_text, app_env, new_app, run, seed, shown, texts  # noqa: F401 - fixtures
from tests.e2e_support import no_streamlit_warnings, streamlit_warnings  # noqa: F401 - streamlit_warnings: a fixture
from tests.images_factory import jpeg_bytes

SEEDS = range(300, 330)


def _open_library(settings, tiny_embedder):
    from ragkit.library import Library
    return Library.open(settings, embedder=tiny_embedder)


def tiles(at) -> list[str]:
    return [b.key.rsplit(".", 1)[1] for b in at.button if b.key and b.key.startswith("library.open.")]


def tray_ids(at) -> list[str]:
    return list(at.session_state["ragkit.tray"]) if "ragkit.tray" in at.session_state else []


def bar_text(at) -> str:
    return " ".join(texts(at.markdown))


def test_selection_survives_paging_and_filters_and_tags_many_at_once(app_env, seed, streamlit_warnings):
    seed([Upload(f"shot-{i:02d}.jpg", jpeg_bytes(i)) for i in SEEDS[:22]], tags=["studio"])
    seed([Upload(f"beach-{i}.jpg", jpeg_bytes(i)) for i in SEEDS[22:]], tags=["beach"])
    at = run(new_app())
    first = tiles(at)
    assert len(first) == 24
    at.checkbox(key=f"library.select.{first[0]}").check()
    run(at)
    at.checkbox(key=f"library.select.{first[5]}").check()
    run(at)
    assert "**2 selected**" in bar_text(at)

    at.get("pagination")[0].set_value(2)  # another page: the selection stays, its count too
    run(at)
    second = tiles(at)
    at.checkbox(key=f"library.select.{second[0]}").check()
    run(at)
    assert "**3 selected**" in bar_text(at)
    at.multiselect(key="library.tags").set_value(["beach"])  # another filter: the selection stays
    run(at)
    assert "**3 selected**" in bar_text(at)
    selected = {first[0], first[5], second[0]}
    beach = tiles(at)
    assert len(beach) == 8 and all(at.checkbox(key=f"library.select.{sha}").value == (sha in selected) for sha in beach)
    assert at.button(key="library.select-page").label == "Select this page (8)"
    at.button(key="library.select-page").click()  # the 8 beach images
    run(at)
    assert f"**{len(selected | set(beach))} selected**" in bar_text(at)
    unselect = at.button(key="library.select-page")  # the whole page is selected: the button undoes it
    assert unselect.label == "Unselect this page"
    unselect.click()
    run(at)
    assert f"**{len(selected - set(beach))} selected**" in bar_text(at)
    at.multiselect(key="library.tags").set_value([])
    run(at)
    at.button(key="library.select-all").click()
    run(at)
    assert "**30 selected**" in bar_text(at)

    at.multiselect(key="library.selection.add-tags").set_value(["Campaign 7"])
    at.multiselect(key="library.selection.remove-tags").set_value(["studio"])
    apply = at.button(key="library.selection.apply-tags")  # a form: the fields go with the click
    assert apply.label == "Apply to 30"
    apply.click()
    run(at)
    assert set(at.multiselect(key="library.tags").options) == {"campaign 7 (30)", "beach (8)"}
    from ragkit.ui import state  # the app holds the Lite file: ask the app's library
    assert state.library().count(tags=["campaign 7"]) == 30 and state.library().count(tags=["studio"]) == 0

    at.button(key="library.selection.clear").click()
    run(at)
    assert "selected**" not in bar_text(at)
    assert not any(c.value for c in at.checkbox if c.key.startswith("library.select."))
    no_streamlit_warnings(at, streamlit_warnings)


def test_bulk_delete_goes_to_the_trash_where_restore_and_empty_work(app_env, seed):
    report = seed([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in SEEDS[:6]], tags=["draft"])
    _delete_restore_and_empty([a.sha256 for _, a in report.added])


def test_bulk_delete_restore_and_empty_on_a_milvus_server(server, app_env, monkeypatch, tmp_path, tiny_embedder):
    """The same clicks with the library on `milvus-lite server` and on the real Milvus engine."""
    from ragkit.config import Settings
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    library = _open_library(Settings.load(env={**app_env, **server.env}, cwd=tmp_path, secrets_files=[]),
                            tiny_embedder)
    try:
        report = library.ingest_uploads([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in SEEDS[:6]], tags=["draft"])
    finally:
        library.close()
    _delete_restore_and_empty([a.sha256 for _, a in report.added])


def _delete_restore_and_empty(ids: list[str]) -> None:
    """Select 4 of 6, delete (cancel, then confirm), restore one from its tile and one by selection,
    delete one for good, empty the rest; every step as the page and the store see it."""
    at = run(new_app())
    from ragkit.ui import state
    library = state.library()
    for sha in ids[:4]:
        at.checkbox(key=f"library.select.{sha}").check()
        run(at)
    at.button(key="library.selection.delete").click()
    run(at)
    assert any("Move **4 images** to the trash" in w and "30 days" in w for w in texts(at.warning))
    at.button(key="library.selection.delete-cancel").click()
    run(at)
    assert len(tiles(at)) == 6
    at.button(key="library.selection.delete").click()
    run(at)
    at.button(key="library.selection.delete-confirm").click()
    run(at)
    assert sorted(tiles(at)) == sorted(ids[4:]) and "**2** images, newest first" in texts(at.markdown)
    assert at.sidebar.metric[0].value == "2"
    view = at.segmented_control(key="library.view")
    assert list(view.options) == ["Library (2)", "Duplicates", "Trash (4)"]
    assert "selected**" not in bar_text(at)  # the deleted ones left the selection

    view.set_value("trash")
    run(at)
    assert "**4** images in the trash" in " ".join(texts(at.markdown))
    assert sum("30 days left" in m for m in texts(at.markdown)) == 4
    assert sum(c.startswith("Deleted ") for c in texts(at.caption)) == 4
    assert len([b for b in at.button if b.key.startswith("library.restore.")]) == 4
    at.button(key=f"library.restore.{ids[0]}").click()
    run(at)
    assert "**3** images in the trash" in " ".join(texts(at.markdown))
    assert at.segmented_control(key="library.view").value == "trash"  # the count changed; the view did not
    at.checkbox(key=f"trash.select.{ids[1]}").check()
    run(at)
    at.button(key="library.restore-selected").click()
    run(at)
    assert "**2** images in the trash" in " ".join(texts(at.markdown))
    assert library.count() == 4 and library.get(ids[1]).tags == ("draft",)

    at.checkbox(key=f"trash.select.{ids[2]}").check()  # one of the two, for good
    run(at)
    at.button(key="library.delete-selected").click()
    run(at)
    assert any("Delete the **1 image** you selected for good" in w for w in texts(at.warning))
    at.button(key="library.empty-cancel").click()
    run(at)
    assert not any("for good" in w for w in texts(at.warning)) and library.trash_count() == 2
    at.button(key="library.delete-selected").click()
    run(at)
    at.button(key="library.empty-confirm").click()
    run(at)
    assert "**1** image in the trash" in " ".join(texts(at.markdown))
    assert library.store.get(ids[2]) is None and library.store.get(ids[3]).trashed

    at.button(key="library.empty-trash").click()
    run(at)
    assert any("Delete the **1 image** in the trash for good" in w for w in texts(at.warning))
    at.button(key="library.empty-confirm").click()
    run(at)
    assert any("The trash is empty" in i for i in texts(at.info))
    for sha in ids[2:4]:
        assert library.store.get(sha) is None and not library.blobs.original_path(sha).exists()
    at.segmented_control(key="library.view").set_value("library")
    run(at)
    assert sorted(tiles(at)) == sorted([ids[0], ids[1], *ids[4:]])


def test_the_selection_as_a_zip_and_in_the_tray_up_to_the_models_limit(app_env, seed, monkeypatch):
    monkeypatch.setenv("RAGKIT_GEMINI_MODEL", "gemini-3.1-flash-lite-image")  # takes 3 references (the 3.x others 14)
    report = seed([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in SEEDS[:6]])
    ids = [a.sha256 for _, a in report.added]
    at = run(new_app())
    from ragkit.ui import state
    state.library().set_rights([ids[0]], rights_change(until="2020-01-01"))
    state.mark_changed(state.library())
    run(at)
    assert any("Expired 2020-01-01" in m for m in texts(at.markdown))  # the badge on its tile
    for sha in ids[:5]:
        at.checkbox(key=f"library.select.{sha}").check()
        run(at)

    at.button(key="library.selection.zip").click()
    run(at)
    path = Path(at.session_state["library.selection.zip-path"])
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("metadata.json"))
        assert sorted(a["sha256"] for a in manifest["assets"]) == sorted(ids[:5])
        assert len([n for n in archive.namelist() if n.startswith("originals/")]) == 5
    assert at.get("download_button")[0].label.startswith("Save ragkit-selection-")

    at.button(key="library.selection.tray").click()
    run(at)
    assert any("1 of the selected images should not be used as references" in w and "usage rights ended" in w
               for w in texts(at.warning))
    at.button(key="library.selection.tray-others").click()
    run(at)
    # Nano Banana 2 Lite takes 3 references: the first 3 of the others.
    assert at.session_state["ragkit.tray"] == ids[1:4]
    assert "**References** · 3" in texts(at.sidebar.markdown)


def test_usage_rights_on_the_selection(app_env, seed):
    report = seed([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in SEEDS[:4]])
    ids = [a.sha256 for _, a in report.added]
    at = run(new_app())
    from ragkit.ui import state
    for sha in ids[:3]:
        at.checkbox(key=f"library.select.{sha}").check()
        run(at)
    at.text_input(key="library.selection.note").input("bad\tnote")
    at.button(key="library.selection.apply-rights").click()
    run(at)
    assert any("control characters" in shown(e) for e in texts(at.error))
    assert not any(a.licence for a in state.library().get_many(ids))  # nothing half-applied

    from datetime import date
    at.date_input(key="library.selection.until").set_value(date(2020, 5, 31))
    at.text_input(key="library.selection.note").input("Agency X, print only")
    at.segmented_control(key="library.selection.reference").set_value("forbid")
    at.button(key="library.selection.apply-rights").click()
    run(at)
    changed = state.library().get_many(ids)
    assert [(a.licence, a.to_dict()["usable_until"], a.no_reference) for a in changed] == \
        [("Agency X, print only", "2020-05-31", True)] * 3 + [("", None, False)]
    assert sum("Expired 2020-05-31" in m for m in texts(at.markdown)) == 3

    at.checkbox(key="library.selection.no-until").check()  # only the date goes; the rest is kept
    at.button(key="library.selection.apply-rights").click()
    run(at)
    assert [(a.licence, a.usable_until, a.no_reference) for a in state.library().get_many(ids[:3])] == \
        [("Agency X, print only", 0, True)] * 3


def test_rights_in_the_details_dialog_and_hostile_values(app_env, seed):
    report = seed([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in SEEDS[:2]])
    sha = report.added[-1][1].sha256
    at = run(new_app())
    at.button(key=f"library.open.{sha}").click()
    run(at)
    save = at.button(key=f"library.rights.{sha}.save")
    assert save.disabled  # nothing changed yet
    at.text_input(key=f"library.rights.{sha}.note").input("[x](javascript:alert(1)) Getty #42")
    from datetime import date
    at.date_input(key=f"library.rights.{sha}.until").set_value(date(2021, 3, 31))
    at.checkbox(key=f"library.rights.{sha}.no-reference").check()
    run(at)
    at.button(key=f"library.rights.{sha}.save").click()
    run(at)
    from ragkit.ui import state
    asset = state.library().get(sha)
    assert asset.licence == "[x](javascript:alert(1)) Getty #42" and asset.no_reference
    assert asset.to_dict()["usable_until"] == "2021-03-31"
    text = all_text(at)
    assert "Expired 2021-03-31" in text and "Not as reference" in text
    assert "usage rights ended after 2021\\-03\\-31" in text  # the dialog says why it is not for the Studio
    assert "[x](javascript" not in text  # shown literally wherever it appears

    at.text_input(key=f"library.rights.{sha}.note").input("line\x1b[2J break")
    run(at)
    at.button(key=f"library.rights.{sha}.save").click()
    run(at)
    assert any("control characters" in shown(e) for e in texts(at.error))
    assert state.library().get(sha).licence == "[x](javascript:alert(1)) Getty #42"  # nothing lost

    # The tray asks before taking it.
    at.toggle(key=f"library.details.pick.{sha}").set_value(True)
    run(at)
    assert tray_ids(at) == []
    assert any("Use it as a reference anyway?" in w for w in texts(at.warning))
    at.button(key=f"library.details.pick-anyway.{sha}").click()
    run(at)
    assert at.session_state["ragkit.tray"] == [sha]
    at.switch_page("app_pages/studio.py")  # the Studio's tray says so again, before it is sent
    run(at)
    assert any("Expired 2021-03-31" in m for m in texts(at.markdown))


def test_search_results_select_all_badges_and_ask_first(app_env, seed, settings, tiny_embedder):
    report = seed([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in SEEDS[:8]], tags=["cat"])
    ids = [a.sha256 for _, a in report.added]
    library = _open_library(settings, tiny_embedder)
    try:
        library.set_rights([ids[2]], rights_change(until="2020-01-01"))
    finally:
        library.close()
    at = run(new_app())
    at.button(key="library.select-page").click()  # all 8 in the Library's own selection
    run(at)
    at.switch_page("app_pages/search.py")
    run(at)
    at.text_input(key="search.text").input("anything")
    run(at)
    hits = [t.key.rsplit(".", 1)[1] for t in at.toggle if t.key.startswith("search.pick.")]
    assert len(hits) == 6
    assert any("Expired 2020-01-01" in m for m in texts(at.markdown)) == (ids[2] in hits)
    at.button(key="search.select-all").click()
    run(at)
    assert "**6 selected**" in " ".join(texts(at.markdown))
    assert at.button(key="search.select-all").label == "Unselect these results"
    at.multiselect(key="search.selection.add-tags").set_value(["picked"])
    at.button(key="search.selection.apply-tags").click()
    run(at)
    from ragkit.ui import state
    assert state.library().count(tags=["picked"]) == 6

    expired_hit = ids[2] if ids[2] in hits else None
    if expired_hit:
        at.toggle(key=f"search.pick.{expired_hit}").set_value(True)
        run(at)
        assert any("anyway" in w for w in texts(at.warning)) and tray_ids(at) == []
        at.button(key=f"search.pick-cancel.{expired_hit}").click()
        run(at)
        assert not any("anyway" in w for w in texts(at.warning)) and tray_ids(at) == []

    at.button(key="search.selection.delete").click()
    run(at)
    at.button(key="search.selection.delete-confirm").click()
    run(at)
    assert state.library().count() == 2 and state.library().trash_count() == 6
    assert not [t for t in at.toggle if t.key.startswith("search.pick.") and t.key.rsplit(".", 1)[1] in hits]
    at.switch_page("app_pages/library.py")  # what went to the trash left the Library's selection too
    run(at)
    assert "**2 selected**" in bar_text(at)


def test_a_picture_added_again_from_the_trash_is_reported_as_restored(app_env, seed):
    report = seed([Upload("hero.jpg", jpeg_bytes(5))])
    sha = report.added[0][1].sha256
    at = run(new_app())
    from ragkit.ui import state
    state.library().trash([sha])
    state.mark_changed(state.library())
    at.file_uploader[0].set_value([("hero again.jpg", jpeg_bytes(5), "image/jpeg")])
    run(at)
    at.button(key="library.add").click()
    run(at)
    assert any("1 restored from the trash" in s for s in texts(at.success))
    rows = at.dataframe[0].value
    assert dict(zip(rows["File"], rows["Result"])) == {"hero again.jpg": "Restored from the trash"}
    assert tiles(at) == [sha]


def test_trash_expires_in_a_long_running_app(app_env, seed):
    report = seed([Upload(f"s{i}.jpg", jpeg_bytes(i)) for i in SEEDS[:2]])
    ids = [a.sha256 for _, a in report.added]
    at = run(new_app())
    from ragkit.ui import state
    state.library().trash([ids[0]], now=now_ms() - 31 * DAY_MS)  # trashed long ago, while the app ran
    state.library().trash([ids[1]])
    at.segmented_control(key="library.view").set_value("trash")
    run(at)
    assert "**1** image in the trash" in " ".join(texts(at.markdown))
    assert state.library().store.get(ids[0]) is None


def test_an_old_library_says_how_to_get_the_trash(app_env, settings, tiny_embedder):
    from tests.support.libraries import old_library
    assets, _ = old_library(settings, tiny_embedder.dim, rows=3)
    at = run(new_app())
    at.segmented_control(key="library.view").set_value("trash")
    run(at)
    assert any("has no trash" in i and "python -m ragkit upgrade" in i for i in texts(at.info))
    at.segmented_control(key="library.view").set_value("library")
    run(at)
    at.checkbox(key=f"library.select.{assets[-1].sha256}").check()
    run(at)
    at.button(key="library.selection.delete").click()
    run(at)
    assert any("for good" in w and "ragkit upgrade" in w for w in texts(at.warning))
