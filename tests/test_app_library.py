"""The Library page through streamlit's AppTest: the real app.py, real Milvus Lite, the tiny model."""
from __future__ import annotations

import logging
import re

import pytest

from ragkit.ingest.pipeline import Provenance, Upload
from ragkit.records import SOURCE_GENERATED
from tests.e2e_support import all_text, app_env, new_app, run, seed, shown, texts  # noqa: F401 - fixtures
from tests.images_factory import jpeg_bytes, png_bytes

LIBRARY_SEEDS = range(100, 130)


def open_buttons(at):
    return [b for b in at.button if b.key and b.key.startswith("library.open.")]


@pytest.fixture
def streamlit_warnings(monkeypatch):
    """Everything Streamlit's widget-policy checks log (e.g. "created with a default value but also had
    its value set via the Session State API"). Streamlit logs that one once per process, so re-arm it."""
    from streamlit.elements.lib import policies
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    policies._LOGGER.addHandler(handler)  # noqa: SLF001 - streamlit's loggers don't propagate
    try:
        yield records
    finally:
        policies._LOGGER.removeHandler(handler)  # noqa: SLF001


def no_streamlit_warnings(at, records) -> None:
    logged = [r.getMessage() for r in records]
    assert not logged, logged
    assert not any("Session State API" in w for w in texts(at.warning)), texts(at.warning)


def test_empty_library_tells_a_new_user_what_to_do(app_env):
    at = run(new_app())
    text = all_text(at)
    assert "Library" in texts(at.title)
    assert "Your library is empty" in text
    assert any("python -m ragkit ingest" in c for c in texts(at.code))
    assert "200 MB per file" in text and "maxUploadSize" in text
    assert len(at.file_uploader) == 1 and at.file_uploader[0].accept_multiple_files
    assert at.button(key="library.add").disabled  # nothing to add yet
    # Every page says loudly that the test model has random weights.
    assert any("random weights" in w for w in texts(at.warning))
    assert any("Random weights" in e for e in texts(at.sidebar.error))
    assert at.sidebar.metric[0].value == "0"
    assert "ragkit-tiny" in shown(all_text(at))


def test_upload_of_good_and_bad_files_reports_each_outcome(app_env, tmp_path):
    at = run(new_app())
    good = [(f"shot-{i}.jpg", jpeg_bytes(i), "image/jpeg") for i in range(3)]
    files = good + [
        ("poster.png", png_bytes(7), "image/png"),
        ("shot-0 copy.jpg", jpeg_bytes(0), "image/jpeg"),          # same bytes as shot-0.jpg
        ("broken.jpg", jpeg_bytes(8)[:300], "image/jpeg"),           # truncated
        ("notes.txt", b"meeting notes, not a picture", "text/plain"),
    ]
    at.file_uploader[0].set_value(files)
    run(at)
    add = at.button(key="library.add")
    assert add.label == "Add 7 images to the library" and not add.disabled
    at.text_input(key="library.upload-tags").set_value("Summer, campaign")
    add.click()
    run(at)

    summary = " ".join(texts(at.warning))
    assert "4 added" in summary and "1 already in the library" in summary and "2 rejected" in summary
    rows = at.dataframe[0].value
    outcome = dict(zip(rows["File"], rows["Result"]))
    assert outcome == {"shot-0.jpg": "Added", "shot-1.jpg": "Added", "shot-2.jpg": "Added",
                       "poster.png": "Added", "shot-0 copy.jpg": "Already in the library",
                       "broken.jpg": "Rejected", "notes.txt": "Rejected"}
    why = dict(zip(rows["File"], rows["Why"]))
    assert why["broken.jpg"] and why["notes.txt"]  # a reason a person can read
    assert why["shot-0 copy.jpg"] == "same picture as shot-0.jpg (in this upload)"  # a name, not a hash
    assert rows["Result"].tolist()[:2] == ["Rejected", "Rejected"]  # what needs attention first

    # The drop zone is empty again; the grid shows the new images, newest first; the sidebar counts them.
    assert len(at.file_uploader) == 1 and not at.file_uploader[0].value
    assert len(open_buttons(at)) == 4
    assert "**4** images, newest first" in texts(at.markdown)
    assert at.sidebar.metric[0].value == "4"
    captions = " ".join(texts(at.caption))
    assert captions.index("poster") < captions.index("shot\\-2") < captions.index("shot\\-0")
    # Tags typed at upload are on the new images (normalised) and offered as filters.
    assert set(at.multiselect(key="library.tags").options) == {"summer (4)", "campaign (4)"}

    at.button(key="library.dismiss-report").click()
    run(at)
    assert not at.dataframe


