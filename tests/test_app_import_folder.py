"""Library › Import a folder (a folder on the server's disk, ingested in the background like the CLI's
`ingest FOLDER`), and the CLI naming the running app when the embedded database is taken."""
from __future__ import annotations

import threading

import pytest

from tests.e2e_support import app_env, new_app, run, shown, texts  # noqa: F401 - fixtures
from tests.images_factory import jpeg_bytes, png_bytes


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i in range(3):
        (root / f"shot-{i}.jpg").write_bytes(jpeg_bytes(40 + i))
    (root / "sub" / "poster.png").write_bytes(png_bytes(47))
    (root / "sub" / "broken.jpg").write_bytes(jpeg_bytes(48)[:300])
    (root / "notes.txt").write_text("not a picture")  # not an image extension: not picked up
    return root


def test_import_a_folder_reports_like_an_upload_and_can_run_again(app_env, folder):
    at = run(new_app())
    import json
    from pathlib import Path
    record = json.loads(Path(app_env["RAGKIT_DATA_DIR"], "app.json").read_text())  # for the CLI's message
    assert record["url"].startswith("http://localhost:") and record["pid"] > 0
    at.text_input(key="library.upload-tags").set_value("archive")
    at.text_input(key="library.import-folder").set_value(str(folder))
    at.button(key="library.import").click()
    run(at)
    summary = " ".join(texts(at.warning))
    assert "**4 added**" in summary and "1 rejected" in summary, summary
    outcome = dict(zip(at.dataframe[0].value["File"], at.dataframe[0].value["Result"]))
    assert outcome[str(folder / "sub" / "broken.jpg")] == "Rejected"
    assert sum(r == "Added" for r in outcome.values()) == 4
    assert at.sidebar.metric[0].value == "4"
    assert set(at.multiselect(key="library.tags").options) == {"archive (4)"}

    (folder / "shot-3.jpg").write_bytes(jpeg_bytes(49))  # stopped halfway, or more arrived: import again
    at.button(key="library.import").click()
    run(at)
    summary = " ".join(texts(at.warning))
    assert "**1 added**" in summary and "4 already in the library" in summary, summary
    assert at.sidebar.metric[0].value == "5"


@pytest.mark.parametrize("path, says", [
    ("", "Type the path of a folder"),
    ("relative/photos", "relative path"),
    ("/no/such/folder-here", "There is no folder"),
    ("FILE", "is a file, not a folder"),
])
def test_import_a_bad_path_says_why_and_imports_nothing(app_env, folder, path, says):
    at = run(new_app())
    at.text_input(key="library.import-folder").set_value(str(folder / "shot-0.jpg") if path == "FILE" else path)
    at.button(key="library.import").click()
    run(at)
    assert any(says in shown(e) for e in texts(at.error)), texts(at.error)
    assert at.sidebar.metric[0].value == "0" and not at.dataframe


def test_import_shows_its_progress_on_other_pages(app_env, folder, monkeypatch):
    """The import is the upload's background job: leaving the page leaves it running, counted on."""
    from ragkit.library import Library
    from ragkit.ui import state, uploads
    release, held_at = threading.Event(), []
    real = Library.ingest_paths

    def held(self, *args, on_progress=None, **kwargs):
        def progress(update):
            on_progress(update)
            if update.done:
                held_at.append(update.done)
                assert release.wait(60)
        return real(self, *args, on_progress=progress, **kwargs)

    monkeypatch.setattr(Library, "ingest_paths", held)
    at = run(new_app())
    pending = uploads.start_folder(state.library(), folder, ["away"])  # as Import does, then the user leaves
    at.session_state[uploads.K_UPLOAD] = pending
    at.switch_page(state.SEARCH_PAGE)
    for _ in range(200):
        if held_at:
            break
        threading.Event().wait(0.1)
    run(at)
    assert held_at, "the import never reported progress"
    assert any(f"Adding 5 images: {held_at[0]} done" in i for i in texts(at.sidebar.info)), texts(at.sidebar.info)
    assert "of 5 · " in uploads.progress_text(pending)
    release.set()
    assert pending.job.wait(60)
    run(at)
    assert any("Upload finished: 4 added, 1 rejected" in s for s in texts(at.sidebar.success))


def test_cli_names_the_running_app_that_holds_the_library(tmp_path, ragkit_env, settings, image_folder):
    """The app holds the embedded database (here: this process, as the app does, with its record): the
    CLI's ingest says where that app is and how to import there; without a record, the old line."""
    from ragkit.library import Library
    from ragkit.storage.app_record import record_path, write_app_record
    from tests.conftest import run_cli
    library = Library.open(settings)
    try:
        out = run_cli(["ingest", str(image_folder)], ragkit_env, tmp_path)
        assert out.returncode != 0 and b"open in another process" in out.stderr, out.stderr

        write_app_record(settings.milvus_uri, "http://localhost:8765")
        out = run_cli(["ingest", str(image_folder)], ragkit_env, tmp_path)
        message = out.stderr.decode()
        assert out.returncode != 0 and "Traceback" not in message
        assert "open in the app running at http://localhost:8765" in message, message
        assert "Library › Import a folder" in message

        record_path(settings.milvus_uri).write_text("{damaged")  # ignored, never in the way
        out = run_cli(["stats"], ragkit_env, tmp_path)
        assert out.returncode != 0 and b"open in another process" in out.stderr, out.stderr
    finally:
        library.close()
