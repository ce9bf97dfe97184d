"""The disk and the data folder (issue 19, items 17, 18): a full disk and a read-only folder are said
as such, with where; what landed before the disk filled is kept and the next run completes.

Real file systems: a small tmpfs for a full disk, a read-only bind mount for a read-only folder.
They need root and mount(2) (skipped elsewhere); root is also why chmod can't make a folder read-only."""
from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ragkit.messages import user_message
from tests.conftest import run_cli


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (grown with `grow(mb)`)."""
    point = tmp_path / "disk"
    point.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)):
        pytest.skip("needs root and mount(2) for a small file system")
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def noise_images(folder: Path, count: int) -> Path:
    """JPEGs of noise: ~560 KB each, which no compression shrinks."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(folder / f"n{i}.jpg", quality=95)
    return folder


def test_ingest_on_a_full_disk_says_so_keeps_what_landed_and_the_next_run_completes(
        tmp_path, small_disk, ragkit_env):
    images = noise_images(tmp_path / "images", 12)
    env = {**ragkit_env, "RAGKIT_DATA_DIR": str(small_disk / "data")}
    full = run_cli(["ingest", str(images)], env, tmp_path)
    err = full.stderr.decode()
    assert full.returncode == 1 and f"The disk holding {small_disk / 'data'} is full" in err, err
    assert "unexpected" not in err and "were added before it filled and are kept" in err
    kept = int(err.split(" image(s) were added")[0].rsplit(" ", 1)[1])
    assert 0 < kept < 12
    doctor = run_cli(["doctor"], env, tmp_path)
    assert b"healthy: files and database agree" in doctor.stdout, doctor.stdout  # was 11 files without a row
    assert _mount("-o", "remount,size=64m", str(small_disk))  # room for the images and the model cache
    rest = run_cli(["ingest", str(images), "--json"], env, tmp_path)
    report = json.loads(rest.stdout)
    assert rest.returncode == 0 and (len(report["added"]), len(report["duplicates"])) == (12 - kept, kept)


def test_a_kit_saved_on_a_full_disk_says_so_and_keeps_the_previous_version(tmp_path, small_disk, ragkit_env):
    from ragkit.studio import kits
    store = kits.KitStore(small_disk / "data")
    store.save(kits.make_kit("Acme", style="v1"))
    with open(small_disk / "filler", "ab", buffering=0) as handle:  # fill the disk to the last byte
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    from ragkit.errors import DiskFullError
    with pytest.raises(DiskFullError, match=f"The disk holding {small_disk / 'data' / 'kits'} is full"):
        store.save(kits.make_kit("Acme", style="v2" * 900))
    assert store.get("Acme").style == "v1"


def test_an_oserror_of_a_full_or_read_only_disk_is_never_unexpected():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/usage/ledger.jsonl")
    assert user_message(full, None).startswith("The disk is full: ragkit could not write /data/usage/ledger.jsonl.")
    read_only = OSError(errno.EROFS, "Read-only file system", "/data/kits/x.json")
    assert "the folder /data/kits is read-only" in user_message(read_only, None)


@pytest.fixture
def read_only_library(tmp_path, ragkit_env, image_folder):
    """A library with images, and a read-only bind mount of its data folder."""
    assert run_cli(["ingest", str(image_folder)], ragkit_env, tmp_path).returncode == 0
    view = tmp_path / "read-only"
    view.mkdir()
    if not (_mount("--bind", ragkit_env["RAGKIT_DATA_DIR"], str(view))
            and _mount("-o", "remount,bind,ro", str(view))):
        pytest.skip("needs root and mount(2) for a read-only folder")
    yield {**ragkit_env, "RAGKIT_DATA_DIR": str(view)}
    subprocess.run(["umount", "-l", str(view)], capture_output=True)


def test_a_read_only_data_folder_is_said_to_be_read_only_not_open_elsewhere(tmp_path, read_only_library):
    for command in (["stats"], ["search", "shoe"], ["ingest", str(tmp_path)]):
        result = run_cli(command, read_only_library, tmp_path)
        err = result.stderr.decode()
        assert result.returncode == 1 and f"data folder {read_only_library['RAGKIT_DATA_DIR']} is read-only" in err
        assert "another process" not in err, err