@pytest.fixture
def held_ingest(monkeypatch):
    """Uploads wait for `release.set()` before they are ingested (the real ingest, then)."""
    import threading
    from ragkit.library import Library
    release = threading.Event()
    real_ingest = Library.ingest_uploads

    def ingest_when_released(self, *args, **kwargs):
        assert release.wait(60), "the test never released the upload"
        return real_ingest(self, *args, **kwargs)

    monkeypatch.setattr(Library, "ingest_uploads", ingest_when_released)
    yield release
    release.set()


def test_an_upload_goes_on_while_another_page_is_shown_and_the_library_reports_it(app_env, held_ingest):
    """Leaving the Library stops its script run, not the upload: the sidebar of the other pages
    counts it on, and the Library shows its report the next time it is shown."""
    from ragkit.ui import state, uploads
    at = run(new_app())
    library = state.library()  # the app's own (one per process)
    files = [Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in range(3)] + [Upload("notes.txt", b"no picture")]
    pending = uploads.start(library, files, tags=["away"])  # as Add does, then the user leaves
    at.session_state[uploads.K_UPLOAD] = pending
    at.switch_page(state.SEARCH_PAGE)
    run(at)
    assert any("Adding 4 images: 0 done" in i for i in texts(at.sidebar.info)), texts(at.sidebar.info)

    held_ingest.set()
    assert pending.job.wait(60)
    assert files == []  # the bytes went with the job, not kept in the session
    run(at)  # (in the browser the note refreshes itself every second)
    assert any("Upload finished: 3 added, 1 rejected" in s for s in texts(at.sidebar.success))
    assert "See the report in the Library" in [link.label for link in at.sidebar.get("page_link")]
    assert library.count(tags=["away"]) == 3

    at.switch_page(state.LIBRARY_PAGE)
    run(at)
    summary = " ".join(texts(at.warning))
    assert "3 added" in summary and "1 rejected" in summary
    assert dict(zip(at.dataframe[0].value["File"], at.dataframe[0].value["Result"]))["notes.txt"] == "Rejected"
    assert "**3** images, newest first" in texts(at.markdown)
    assert uploads.K_UPLOAD not in at.session_state  # collected once
    at.switch_page(state.SEARCH_PAGE)
    run(at)
    assert not at.sidebar.success and not [i for i in texts(at.sidebar.info) if "Adding" in i]


def test_an_upload_that_fails_part_way_says_what_happened(app_env, monkeypatch):
    from ragkit.errors import StoreError
    from ragkit.ingest.pipeline import IngestProgress
    from ragkit.library import Library

    def failing_ingest(self, uploads, *, tags=(), on_progress=None):
        on_progress(IngestProgress(3, len(uploads), 3, 0, 0, "shot-2.jpg"))
        raise StoreError("Milvus could not store the assets: connection lost")

    monkeypatch.setattr(Library, "ingest_uploads", failing_ingest)
    at = run(new_app())
    at.file_uploader[0].set_value([(f"shot-{i}.jpg", jpeg_bytes(i), "image/jpeg") for i in range(5)])
    run(at)
    at.button(key="library.add").click()
    run(at)
    assert any("The upload stopped** after 3 of 5 files" in w for w in texts(at.warning)), texts(at.warning)
    assert any("connection lost" in shown(e) for e in texts(at.error))
    at.button(key="library.dismiss-report").click()
    run(at)
    assert not [w for w in texts(at.warning) if "upload stopped" in w]


