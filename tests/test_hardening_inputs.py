"""Issue 14, hostile inputs: shape bombs, special files, Ctrl-C, unlistable folders, terminal
escapes in names, and numeric flags that meant nothing.

Anything that could take the machine down on a regression runs in a subprocess under a memory
cap (tests/bad_inputs.py run_cli_capped); the rest runs in process on the real code.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from ragkit.cli import main as cli
from ragkit.lifecycle import doctor
from ragkit.errors import InvalidImageError
from ragkit.ingest.images import MAX_ASPECT_RATIO, decode_image
from ragkit.ingest.pipeline import Provenance, Upload, collect_sources, read_image_file
from ragkit.library import Library
from ragkit.studio import prepare_reference
from ragkit.text import printable
from tests.bad_inputs import run_cli_capped, unix_socket_file
from tests.support.cli import cli_command, cli_env
from tests.images_factory import encode, jpeg_bytes, picture

MAX_PIXELS = 150_000_000


def _thin_png(size: tuple[int, int]) -> bytes:
    return encode(Image.new("RGB", size), "PNG", optimize=True)


# --- 1. tiny files that explode in memory ---------------------------------------------------------
def test_a_474_byte_strip_is_refused_before_any_resize():
    data = _thin_png((1, 100_000))
    assert len(data) < 600
    with pytest.raises(InvalidImageError, match=r"image is 1x100000 px: aspect ratio 100000:1 is beyond the "
                                                r"100:1 limit.*crop it"):
        decode_image(data, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("size", [(2400, 200), (4000, 200), (1920, 60), (2000, 20), (20, 2000)],
                         ids=["panorama-12to1", "panorama-20to1", "banner-32to1", "at-the-limit", "tall"])
def test_panoramas_and_banners_still_work(size, tiny_embedder):
    decoded = decode_image(encode(picture(60, size), "PNG"), max_pixels=MAX_PIXELS,
                           min_short=tiny_embedder.image_size)
    assert (decoded.width, decoded.height) == size
    assert tuple(tiny_embedder.preprocess(decoded.image).shape) == (3, 64, 64)


@pytest.mark.parametrize("size", [(2020, 20), (20, 2020), (1_000_000, 1)])
def test_just_past_the_limit_is_refused(size):
    assert max(size) > MAX_ASPECT_RATIO * min(size)
    with pytest.raises(InvalidImageError, match="aspect ratio .* is beyond the 100:1 limit"):
        decode_image(_thin_png(size), max_pixels=MAX_PIXELS)


def test_studio_references_go_through_the_same_guard():
    with pytest.raises(InvalidImageError, match=r"1x100000 px: aspect ratio 100000:1"):
        prepare_reference(_thin_png((1, 100_000)), "image/png")
    assert prepare_reference(encode(picture(61, (4000, 200)), "PNG"), "image/png").data


@pytest.mark.slow
def test_search_by_a_strip_image_is_refused_under_a_memory_cap(tmp_path, ragkit_env):
    """`search --image` of a 1000000x1 PNG: a 64 x 64-million-px resize (12 GB) before the fix."""
    (tmp_path / "sliver.png").write_bytes(encode(Image.new("L", (1_000_000, 1)), "PNG", optimize=True))
    run = run_cli_capped(["search", "--image", str(tmp_path / "sliver.png")], ragkit_env, tmp_path)
    stderr = run.stderr.decode(errors="replace")
    assert run.returncode == 1, stderr
    assert "error: The example image" in stderr and "aspect ratio 1000000:1 is beyond the 100:1 limit" in stderr
    assert "MemoryError" not in stderr and "Traceback" not in stderr


# --- 3. special files ------------------------------------------------------------------------------
@pytest.fixture
def specials(tmp_path) -> dict[str, Path]:
    """One of each kind of non-regular file, named like an image, plus a good file and a link to it."""
    folder = tmp_path / "specials"
    folder.mkdir()
    paths = {name: folder / name for name in ("good.jpg", "link.jpg", "zero.jpg", "pipe.png", "sock.png",
                                               "dangling.jpg", "folder.jpg")}
    paths["good.jpg"].write_bytes(jpeg_bytes(70))
    paths["link.jpg"].symlink_to(paths["good.jpg"])
    paths["zero.jpg"].symlink_to("/dev/zero")
    os.mkfifo(paths["pipe.png"])
    unix_socket_file(paths["sock.png"])
    paths["dangling.jpg"].symlink_to(folder / "gone.jpg")
    paths["folder.jpg"].mkdir()
    return paths


def test_only_regular_files_are_read(specials):
    assert read_image_file(specials["good.jpg"], 2**20) == specials["good.jpg"].read_bytes()
    assert read_image_file(specials["link.jpg"], 2**20) == specials["good.jpg"].read_bytes()
    expected = {"zero.jpg": r"character device \(through a symbolic link\), not a regular file",
                "pipe.png": "named pipe", "sock.png": "a socket", "dangling.jpg": "broken symbolic link",
                "folder.jpg": "a folder"}
    for name, reason in expected.items():
        started = time.monotonic()
        with pytest.raises(InvalidImageError, match=reason):
            read_image_file(specials[name], 2**20)
        assert time.monotonic() - started < 1, f"{name} took too long: a blocking open?"


def test_the_size_limit_holds_while_reading_too(tmp_path):
    """/proc files are regular files whose size says 0: the limit must hold during the read."""
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(InvalidImageError, match="grew past the .* limit while it was read"):
        read_image_file(Path("/proc/self/maps"), 64)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"x" * 2049)
    with pytest.raises(InvalidImageError, match="limit"):
        read_image_file(big, 2048)
    assert len(read_image_file(big, 2049)) == 2049


def test_named_special_files_say_what_they_are(library, specials):
    """Named on the command line, a FIFO or device is not 'no such file': it is said what it is."""
    named = [specials[n] for n in ("pipe.png", "sock.png", "dangling.jpg", "good.jpg")] + [Path("/dev/null")]
    report = library.ingest_paths(named)
    reasons = {r.path: r.reason for r in report.rejected}
    assert [p for p, _ in report.added] == [str(specials["good.jpg"])]
    assert "named pipe" in reasons[str(specials["pipe.png"])]
    assert "socket" in reasons[str(specials["sock.png"])]
    assert "broken symbolic link" in reasons[str(specials["dangling.jpg"])]
    assert "character device" in reasons["/dev/null"]


def _many_images(folder: Path, count: int) -> None:
    """`count` distinct files from one JPEG: bytes after the end marker change the hash, not the picture."""
    folder.mkdir()
    base = jpeg_bytes(71, (160, 120))
    for i in range(count):
        (folder / f"img-{i:04d}.jpg").write_bytes(base + i.to_bytes(4, "big"))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ctrl_c_stops_an_ingest_promptly(tmp_path, ragkit_env, settings, tiny_embedder):
    """Before the fix a FIFO in the folder blocked a reader thread, and Ctrl-C waited on it forever."""
    folder = tmp_path / "folder"
    _many_images(folder, 160)
    os.mkfifo(folder / "000-pipe.png")  # read first
    thumbnails = Path(ragkit_env["RAGKIT_DATA_DIR"]) / "thumbnails"
    stderr_file = tmp_path / "stderr.txt"
    with open(stderr_file, "wb") as stderr:
        process = subprocess.Popen(cli_command(["ingest", str(folder), "--batch-size", "4", "--quiet"]),
                                   env=cli_env(ragkit_env), cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=stderr, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        # A batch's files are written before its rows: a 5th thumbnail means the first 4 rows are stored.
        while time.monotonic() < deadline and process.poll() is None and len(list(thumbnails.glob("*/*.jpg"))) < 5:
            time.sleep(0.05)
        assert process.poll() is None, f"the run ended before Ctrl-C: {stderr_file.read_text()}"
        process.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Ctrl-C did not stop the ingest within 15 s: {stderr_file.read_text()[-1000:]}")
        seconds = time.monotonic() - interrupted_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr_text = stderr_file.read_text()
    assert code == 130, stderr_text
    assert "interrupted: what was finished is saved" in stderr_text and "Traceback" not in stderr_text
    assert seconds < 10
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        stored = library.count()
        assert 4 <= stored < 160, "Ctrl-C should have landed mid-run, after the first batch"
        assert doctor.check(library).rows_without_original == []  # what is stored is whole
        rerun = library.ingest_paths([folder])  # "run the same command again to complete it"
        assert library.count() == 160 and len(rerun.rejected) == 1
        assert doctor.check(library).healthy
    finally:
        library.close()


# --- 6. folders that can't be listed --------------------------------------------------------------
def _without_root_override(probe_dir: Path) -> list[str]:
    """A command prefix that runs a process without root's permission overrides, or skip.

    setpriv keeps uid 0 and drops every capability, so the test's own files (owned by root)
    stay readable and writable for the CLI while mode 000 holds, as it does for everyone else.
    """
    if os.geteuid() != 0:
        return []  # mode 000 already holds
    if not shutil.which("setpriv"):
        pytest.skip("running as root and setpriv (util-linux) is missing: mode 000 can't be enforced")
    prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", str(probe_dir)],
                           capture_output=True)
    if b"PermissionError" not in probe.stderr:
        pytest.skip(f"setpriv could not drop root's capabilities here: {probe.stderr[-300:]!r}")
    return prefix


@pytest.mark.slow
def test_unlistable_folders_are_reported_not_skipped(tmp_path, ragkit_env):
    locked = tmp_path / "n" / "locked"
    inner = tmp_path / "n" / "open" / "sub"
    for folder in (locked, inner):
        folder.mkdir(parents=True)
        (folder / "hidden-inside.jpg").write_bytes(jpeg_bytes(80))
    (tmp_path / "n" / "open" / "ok.jpg").write_bytes(jpeg_bytes(81))
    locked.chmod(0)
    inner.chmod(0)
    try:
        prefix = _without_root_override(locked)
        run = run_cli_capped(["ingest", str(locked), str(tmp_path / "n" / "open"), "--json"], ragkit_env, tmp_path,
                             cap_bytes=None, prefix=prefix)
    finally:
        locked.chmod(0o755)
        inner.chmod(0o755)
    stderr = run.stderr.decode(errors="replace")
    assert run.returncode == 3, stderr
    report = json.loads(run.stdout)
    assert [a["path"] for a in report["added"]] == [str(tmp_path / "n" / "open" / "ok.jpg")]
    reasons = {r["path"]: r["reason"] for r in report["rejected"]}
    assert set(reasons) == {str(locked), str(inner)}
    assert all("cannot list this folder (Permission denied)" in r for r in reasons.values())
    assert f"rejected: {locked}: cannot list this folder" in stderr


def test_a_folder_that_fails_to_list_midway_is_reported(tmp_path, monkeypatch):
    """The same path, in process: os.walk's errors (here from scandir) are rejections, not silence."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "b":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    files, rejected = collect_sources([tmp_path / "a"])
    assert files == [tmp_path / "a" / "one.jpg"]
    assert [(r.path, r.reason) for r in rejected] == [
        (str(tmp_path / "a" / "b"), "cannot list this folder (Permission denied); check its permissions")]


