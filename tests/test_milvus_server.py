"""A library on a Milvus server, tested on `milvus-lite server` and on the real Milvus engine.

What a team relies on when several people and processes share one server: the person who uploads
sees the new images at once (grid, count, search, duplicates), another process's writes show up
within a stated bound, the same picture from two processes at once is one row, and credentials
work, fail clearly, and never show.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ragkit.lifecycle import doctor
from ragkit.config import Settings
from ragkit.errors import StoreAuthError
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from tests.conftest import REPO, make_env, run_cli
from tests.support.cli import run_cli_inprocess
from tests.e2e_support import all_text, app_env, new_app, shown, texts  # noqa: F401 - app_env is a fixture
from tests.images_factory import jpeg_bytes
from tests.milvus_servers import REAL_MILVUS_PASSWORD, REAL_MILVUS_USER

OTHER_PROCESS_BOUND_S = 2.0  # the README's promise for another process's new images (measured ~0.3 s)


def _open(env, tmp_path, tiny_embedder) -> Library:
    return Library.open(Settings.load(env=env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)


def test_the_uploader_sees_new_images_at_once(server, server_env, tmp_path, tiny_embedder):
    library = _open(server_env, tmp_path, tiny_embedder)
    try:
        for round_ in range(3):  # each round right after the previous one's writes
            uploads = [Upload(f"r{round_}-{i}.jpg", jpeg_bytes(600 + 10 * round_ + i)) for i in range(4)]
            report = library.ingest_uploads(uploads, tags=[f"round-{round_}"])
            assert len(report.added) == 4
            added = [asset.sha256 for _, asset in report.added]
            # No sleep: the grid, the count, a search and duplicate detection see them now.
            assert library.count() == 4 * (round_ + 1)
            assert [a.sha256 for a in library.page(0, 4).assets] == added[::-1]
            assert library.count(tags=[f"round-{round_}"]) == 4
            assert library.search_image(uploads[2].data, k=1)[0].asset.sha256 == added[2]
            again = library.ingest_uploads(uploads[:2])
            assert not again.added and len(again.duplicates) == 2
    finally:
        library.close()


def test_another_process_writes_appear_within_the_bound(server, server_env, tmp_path, tiny_embedder, image_folder):
    library = _open(server_env, tmp_path, tiny_embedder)
    try:
        assert library.page(0, 24).total == 0  # the listing is built (empty) before the CLI writes
        out = run_cli(["ingest", str(image_folder), "--json"], server_env, tmp_path)
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        finished = time.monotonic()
        while library.count() != 8 and time.monotonic() - finished < 10:
            time.sleep(0.02)
        seen_after = time.monotonic() - finished
        assert library.count() == 8
        assert seen_after <= OTHER_PROCESS_BOUND_S, f"another process's images took {seen_after:.2f}s"
        assert library.page(0, 24).total == 8  # the grid follows the count at once
        assert {a.filename for a in library.page(0, 24).assets} == {f"photo_{i}.jpg" for i in range(8)}
    finally:
        library.close()


def test_the_same_pictures_from_two_processes_at_once_are_one_row_each(server, server_env, tmp_path, tiny_embedder,
                                                                       image_folder):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    env.update(server_env, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "ragkit", "ingest", str(image_folder), "--json"]
    processes = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err.decode()[-2000:]
    reports = [json.loads(out) for out, _ in outputs]
    assert all(len(r["added"]) + len(r["duplicates"]) == 8 for r in reports)
    library = _open(server_env, tmp_path, tiny_embedder)
    try:
        assert library.count() == 8  # one row per picture, however the two runs interleaved
        check = doctor.check(library)
        assert check.healthy and check.rows == 8
    finally:
        library.close()


# --- credentials (the real engine runs with authentication on) -------------------------------------
def test_a_token_or_user_password_in_the_uri_both_work(real_milvus, tmp_path, tiny_checkpoint, image_folder):
    real_milvus.drop_all_collections()
    by_token = make_env(tmp_path / "data", tiny_checkpoint, RAGKIT_MILVUS_URI=real_milvus.uri,
                        RAGKIT_MILVUS_TOKEN=f"{REAL_MILVUS_USER}:{REAL_MILVUS_PASSWORD}")
    out = run_cli_inprocess(["ingest", str(image_folder), "--json"], by_token, tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    host = real_milvus.uri.split("//", 1)[1]
    in_uri = make_env(tmp_path / "data", tiny_checkpoint,
                      RAGKIT_MILVUS_URI=f"http://{REAL_MILVUS_USER}:{REAL_MILVUS_PASSWORD}@{host}")
    out = run_cli_inprocess(["stats", "--json"], in_uri, tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    stats = json.loads(out.stdout)
    assert stats["assets"] == 8 and stats["db_uri"] == real_milvus.uri
    assert REAL_MILVUS_PASSWORD not in out.stdout.decode() + out.stderr.decode()


@pytest.mark.parametrize("credentials", ["wrong-token", "wrong-in-uri", "missing"])
def test_wrong_or_missing_credentials_are_one_line_that_names_them(real_milvus, tmp_path, tiny_checkpoint, credentials):
    secret = "n0t-the-Passw0rd"
    host = real_milvus.uri.split("//", 1)[1]
    extra = {"wrong-token": {"RAGKIT_MILVUS_URI": real_milvus.uri, "RAGKIT_MILVUS_TOKEN": f"root:{secret}"},
             "wrong-in-uri": {"RAGKIT_MILVUS_URI": f"http://root:{secret}@{host}"},
             "missing": {"RAGKIT_MILVUS_URI": real_milvus.uri}}[credentials]
    env = make_env(tmp_path / "data", tiny_checkpoint, **extra)
    for command in (["stats"], ["search", "red cape", "--json"]):
        out = run_cli_inprocess(command, env, tmp_path)
        said = out.stdout.decode() + out.stderr.decode()
        assert out.returncode == 1, said
        lines = out.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in said, said
        assert "credentials" in lines[0] and "RAGKIT_MILVUS_TOKEN" in lines[0], lines[0]
        assert "unavailable" not in lines[0]
        assert secret not in said


def test_the_app_shows_refused_credentials_in_red_with_the_fix(real_milvus, app_env, monkeypatch):
    secret = "n0t-the-Passw0rd"
    monkeypatch.setenv("RAGKIT_MILVUS_URI", real_milvus.uri)
    monkeypatch.setenv("RAGKIT_MILVUS_TOKEN", f"root:{secret}")
    at = new_app()
    at.run(timeout=90)
    assert not at.exception, [e.value for e in at.exception]
    errors = [shown(e) for e in texts(at.error)]
    assert any("refused the credentials" in e and "RAGKIT_MILVUS_TOKEN" in e for e in errors), errors
    assert secret not in shown(all_text(at))


def test_a_server_that_is_not_there_says_so(tmp_path, tiny_checkpoint):
    from tests.milvus_servers import free_port
    env = make_env(tmp_path / "data", tiny_checkpoint, RAGKIT_MILVUS_URI=f"http://127.0.0.1:{free_port()}",
                   RAGKIT_MILVUS_TOKEN="root:s3cret-token")
    out = run_cli_inprocess(["stats"], env, tmp_path)
    assert out.returncode == 1
    line = out.stderr.decode().strip()
    assert "Cannot reach Milvus" in line and "Is it running" in line and "s3cret-token" not in line


def test_wrong_credentials_raise_the_auth_error_in_the_core(real_milvus, tmp_path, tiny_checkpoint, tiny_embedder):
    env = make_env(tmp_path / "data", tiny_checkpoint, RAGKIT_MILVUS_URI=real_milvus.uri,
                   RAGKIT_MILVUS_TOKEN="root:nope")
    with pytest.raises(StoreAuthError, match="refused the credentials"):
        _open(env, tmp_path, tiny_embedder)


def test_doctor_export_and_import_on_a_server(server, server_env, tmp_path, tiny_embedder, image_folder):
    from ragkit.ingest.portable import export_library, import_library
    library = _open(server_env, tmp_path, tiny_embedder)
    try:
        assert len(library.ingest_paths([image_folder], tags=["shoot"]).added) == 8
        export = export_library(library, tmp_path / "library.zip")
        assert export.assets == 8
        victim = library.page(0, 1).assets[0].sha256
        library.blobs.original_path(victim).unlink()  # an interrupted delete: the row outlived its file
        report = doctor.check(library)
        assert report.rows_without_original == [victim] and not report.healthy
        doctor.repair(library)
        assert library.count() == 7 and doctor.check(library).healthy
        back = import_library(library, export.path)
        assert [a.sha256 for _, a in back.added] == [victim] and len(back.duplicates) == 7
        assert library.count(tags=["shoot"]) == 8  # it came back with its tag
    finally:
        library.close()