def test_pages_and_filters(app_env, seed, streamlit_warnings):
    seed([Upload(f"shot-{i:02d}.jpg", jpeg_bytes(i)) for i in LIBRARY_SEEDS[:22]], tags=["studio"])
    seed([Upload(f"beach-{i}.jpg", jpeg_bytes(i)) for i in LIBRARY_SEEDS[22:27]], tags=["beach", "summer"])
    seed([Upload(f"gen-{i}.png", png_bytes(i), source=SOURCE_GENERATED,
                 provenance=Provenance("a red cape on a beach", "gemini-2.5-flash-image")) for i in LIBRARY_SEEDS[27:]])
    at = run(new_app())
    assert "**30** images, newest first · page 1 of 2" in texts(at.markdown)
    assert len(open_buttons(at)) == 24
    assert len(at.image) >= 24  # thumbnails, one per cell
    first_page = {b.key for b in open_buttons(at)}
    grid_captions = [c.value for c in at.main.caption if "\\." in c.value and "**" not in c.value]
    assert grid_captions[0].startswith(":material/auto_awesome: gen")  # newest first: generated last

    at.get("pagination")[0].set_value(2)
    run(at)
    assert len(open_buttons(at)) == 6
    assert not first_page & {b.key for b in open_buttons(at)}
    assert "page 2 of 2" in " ".join(texts(at.markdown))
    run(at)  # a rerun stays on page 2
    assert len(open_buttons(at)) == 6 and at.get("pagination")[0].value == 2

    # A new filter starts at page 1, and the pagination widget shows page 1 (not a stale page 2).
    at.segmented_control(key="library.source").set_value("Uploaded")
    run(at)
    assert "**27** of 30 images match · page 1 of 2" in texts(at.markdown)
    assert len(open_buttons(at)) == 24 and at.get("pagination")[0].value == 1
    at.get("pagination")[0].set_value(2)
    run(at)
    assert len(open_buttons(at)) == 3 and "page 2 of 2" in " ".join(texts(at.markdown))
    at.segmented_control(key="library.source").set_value("All")
    run(at)
    assert len(open_buttons(at)) == 24 and at.get("pagination")[0].value == 1
    no_streamlit_warnings(at, streamlit_warnings)

    at.selectbox(key="library.per-page").set_value(48)
    run(at)
    assert len(open_buttons(at)) == 30 and not at.get("pagination")

    at.multiselect(key="library.tags").set_value(["beach"])
    run(at)
    assert "**5** of 30 images match" in texts(at.markdown)
    assert all("beach" in c.value for c in at.main.caption if "\\.jpg" in c.value)
    at.multiselect(key="library.tags").set_value(["beach", "studio"])
    run(at)
    assert any("No images match" in i for i in texts(at.info))

    at.multiselect(key="library.tags").set_value([])
    at.segmented_control(key="library.source").set_value("Generated")
    run(at)
    assert "**3** of 30 images match" in texts(at.markdown)
    at.segmented_control(key="library.source").set_value("Uploaded")
    run(at)
    assert "**27** of 30 images match" in texts(at.markdown)
    no_streamlit_warnings(at, streamlit_warnings)


def test_emptied_last_page_and_new_images_restart_paging(app_env, seed, streamlit_warnings):
    report = seed([Upload(f"shot-{i:02d}.jpg", jpeg_bytes(i)) for i in LIBRARY_SEEDS[:25]])
    oldest = report.added[0][1]
    at = run(new_app())
    at.get("pagination")[0].set_value(2)
    run(at)
    assert [b.key for b in open_buttons(at)] == [f"library.open.{oldest.sha256}"]

    # Delete the only image of the last page: the page goes back to the (new) last page.
    at.button(key=f"library.open.{oldest.sha256}").click()
    run(at)
    at.button(key="library.delete").click()
    run(at)
    at.button(key="library.delete-confirm").click()
    run(at)
    assert "**24** images, newest first" in texts(at.markdown)
    assert len(open_buttons(at)) == 24 and not at.get("pagination")

    # Two pages again after an upload; the new image is on page 1, and the widget says page 1.
    at.file_uploader[0].set_value([("new.jpg", jpeg_bytes(7), "image/jpeg")])
    run(at)
    at.button(key="library.add").click()
    run(at)
    assert "**25** images, newest first · page 1 of 2" in texts(at.markdown)
    assert at.get("pagination")[0].value == 1
    assert [c.value for c in at.main.caption if "\\.jpg" in c.value][0] == "new\\.jpg"
    no_streamlit_warnings(at, streamlit_warnings)


