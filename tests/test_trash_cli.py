"""`python -m ragkit delete | tag | trash` on many ids, in subprocesses; and a kill in the middle of a
delete, a restore or an emptying of the trash, which `doctor --repair` sorts out with nothing lost
that was not meant to go."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ragkit.config import Settings
from ragkit.library import Library
from ragkit.records import Asset
from tests.conftest import REPO
from tests.support.cli import run_cli_inprocess
from tests.images_factory import jpeg_bytes


def _ingest(tmp_path: Path, env: dict, count: int) -> list[str]:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(count):
        (folder / f"p{i}.jpg").write_bytes(jpeg_bytes(1200 + i))
    out = run_cli_inprocess(["ingest", str(folder), "--tag", "shoot", "--json"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    return [a["sha256"] for a in json.loads(out.stdout)["added"]]


def _json(args: list[str], env: dict, cwd: Path, code: int = 0) -> dict:
    out = run_cli_inprocess([*args, "--json"], env, cwd)
    assert out.returncode == code, (out.returncode, out.stderr)
    assert b"Traceback" not in out.stderr
    return json.loads(out.stdout)


def test_delete_tag_and_trash_take_many_ids(tmp_path, ragkit_env):
    ids = _ingest(tmp_path, ragkit_env, 5)
    unknown = "0" * 64

    tagged = _json(["tag", *ids[:4], "--add", "Campaign", "--remove", "shoot"], ragkit_env, tmp_path)
    assert [a["tags"] for a in tagged["updated"]] == [["campaign"]] * 4 and tagged["not_found"] == []
    partly = _json(["tag", ids[4], unknown, "--add", "x"], ragkit_env, tmp_path, code=3)
    assert partly["not_found"] == [unknown] and partly["updated"][0]["tags"] == ["shoot", "x"]

    deleted = _json(["delete", *ids[:3], unknown], ragkit_env, tmp_path, code=3)
    assert deleted == {"deleted": 3, "to_trash": True, "not_found": [unknown], "already_in_trash": []}
    assert _json(["delete", ids[0]], ragkit_env, tmp_path)["already_in_trash"] == [ids[0]]
    assert _json(["stats"], ragkit_env, tmp_path)["assets"] == 2
    assert _json(["search", "x", "-k", "10"], ragkit_env, tmp_path)["hits"] and \
        not {h["sha256"] for h in _json(["search", "x", "-k", "10"], ragkit_env, tmp_path)["hits"]} & set(ids[:3])
    in_tag = _json(["tag", ids[0], "--add", "y"], ragkit_env, tmp_path, code=3)
    assert in_tag["skipped"] == [{"sha256": ids[0], "reason": "in the trash (restore it first)"}]

    listed = _json(["trash"], ragkit_env, tmp_path)
    assert listed["count"] == 3 and {a["sha256"] for a in listed["assets"]} == set(ids[:3])
    assert all(a["trashed_at"] for a in listed["assets"]) and listed["trash_days"] == 30
    human = run_cli_inprocess(["trash"], ragkit_env, tmp_path)
    assert human.stdout.decode().count("deleted ") == 3 and b"30 days" in human.stderr
    assert all(sha in human.stdout.decode() for sha in ids[:3])  # whole ids: what `trash restore` takes

    restored = _json(["trash", "restore", ids[0], ids[4]], ragkit_env, tmp_path, code=3)
    assert [a["sha256"] for a in restored["restored"]] == [ids[0]] and restored["restored"][0]["tags"] == ["campaign"]
    assert restored["skipped"] == [{"sha256": ids[4], "reason": "not in the trash"}]

    one = _json(["trash", "empty", ids[1]], ragkit_env, tmp_path)
    assert one["deleted_ids"] == [ids[1]]
    emptied = _json(["trash", "empty"], ragkit_env, tmp_path)
    assert emptied["deleted_ids"] == [ids[2]] and _json(["trash"], ragkit_env, tmp_path)["count"] == 0
    assert _json(["stats"], ragkit_env, tmp_path)["assets"] == 3
    health = _json(["doctor"], ragkit_env, tmp_path)
    assert health["healthy"] and health["rows"] == 3 and health["files"] == 3

    bad = run_cli_inprocess(["trash", "restore", "../etc/passwd"], ragkit_env, tmp_path)
    assert bad.returncode == 1 and b"not an asset id" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_the_cli_empties_expired_trash_when_it_opens_the_library(tmp_path, ragkit_env, settings, tiny_embedder):
    ids = _ingest(tmp_path, ragkit_env, 2)
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        library.trash([ids[0]], now=int(time.time() * 1000) - 3 * 86_400_000)
    finally:
        library.close()
    out = run_cli_inprocess(["stats", "--json"], {**ragkit_env, "RAGKIT_TRASH_DAYS": "2"}, tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout)["assets"] == 1
    assert b"emptied 1 asset(s) from the trash" in out.stderr and b"RAGKIT_TRASH_DAYS" in out.stderr
    assert _json(["trash"], ragkit_env, tmp_path)["count"] == 0


def test_delete_in_a_library_of_schema_1_is_for_good_and_says_how_to_get_the_trash(tmp_path, ragkit_env, settings,
                                                                                   tiny_embedder):
    from tests.support.libraries import old_library
    assets, _ = old_library(settings, tiny_embedder.dim, rows=3)
    out = run_cli_inprocess(["delete", assets[0].sha256, "--json"], ragkit_env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"deleted": 1, "to_trash": False, "not_found": [], "already_in_trash": []}
    assert b"for good" in out.stderr and b"python -m ragkit upgrade" in out.stderr
    trash = run_cli_inprocess(["trash"], ragkit_env, tmp_path)
    assert trash.returncode == 1 and b"python -m ragkit upgrade" in trash.stderr


# --- a kill in the middle ------------------------------------------------------------------------
LIVE, TRASHED = 200, 1100  # assets that stay in the library; assets deleted (and then restored or emptied)

SLOW_SHIM = """\
import os
import time
from pathlib import Path

