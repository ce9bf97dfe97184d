"""One bad file never sinks a batch: every bad input gets a clear reason, good ones land."""
import re

from ragkit import doctor, ingest
from ragkit.ingest import Upload
from tests.bad_inputs import HOSTILE_UPLOAD_NAMES, build, cases, files_outside
from tests.images_factory import jpeg_bytes


def test_corpus_in_one_folder_ingest(library, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 8 * 1024 * 1024)  # keep the sparse file small
    corpus = build(tmp_path / "corpus", oversize_bytes=9 * 1024 * 1024)
    report = library.ingest_paths([tmp_path / "corpus"])
    added = {path for path, _ in report.added}
    reasons = {r.path: r.reason for r in report.rejected}
    for path, case in corpus.items():
        if case.expect is None:
            assert path in added, f"{case.name} should have been added: {reasons.get(path)}"
        else:
            assert path in reasons, f"{case.name} should have been rejected"
            assert re.search(case.expect, reasons[path]), (case.name, reasons[path])
            assert "Traceback" not in reasons[path]
    assert library.count() == sum(1 for c in cases() if c.expect is None)
    assert doctor.check(library).healthy
    assert files_outside(tmp_path, [tmp_path / "corpus", library.settings.data_dir]) == []


def test_hostile_upload_names_are_neutralised(library, tmp_path):
    uploads = [Upload(name, jpeg_bytes(200 + i)) for i, name in enumerate(HOSTILE_UPLOAD_NAMES)]
    report = library.ingest_uploads(uploads)
    assert len(report.added) == len(uploads)
    for _, asset in report.added:
        name = asset.filename
        assert name and "/" not in name and "\\" not in name and ".." != name
        assert not any(ord(ch) < 32 for ch in name) and "\u202e" not in name
        assert len(name.encode()) <= 512
    assert files_outside(tmp_path, [library.settings.data_dir]) == []
    assert doctor.check(library).healthy


def test_bad_uploads_next_to_good_ones(library):
    uploads = [Upload("ok-1.jpg", jpeg_bytes(300)), Upload("bad.jpg", b"GIF89a-but-not-really"),
               Upload("ok-2.jpg", jpeg_bytes(301)), Upload("ok-1-again.jpg", jpeg_bytes(300))]
    report = library.ingest_uploads(uploads)
    assert [p for p, _ in report.added] == ["ok-1.jpg", "ok-2.jpg"]
    assert [r.path for r in report.rejected] == ["bad.jpg"]
    assert [p for p, _ in report.duplicates] == ["ok-1-again.jpg"]