def test_details_edit_tags_download_and_delete(app_env, seed):
    report = seed([Upload(f"shot-{n}.jpg", jpeg_bytes(i)) for n, i in enumerate(LIBRARY_SEEDS[:3])],
                  tags=["draft"])
    newest = report.added[-1][1]
    at = run(new_app())
    at.button(key=f"library.open.{newest.sha256}").click()
    run(at)
    text = all_text(at)
    assert "shot\\-2\\.jpg" in text and "320 × 240 px" in text and newest.sha256 in text
    assert at.get("download_button")[0].label == "Download original"
    assert len(at.image) == 3  # the three thumbnails; the viewer draws the picture itself, at full resolution
    assert sum("ragkit-viewer-frame" in h.value and "<img" in h.value for h in at.html) == 1

    # Tags: add one, remove one, save.
    tags = at.multiselect(key=f"library.edit-tags.{newest.sha256}")
    assert tags.value == ["draft"]
    tags.set_value(["hero", "Final Cut"])
    run(at)
    at.button(key=f"library.save-tags.{newest.sha256}").click()
    run(at)
    assert set(at.multiselect(key="library.tags").options) == {"draft (2)", "hero (1)", "final cut (1)"}
    assert at.button(key=f"library.save-tags.{newest.sha256}").disabled  # saved: nothing to save

    # Delete needs a confirmation; Cancel keeps the image.
    at.button(key="library.delete").click()
    run(at)
    assert any("for good" in w for w in texts(at.warning))
    at.button(key="library.delete-cancel").click()
    run(at)
    assert len(open_buttons(at)) == 3
    at.button(key="library.delete").click()
    run(at)
    at.button(key="library.delete-confirm").click()
    run(at)
    assert len(open_buttons(at)) == 2
    assert f"library.open.{newest.sha256}" not in {b.key for b in open_buttons(at)}
    assert at.sidebar.metric[0].value == "2"
    assert "shot\\-2\\.jpg" not in all_text(at)  # the dialog is closed
    assert set(at.multiselect(key="library.tags").options) == {"draft (2)"}


def test_generated_image_shows_its_provenance(app_env, seed):
    refs = seed([Upload(f"ref-{n}.jpg", jpeg_bytes(i)) for n, i in enumerate(LIBRARY_SEEDS[:2])]).added
    ref_ids = tuple(a.sha256 for _, a in refs)
    made = seed([Upload("campaign.png", png_bytes(140), source=SOURCE_GENERATED,
                        provenance=Provenance("Model on the beach wearing *this* cape", "gemini-2.5-flash-image",
                                              ref_ids))]).added[0][1]
    at = run(new_app())
    at.button(key=f"library.open.{made.sha256}").click()
    run(at)
    text = all_text(at)
    assert "How it was made" in text and "gemini-2.5-flash-image" in shown(text)
    assert "Model on the beach wearing \\*this\\* cape" in text  # shown literally, not as Markdown
    assert "2 reference image(s)" in text
    assert {"ref-0.jpg", "ref-1.jpg"} <= {shown(c) for img in at.image for c in img.captions}


def test_find_similar_opens_search_with_the_image_as_query(app_env, seed):
    report = seed([Upload(f"shot-{n}.jpg", jpeg_bytes(i)) for n, i in enumerate(LIBRARY_SEEDS[:8])])
    query = report.added[0][1]
    at = run(new_app())
    at.button(key=f"library.open.{query.sha256}").click()
    run(at)
    at.button(key="library.find-similar").click()
    run(at)
    assert texts(at.title) == ["Search"]
    assert at.segmented_control(key="search.mode").value == "Similar image"
    assert any("More like **shot\\-0\\.jpg**" in m for m in texts(at.markdown))
    hits = [t for t in at.toggle if t.key.startswith("search.pick.")]
    assert len(hits) == 6 and query.sha256 not in {t.key.rsplit(".", 1)[1] for t in hits}


def test_library_is_opened_once_per_process(app_env, monkeypatch):
    from ragkit.library import Library
    opened = []
    original = Library.open.__func__

    def counting_open(cls, *args, **kwargs):
        opened.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Library, "open", classmethod(counting_open))
    at = run(new_app())
    run(at)
    at.switch_page("app_pages/search.py")
    run(at)
    run(new_app())  # a second browser session
    assert len(opened) == 1