# --- 9. terminal escapes in what the CLI prints ---------------------------------------------------
@pytest.mark.parametrize("raw, shown", [
    ("evil\x1b]0;PWNED\x07\x1b[2J.jpg", "evil\\x1b]0;PWNED\\x07\\x1b[2J.jpg"),
    ("csi\x9b31m del\x7f nul\x00", "csi\\x9b31m del\\x7f nul\\x00"),
    ("\u202egpj.exe", "\\u202egpj.exe"),
    ("two\nlines\r\u2028", "two\\x0alines\\x0d\\u2028"),
    ("bad\udcff.jpg", "bad\\udcff.jpg"),
    ("ünïcødé 写真 🏳️‍🌈 tab\tok", "ünïcødé 写真 🏳️‍🌈 tab\\x09ok"),
])
def test_printable_shows_controls_as_escapes(raw, shown):
    assert printable(raw) == shown


def test_printable_keeps_the_lines_of_prose_only_when_asked():
    assert printable("line 1\n\tline 2\x1b[2J", keep_newlines=True) == "line 1\n\tline 2\\x1b[2J"


def _run_main(argv, library, monkeypatch, capsys) -> tuple[int, str, str]:
    """`python -m ragkit ...` in process, on the test's library (RAGKIT_DEBUG keeps logging as it is)."""
    monkeypatch.setattr("ragkit.cli.common.open_library", lambda settings: library)
    monkeypatch.setenv("RAGKIT_DEBUG", "1")
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_search_output_shows_hostile_prompts_and_names_inert(library, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    prompt = "\x1b]0;PWNED\x07 a beach\x1b[2J\x9b2J\u202e"
    library.ingest_uploads([Upload("beach.jpg", jpeg_bytes(90), provenance=Provenance(prompt, "m\x1b[31m"))])
    code, out, err = _run_main(["search", "beach"], library, monkeypatch, capsys)
    assert code == 0, err
    assert "prompt: \\x1b]0;PWNED\\x07 a beach\\x1b[2J\\x9b2J\\u202e" in out
    assert not any(ch in out + err for ch in "\x1b\x07\x9b\u202e")
    code, out, _ = _run_main(["search", "beach", "--json"], library, monkeypatch, capsys)
    assert json.loads(out)["hits"][0]["prompt"] == prompt  # JSON stays exact


def test_usage_errors_quote_typed_text_inert(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["stats", "\x1b]0;PWNED\x07"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: \\x1b]0;PWNED\\x07" in err and "\x1b" not in err


# --- 11a. numeric flags that meant nothing --------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["search", "x", "-k", "0"], "argument -k: must be from 1 to 1024, not 0"),
    (["search", "x", "-k", "-5"], "argument -k: must be from 1 to 1024, not -5"),
    (["search", "x", "-k", "5000"], "argument -k: must be from 1 to 1024, not 5000"),
    (["ingest", "p", "--batch-size", "0"], "argument --batch-size: must be from 1 to 1024, not 0"),
    (["ingest", "p", "--workers", "0"], "argument --workers: must be from 1 to 64, not 0"),
    (["ingest", "p", "--workers", "-2"], "argument --workers: must be from 1 to 64, not -2"),
    (["migrate", "--to", "http://h:19530", "--batch-size", "0"], "argument --batch-size: must be from 1 to 16384"),
])
def test_meaningless_numbers_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_sensible_numbers_still_parse():
    args = cli.build_parser().parse_args(["search", "x", "-k", "1024"])
    assert args.k == 1024
    args = cli.build_parser().parse_args(["ingest", "p", "--batch-size", "1", "--workers", "1"])
    assert (args.batch_size, args.workers) == (1, 1)
    assert "1-1024" in cli.build_parser()._subparsers._group_actions[0].choices["search"].format_help()
