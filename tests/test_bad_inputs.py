"""One bad file never sinks a batch: every bad input gets a clear reason, good ones land."""
import json
import re

import pytest

from ragkit.lifecycle import doctor
from ragkit.library import Library
from ragkit.ingest.pipeline import Upload
from tests.bad_inputs import ESCAPE_NAME, HOSTILE_UPLOAD_NAMES, build, cases, files_outside, run_cli_capped
from tests.images_factory import jpeg_bytes

# Bytes a terminal acts on: C0 (ESC, BEL), the one-byte CSI of C1, DEL, a right-to-left override.
TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.slow
def test_corpus_in_one_folder_ingest(tmp_path, ragkit_env, settings, tiny_embedder):
    """The whole corpus through the CLI, under a memory cap: memory bombs, /dev/zero, a FIFO and
    hostile names included. One run, so a regression fails here instead of taking the machine."""
    corpus = build(tmp_path / "corpus", oversize_bytes=257 * 2**20)  # sparse: costs no disk
    run = run_cli_capped(["ingest", str(tmp_path / "corpus"), "--json"], ragkit_env, tmp_path, timeout=180)
    stderr = run.stderr.decode("utf-8", errors="replace")
    assert not run.timed_out, f"ingest hung (a FIFO or device read?): {stderr[-2000:]}"
    assert run.returncode == 3, stderr[-2000:]
    report = json.loads(run.stdout.decode("utf-8"))
    added = {entry["path"] for entry in report["added"]}
    reasons = {entry["path"]: entry["reason"] for entry in report["rejected"]}
    for path, case in corpus.items():
        if case.expect is None:
            assert path in added, f"{case.name} should have been added: {reasons.get(path)}"
        else:
            assert path in reasons, f"{case.name!r} should have been rejected"
            assert re.search(case.expect, reasons[path]), (case.name, reasons[path])
            assert "Traceback" not in reasons[path]
    # The human lines name every rejected file, with control characters shown, never obeyed.
    assert not TERMINAL_CONTROLS.search(stderr), [line for line in stderr.splitlines() if TERMINAL_CONTROLS.search(line)]
    assert "rejected: " + str(tmp_path / "corpus" / "evil") + "\\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m\\u202egpj.exe.jpg" in stderr
    assert str(tmp_path / "corpus" / ESCAPE_NAME) in reasons  # JSON keeps the name exact
    library = Library.open(settings, embedder=tiny_embedder)  # after the CLI: one process per Lite file
    try:
        assert library.count() == sum(1 for c in cases() if c.expect is None)
        assert doctor.check(library).healthy
    finally:
        library.close()
    assert files_outside(tmp_path, [tmp_path / "corpus", settings.data_dir]) == []


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