@pytest.mark.parametrize("env, expected", [
    ({"RAGKIT_CLIP_MODEL": "no-such-architecture"}, "Unknown CLIP architecture"),
    ({"RAGKIT_DEVICE": "quantum"}, "RAGKIT_DEVICE"),
])
def test_a_ragkit_error_at_open_is_a_message_with_the_fix_and_not_cached(app_env, monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = run(new_app())
    assert any(expected in shown(e) for e in texts(at.error))
    assert any("reload" in i for i in texts(at.info))
    assert "Library" not in texts(at.title)  # the page stopped there
    for name, value in app_env.items():  # the user fixes the setting and reloads
        monkeypatch.setenv(name, value)
    at = run(new_app())
    assert not at.error or all("Random weights" in e for e in texts(at.error))
    assert "Library" in texts(at.title)


def test_a_library_held_by_another_process_is_explained_and_retried(app_env):
    import subprocess
    import sys

    from tests.e2e_support import clean_env
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from ragkit.library import Library; Library.open(); "
                               "print('ready', flush=True); time.sleep(300)"],
        env=clean_env(app_env), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        at = run(new_app())
        errors = [shown(e) for e in texts(at.error)]
        assert any("open in another process" in e and "milvus-lite server" in e for e in errors)
        assert "Library" not in texts(at.title)
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    at = run(new_app())  # the other process is gone: a reload works (the failure was not cached)
    assert "Library" in texts(at.title)


def test_missing_thumbnail_shows_a_hint_not_a_traceback(app_env, seed, settings):
    report = seed([Upload("shot.jpg", jpeg_bytes(101))])
    sha = report.added[0][1].sha256
    from ragkit.storage.blobs import BlobStore
    BlobStore(settings.data_dir).thumbnail_path(sha).unlink()
    at = run(new_app())
    assert any("thumbnail missing" in c for c in texts(at.caption))
    assert re.search(r"doctor", all_text(at))


def test_export_gives_a_zip_of_the_filtered_library(app_env, seed):
    import json
    import zipfile
    from pathlib import Path
    seed([Upload(f"a{i}.jpg", jpeg_bytes(400 + i)) for i in range(3)], tags=["keep"])
    seed([Upload("b.jpg", jpeg_bytes(410))])
    at = run(new_app())
    at.multiselect(key="library.tags").set_value(["keep"])
    run(at)
    export = at.button(key="library.export")
    assert export.label == "Prepare a zip of 3 images"
    export.click()
    run(at)
    path = Path(at.session_state["library.export-path"])
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("metadata.json"))
    assert sorted(a["filename"] for a in manifest["assets"]) == ["a0.jpg", "a1.jpg", "a2.jpg"]
    assert all(a["tags"] == ["keep"] for a in manifest["assets"])
    assert path.parent == Path(app_env["RAGKIT_DATA_DIR"]) / "exports"


def test_an_error_quoting_a_secret_shows_without_it(app_env, seed, monkeypatch):
    """A server's message can quote the key or token it was given; the page shows *** instead."""
    from ragkit.errors import StoreError
    from ragkit.library import Library
    seed([Upload("a.jpg", jpeg_bytes(1))])
    monkeypatch.setenv("RAGKIT_MILVUS_TOKEN", "root:s3cret-token")

    def failing_page(self, *args, **kwargs):
        raise StoreError("Milvus refused token root:s3cret-token while listing assets")

    monkeypatch.setattr(Library, "page", failing_page)
    at = run(new_app())
    errors = shown(" ".join(texts(at.error)))
    assert "Milvus refused token *** while listing assets" in errors
    assert "s3cret-token" not in all_text(at)


def test_tiles_keep_codes_readable_show_the_full_name_on_hover_and_the_tags(app_env, seed):
    """Issue 21.6: "watch_silver_SK…" hid the SKU code, and tiles showed no tags."""
    long_name = "watch_silver_on_marble_studio_shot_final_SKU-88231-B.jpg"
    seed([Upload(long_name, jpeg_bytes(140))], tags=["watches", "silver", "hero", "summer"])
    seed([Upload("mug.jpg", jpeg_bytes(141))])
    at = run(new_app())
    name = next(c for c in at.caption if "watch" in c.value)
    assert shown(name.value).endswith("_SKU-88231-B.jpg") and "…" in name.value  # the end, with the code, stays
    assert shown(name.proto.help) == long_name  # the whole name on hover
    tags = [c.value for c in at.caption if ":material/sell:" in c.value]
    assert len(tags) == 1 and tags[0].count(" · ") == 3 and tags[0].endswith("· +1"), tags  # the mug: no line
