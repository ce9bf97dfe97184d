"""The ingest pipeline: real files, real decoding, real model, real Milvus Lite."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragkit.ingest.pipeline import Upload, safe_display_name
from tests.e2e_support import clean_env
from tests.images_factory import jpeg_bytes, png_bytes


def _files_and_rows_agree(library) -> None:
    rows = {r["sha256"] for r in library.store.scan()}
    originals = set(library.blobs.original_ids())
    thumbnails = set(library.blobs.thumbnail_ids())
    assert rows == originals == thumbnails
    for sha in rows:
        assert library.blobs.original_path(sha).read_bytes()  # non-empty, readable


def test_folder_ingest_adds_everything_searchable(library, image_folder):
    seen = []
    report = library.ingest_paths([image_folder], tags=["Campaign 24"], on_progress=seen.append)
    assert len(report.added) == 8 and not report.rejected and not report.duplicates
    assert seen[-1].done == seen[-1].total == 8
    assert library.count() == 8 and library.count(tags=["campaign 24"]) == 8
    # Searching with an image's own bytes finds it first, with similarity ~1.
    data = (image_folder / "photo_0.jpg").read_bytes()
    hits = library.search_image(data, k=3)
    assert hits[0].asset.filename == "photo_0.jpg" and hits[0].score > 0.999
    _files_and_rows_agree(library)


def test_bad_files_are_rejected_and_good_ones_land(library, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good1.jpg").write_bytes(jpeg_bytes(1))
    (folder / "good2.png").write_bytes(png_bytes(2))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg_bytes(3)[:2000])
    (folder / "page.png").write_bytes(b"<!doctype html><html></html>")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    report = library.ingest_paths([folder, tmp_path / "missing.jpg"])
    assert sorted(Path(p).name for p, _ in report.added) == ["good1.jpg", "good2.png"]
    reasons = {Path(r.path).name: r.reason for r in report.rejected}
    assert set(reasons) == {"empty.jpg", "truncated.jpg", "page.png", "missing.jpg"}
    assert "empty" in reasons["empty.jpg"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    assert "not an image" in reasons["page.png"]
    assert "no such file" in reasons["missing.jpg"]
    assert library.count() == 2
    _files_and_rows_agree(library)


def test_a_picture_deleted_moments_after_upload_can_be_added_again(library):
    """The store remembers what it wrote in the last seconds (Milvus Lite's read lag, see
    AssetStore.existing); a delete right after must still let the same picture back in, not call
    it a duplicate."""
    data = jpeg_bytes(4242)
    first = library.ingest_uploads([Upload("hero.jpg", data)], tags=["v1"])
    sha = first.added[0][1].sha256
    library.delete([sha])
    again = library.ingest_uploads([Upload("hero-again.jpg", data)], tags=["v2"])
    assert [label for label, _ in again.added] == ["hero-again.jpg"] and not again.duplicates
    assert library.get(sha).filename == "hero-again.jpg" and list(library.get(sha).tags) == ["v2"]
    third = library.ingest_uploads([Upload("hero-third.jpg", data)])
    assert not third.added and [label for label, _ in third.duplicates] == ["hero-third.jpg"]


def test_duplicates_are_skipped_and_reingest_adds_nothing(library, image_folder, tmp_path):
    copy = tmp_path / "copy_of_0.jpg"
    copy.write_bytes((image_folder / "photo_0.jpg").read_bytes())
    first = library.ingest_paths([image_folder, copy])
    assert len(first.added) == 8 and [Path(p).name for p, _ in first.duplicates] == ["copy_of_0.jpg"]
    again = library.ingest_paths([image_folder])
    assert not again.added and len(again.duplicates) == 8
    assert library.count() == 8


def test_uploads_with_hostile_names_never_escape_the_data_dir(library, tmp_path):
    names = ["../../evil.jpg", "..\\..\\win.jpg", "/etc/passwd", "sp ace\x00nul\x1bctl.jpg",
             "ünïcødé 🦄.png", "", "." * 300 + ".jpg"]
    uploads = [Upload(name, jpeg_bytes(10 + i)) for i, name in enumerate(names)]
    report = library.ingest_uploads(uploads)
    assert len(report.added) == len(names)
    stored = {a.filename for _, a in report.added}
    assert "evil.jpg" in stored and "win.jpg" in stored and "passwd" in stored
    assert all("/" not in n and "\\" not in n and "\x00" not in n for n in stored)
    data_dir = library.settings.data_dir.resolve()
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and data_dir not in p.resolve().parents
               and "model" not in p.parts]
    assert outside == []
    assert safe_display_name("a/b/../c.png") == "c.png"


def test_generated_image_keeps_provenance(library, image_folder):
    report = library.ingest_paths([image_folder])
    refs = tuple(a.sha256 for _, a in report.added[:2])
    from ragkit.ingest.pipeline import Provenance
    asset = library.save_generated(png_bytes(99), "image/png",
                                   Provenance("a hero shot on sand", "gemini-2.5-flash-image", refs))
    stored = library.get(asset.sha256)
    assert stored.source == "generated" and stored.prompt == "a hero shot on sand"
    assert stored.reference_ids == refs and stored.model == "gemini-2.5-flash-image"
    assert library.count(source="generated") == 1
    hits = library.search_text("a hero shot on sand", k=20, source="generated")
    assert [h.asset.sha256 for h in hits] == [asset.sha256]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_files", [1, 24, 120])
def test_killed_ingest_completes_on_rerun(tmp_path, ragkit_env, kill_after_files):
    """kill -9 early, in the middle and late in an ingest, run it again: nothing lost, nothing doubled."""
    folder = tmp_path / "many"
    folder.mkdir()
    total = 240  # enough that even the late kill lands before the run ends
    for i in range(total):
        (folder / f"img_{i:03}.jpg").write_bytes(jpeg_bytes(1000 + i, (640, 480)))
    env = clean_env(ragkit_env)  # nothing from the developer's RAGKIT_* (their own database)
    cmd = [sys.executable, "-m", "ragkit", "ingest", str(folder), "--batch-size", "8", "--quiet"]
    process = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    thumbs = Path(ragkit_env["RAGKIT_DATA_DIR"]) / "thumbnails"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if thumbs.is_dir() and sum(1 for _ in thumbs.glob("*/*.jpg")) >= kill_after_files:
            break
        time.sleep(0.05)
    assert process.poll() is None, "ingest finished before it could be killed; make the input bigger"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    rerun = subprocess.run(cmd + ["--json"], env=env, cwd=tmp_path, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()
    report = json.loads(rerun.stdout)
    assert len(report["added"]) + len(report["duplicates"]) == total
    # Files are written just before their rows: at most one batch (8) can lack its row at the kill.
    assert len(report["duplicates"]) >= kill_after_files - 8, "work done before the kill is kept"
    third = subprocess.run(cmd + ["--json"], env=env, cwd=tmp_path, capture_output=True, timeout=300)
    assert len(json.loads(third.stdout)["duplicates"]) == total
    from ragkit.config import Settings
    from ragkit.library import Library
    library = Library.open(Settings.load(env=ragkit_env, cwd=tmp_path, secrets_files=[]))
    try:
        assert library.count() == total
        _files_and_rows_agree(library)
    finally:
        library.close()