from ragkit.storage.blobs import BlobStore
from ragkit.storage.store import AssetStore

_log = Path(os.environ["RAGKIT_TEST_STEP_LOG"])
_delete, _upsert = BlobStore.delete, AssetStore._upsert_locked


def _note(what):
    with _log.open("a") as handle:
        handle.write(what + "\\n")


def slow_delete(self, sha256):
    _delete(self, sha256)
    _note("file")
    time.sleep(0.003)


def slow_upsert(self, assets, vectors):
    time.sleep(0.4)
    _upsert(self, assets, vectors)
    _note("step")


BlobStore.delete, AssetStore._upsert_locked = slow_delete, slow_upsert
"""


def _big_library(settings: Settings, dim: int) -> tuple[list[str], list[str]]:
    """LIVE + TRASHED assets with their files (a small JPEG each), the TRASHED ones moved to the trash."""
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((LIVE + TRASHED, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picture = jpeg_bytes(3, size=(64, 48))
    assets = [Asset(sha256=f"{i + 1:064x}", filename=f"p{i}.jpg", mime="image/jpeg", width=64, height=48,
                    size_bytes=len(picture), tags=("bulk",), created_at=1_000 + i) for i in range(LIVE + TRASHED)]
    library = Library(settings)
    try:
        for asset in assets:
            library.blobs.put(asset.sha256, picture, picture)
        library.store.upsert(assets, vectors)
        trashed = [a.sha256 for a in assets[LIVE:]]
        library.trash(trashed)
    finally:
        library.close()
    return [a.sha256 for a in assets[:LIVE]], trashed


def _kill_when(args: list[str], env: dict, cwd: Path, log: Path, ready) -> None:
    """Run `python -m ragkit ARGS` and SIGKILL it once ready(lines of the step log) is true."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    shim = cwd / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(SLOW_SHIM)
    full_env.update(env, PYTHONPATH=os.pathsep.join([str(shim), str(REPO)]), RAGKIT_TEST_STEP_LOG=str(log))
    process = subprocess.Popen([sys.executable, "-m", "ragkit", *args], env=full_env, cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            lines = log.read_text().split() if log.exists() else []
            if ready(lines):
                process.send_signal(signal.SIGKILL)
                break
            assert process.poll() is None, f"finished before the kill: {process.stderr.read()!r}"
            time.sleep(0.01)
        else:
            pytest.fail("the command never reached the point of the kill")
    finally:
        process.kill()
        process.wait(30)


def _state(library: Library, ids: list[str]) -> dict[str, str]:
    """Each asset as 'live', 'trash' or 'gone', checking that a row and its original go together."""
    found = {a.sha256: a for a in library.get_many(ids)}
    state = {}
    for sha in ids:
        has_file = library.blobs.original_path(sha).is_file()
        if sha not in found:
            assert not has_file, f"{sha} has a file but no row"
            state[sha] = "gone"
        else:
            assert has_file, f"{sha} has a row but no file"
            state[sha] = "trash" if found[sha].trashed else "live"
    return state


@pytest.mark.slow
@pytest.mark.parametrize("action", ["empty", "delete", "restore"])
def test_a_kill_in_the_middle_loses_nothing_and_doctor_sorts_it_out(action, tmp_path, ragkit_env, settings,
                                                                   tiny_embedder):
    live, trashed = _big_library(settings, tiny_embedder.dim)
    log = tmp_path / "steps.log"
    if action == "empty":
        args = ["trash", "empty"]
        ready = lambda lines: lines.count("file") >= 300  # noqa: E731 - in the second step of 256 files
    elif action == "delete":
        library = Library(settings)
        try:
            library.restore(trashed)  # all live again: the command deletes them
        finally:
            library.close()
        args, ready = ["delete", *trashed], lambda lines: lines.count("step") >= 1  # noqa: E731
    else:
        args, ready = ["trash", "restore", *trashed], lambda lines: lines.count("step") >= 1  # noqa: E731
    _kill_when(args, ragkit_env, tmp_path, log, ready)

    doctor = _json(["doctor", "--repair"], ragkit_env, tmp_path)
    print(f"{action}: doctor after the kill: {len(doctor['rows_without_original'])} half-deleted rows, "
          f"{len(doctor['actions'])} repairs")
    library = Library(settings)
    try:
        state = _state(library, live + trashed)  # every asset whole (row and files) or wholly gone
        assert all(state[sha] == "live" for sha in live)  # nothing that was not meant to go went
        outcomes = {kind: sum(1 for sha in trashed if state[sha] == kind) for kind in ("live", "trash", "gone")}
        print(f"{action}: after the kill and doctor --repair: {outcomes}")
        if action == "empty":
            assert outcomes["live"] == 0 and 0 < outcomes["gone"] < TRASHED
            assert doctor["rows_without_original"] and not doctor["files_without_row"]
        else:  # moved by whole steps: some done, some not yet, none lost or half-done
            assert outcomes["gone"] == 0 and 0 < outcomes["trash"] < TRASHED and not doctor["actions"]
    finally:
        library.close()
    # Running the command again finishes the job.
    rerun = run_cli_inprocess(args, ragkit_env, tmp_path)
    assert rerun.returncode in (0, 3), rerun.stderr
    library = Library(settings)
    try:
        final = _state(library, live + trashed)
        expected = {"empty": "gone", "delete": "trash", "restore": "live"}[action]
        assert all(final[sha] == expected for sha in trashed) and all(final[sha] == "live" for sha in live)
    finally:
        library.close()
    assert _json(["doctor"], ragkit_env, tmp_path)["healthy"]
