"""Data ownership and repair: doctor finds and fixes disagreements; export/import round-trips."""
import json
import zipfile

import pytest

from ragkit.lifecycle import doctor
from ragkit.errors import InvalidInputError
from ragkit.ingest.pipeline import Provenance
from ragkit.ingest.portable import export_library, import_library
from tests.support.cli import run_cli_inprocess
from tests.images_factory import png_bytes


def test_doctor_finds_and_repairs_every_kind_of_disagreement(library, image_folder):
    report = library.ingest_paths([image_folder])
    ids = [a.sha256 for _, a in report.added]
    assert doctor.check(library).healthy

    # 1. an interrupted delete: files gone, row still there
    library.blobs.delete(ids[0])
    # 2. a lost thumbnail
    library.blobs.thumbnail_path(ids[1]).unlink()
    # 3. an interrupted ingest: files written, row never stored
    library.store.delete([ids[2]])
    # 4. an unfinished atomic write
    stray = library.blobs.original_path(ids[3]).parent / ".tmp-abc123"
    stray.write_bytes(b"half")

    found = doctor.check(library)
    assert not found.healthy
    assert found.rows_without_original == [ids[0]]
    assert found.rows_without_thumbnail == [ids[1]]
    assert found.files_without_row == [ids[2]]
    assert found.temp_files == [str(stray)]

    fixed = doctor.repair(library)
    assert len(fixed.actions) == 4
    after = doctor.check(library)
    assert after.healthy, after
    assert library.store.get(ids[0]) is None
    assert library.blobs.has(ids[1])
    adopted = library.get(ids[2])
    assert "recovered" in adopted.tags
    assert library.count() == 7


def test_export_then_import_restores_tags_provenance_and_dates(library, image_folder, tmp_path,
                                                             tiny_embedder, settings):
    report = library.ingest_paths([image_folder], tags=["shoot"])
    refs = tuple(a.sha256 for _, a in report.added[:2])
    generated = library.save_generated(png_bytes(77), "image/png",
                                       Provenance("beach hero shot", "gemini-2.5-flash-image", refs),
                                       tags=["promo"])
    before = {a.sha256: a for a in library.page(0, 100).assets}
    out = tmp_path / "exports" / "library.zip"
    exported = export_library(library, out)
    assert exported.assets == 9 and not exported.missing
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("metadata.json"))
        assert len([n for n in archive.namelist() if n.startswith("originals/")]) == 9
    assert manifest["format"] == "ragkit-export" and len(manifest["assets"]) == 9

    only_promo = export_library(library, tmp_path / "promo.zip", tags=["promo"])
    assert only_promo.assets == 1

    # Into a brand-new library:
    from ragkit.config import Settings
    from ragkit.library import Library
    fresh_settings = Settings.load(env={**{k: str(v) for k, v in {
        "RAGKIT_DATA_DIR": tmp_path / "fresh", "RAGKIT_CLIP_MODEL": settings.clip_model,
        "RAGKIT_CLIP_PRETRAINED": settings.clip_pretrained}.items()}}, cwd=tmp_path, secrets_files=[])
    fresh = Library.open(fresh_settings, embedder=tiny_embedder)
    try:
        imported = import_library(fresh, out)
        assert len(imported.added) == 9 and not imported.rejected
        after = {a.sha256: a for a in fresh.page(0, 100).assets}
        assert set(after) == set(before)
        for sha, asset in before.items():
            assert after[sha].tags == asset.tags
            assert after[sha].source == asset.source and after[sha].prompt == asset.prompt
            assert after[sha].reference_ids == asset.reference_ids
            assert after[sha].created_at == asset.created_at
            assert after[sha].filename == asset.filename
        assert after[generated.sha256].model == "gemini-2.5-flash-image"
        again = import_library(fresh, out)
        assert not again.added and len(again.duplicates) == 9
    finally:
        fresh.close()


def test_import_refuses_foreign_and_tampered_archives(library, tmp_path, image_folder):
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"hello")
    with pytest.raises(InvalidInputError, match="not a ragkit export"):
        import_library(library, not_zip)
    library.ingest_paths([image_folder])
    good = tmp_path / "good.zip"
    export_library(library, good)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tampered, "w") as dst:
        names = [n for n in src.namelist() if n.startswith("originals/")]
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-10] + b"0123456789" if name == names[0] else data)
    library.delete([a.sha256 for a in library.page(0, 100).assets])
    result = import_library(library, tampered)
    assert len(result.added) == 7
    assert len(result.rejected) == 1 and "does not match" in result.rejected[0].reason


def test_doctor_export_import_cli(tmp_path, ragkit_env, image_folder):
    assert run_cli_inprocess(["ingest", str(image_folder), "--tag", "a"], ragkit_env, tmp_path).returncode == 0
    healthy = run_cli_inprocess(["doctor", "--json"], ragkit_env, tmp_path)
    assert healthy.returncode == 0 and json.loads(healthy.stdout)["healthy"] is True
    out = tmp_path / "all.zip"
    exported = run_cli_inprocess(["export", "--out", str(out), "--json"], ragkit_env, tmp_path)
    assert exported.returncode == 0 and json.loads(exported.stdout)["assets"] == 8
    other_env = {**ragkit_env, "RAGKIT_DATA_DIR": str(tmp_path / "other")}
    imported = run_cli_inprocess(["import", str(out), "--json"], other_env, tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert len(json.loads(imported.stdout)["added"]) == 8


def test_import_writes_no_name_from_the_archive_and_keeps_polyglots_inert(library, tmp_path):
    from tests.bad_inputs import files_outside
    from tests.hostile_zips import honest_entry, write_export
    from tests.images_factory import jpeg_bytes
    hostile_names = ["../../../escaped.jpg", "/etc/cron.d/absolute.jpg", "..\\..\\Windows\\win.jpg",
                     "originals/../../../up.jpg"]
    pictures = [jpeg_bytes(700 + i) for i in range(len(hostile_names))]
    polyglot = jpeg_bytes(710) + b"<html><script>alert(1)</script></html>PK\x03\x04"  # a JPEG, then a page
    fake_png = b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>"             # a page with a PNG magic
    entries = [honest_entry(data, name, file=name) for data, name in zip(pictures, hostile_names)]
    entries += [honest_entry(polyglot, "poly.jpg"), honest_entry(fake_png, "fake.png")]
    members = {name: data for data, name in zip(pictures, hostile_names)}
    members |= {honest_entry(polyglot)["file"]: polyglot, honest_entry(fake_png)["file"]: fake_png}
    archive = write_export(tmp_path / "hostile.zip", entries, members)

    report = import_library(library, archive)
    names = sorted(asset.filename for _, asset in report.added)
    assert names == ["absolute.jpg", "escaped.jpg", "poly.jpg", "up.jpg", "win.jpg"]
    assert files_outside(tmp_path, [library.settings.data_dir, archive]) == []
    assert [r.path for r in report.rejected] == ["fake.png"] and "not an image" in report.rejected[0].reason
    stored = library.get(honest_entry(polyglot)["sha256"])
    assert stored.mime == "image/jpeg"
    assert b"<script" not in library.thumbnail_bytes(stored.sha256)  # thumbnails are re-encoded pixels
