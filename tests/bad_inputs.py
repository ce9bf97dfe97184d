"""The bad-input corpus: every kind of file a real archive or a careless drag-and-drop holds.

Built on demand into a folder (binary fixtures would hide what they contain). Each entry
says what the user must be told; `good` files must land whatever else is in the batch.
"""
from __future__ import annotations

import io
import os
import resource
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from tests.images_factory import encode, jpeg_bytes, picture
from tests.support.cli import cli_command, cli_env


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes | None          # None: made specially (see build)
    expect: str | None          # regex of the rejection reason; None means it must be added
    make: Callable[[Path], None] | None = None  # makes a special entry (link, pipe, socket) at a path


def _png_of(mode: str, size: tuple[int, int]) -> bytes:
    return encode(Image.new(mode, size), "PNG", optimize=True)


def _link_to(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def _link_to_picture(path: Path) -> None:
    """A link to a good picture kept outside the scan (a hidden file is skipped)."""
    target = path.with_name(".link-target.jpg")
    target.write_bytes(jpeg_bytes(49))
    path.symlink_to(target.name)


def unix_socket_file(path: Path) -> None:
    """Leave a Unix socket's file at path (bind() takes at most ~107 bytes: bind relative to it)."""
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)
    finally:
        os.chdir(cwd)


def _animated_gif() -> bytes:
    frames = [picture(s, (200, 150)) for s in (41, 42, 43)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def _sixteen_bit_tiff() -> bytes:
    grey = np.asarray(picture(44).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "TIFF")


# Sets the terminal title, clears the screen, a one-byte CSI (C1), then right-to-left override.
ESCAPE_NAME = "evil\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202egpj.exe.jpg"


def cases() -> list[Case]:
    jpeg = jpeg_bytes(40)
    return [
        Case("good.jpg", jpeg_bytes(45), None),
        Case("animated.gif", _animated_gif(), None),
        Case("sixteen-bit.tif", _sixteen_bit_tiff(), None),
        Case("cmyk.jpg", encode(picture(46).convert("CMYK"), "JPEG"), None),
        Case("ünïcødé 写真 🦄.png", encode(picture(47), "PNG"), None),
        Case("empty.jpg", b"", "empty"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 3], "truncated|corrupt"),
        Case("page.jpg", b"<!DOCTYPE html><html><body>Not found</body></html>", "not an image"),
        Case("notes.png", "just some text\n".encode() * 20, "not an image"),
        Case("random.jpg", np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             "not an image"),
        Case("bomb.png", encode(Image.new("1", (30000, 30000)), "PNG"), "megapixels|decompression"),
        Case("huge-file.jpg", None, "limit is"),
        # Memory bombs by shape: a few hundred bytes whose model resize is 224 x 22 million px
        # (ViT-B-32) or, for the 1000000x1 one, 64 x 64 million px even with the tests' tiny model.
        Case("thin.png", _png_of("RGB", (1, 100_000)), r"1x100000 px: aspect ratio 100000:1 is beyond"),
        Case("sliver.png", _png_of("L", (1_000_000, 1)), r"aspect ratio 1000000:1 is beyond"),
        Case("panorama-12to1.jpg", encode(picture(50, (2400, 200)), "JPEG"), None),
        Case("banner-32to1.jpg", encode(picture(51, (1920, 60)), "JPEG"), None),
        # Special files: only regular files are read (a link to one is fine).
        Case("zero.jpg", None, r"character device \(through a symbolic link\)", make=_link_to("/dev/zero")),
        Case("pipe.png", None, r"named pipe", make=os.mkfifo),
        Case("socket.png", None, r"socket", make=unix_socket_file),
        Case("dangling.jpg", None, r"broken symbolic link", make=_link_to("nowhere.jpg")),
        Case("loop.jpg", None, r"symbolic links", make=_link_to("loop.jpg")),
        Case("linked.jpg", None, None, make=_link_to_picture),
        # Names that are terminal escapes (title, clear screen, CSI, right-to-left) or not UTF-8.
        Case(ESCAPE_NAME, b"not an image", "not an image"),
        Case("bad\udcff-bytes.jpg", b"not an image either", "not an image"),
    ]


def build(folder: Path, oversize_bytes: int) -> dict[str, Case]:
    """Write the corpus into folder; the oversized file is sparse (costs no disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for case in cases():
        path = folder / case.name
        if case.make is not None:
            case.make(path)
        elif case.data is None:
            with open(path, "wb") as handle:
                handle.write(jpeg_bytes(48))
                handle.truncate(oversize_bytes)
        else:
            path.write_bytes(case.data)
        written[str(path)] = case
    return written


HOSTILE_UPLOAD_NAMES = [
    "../../../etc/cron.d/evil.jpg",
    "..\\..\\Windows\\System32\\evil.jpg",
    "/absolute/path.png",
    "..",
    "con\x00trol\x07chars\n.jpg",
    "\u202etxt.jpg",  # right-to-left override
    "a" * 1000 + ".jpg",
    "",
]


def files_outside(root: Path, allowed: list[Path]) -> list[Path]:
    """Every file under root that is not inside one of the allowed folders."""
    allowed = [a.resolve() for a in allowed]
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath).resolve() / name  # where the entry is (links in the corpus point anywhere)
            if not any(path == a or a in path.parents for a in allowed):
                found.append(path)
    return found


# --- running the CLI on hostile input without risking the machine -----------------------------
# The cap is on data (RLIMIT_DATA: heap and private writable mappings, not the mapped libraries).
# Measured here with the tiny test model: a normal `ingest` of one small image peaks at 1.3 GB
# resident, and under a data cap it needs between 1.5 GiB (there it fails: Milvus Lite can't
# start a thread) and 1.75 GiB. 4 GiB leaves more than 2x that, and is far below what the bombs
# took before the fix (12 GB for sliver.png's resize, unbounded for the link to /dev/zero).
# RLIMIT_AS would have to sit above the ~6 GiB of address space torch and Milvus Lite reserve,
# which also grows with the number of cores (thread stacks, malloc arenas).
MEMORY_CAP_BYTES = 4 * 2**30


@dataclass
class CappedRun:
    returncode: int
    stdout: bytes
    stderr: bytes
    max_rss_mib: float   # peak resident memory of the child
    timed_out: bool


def run_cli_capped(args: list[str], env: dict[str, str], cwd: Path, *, timeout: float = 120,
                   cap_bytes: int | None = MEMORY_CAP_BYTES, prefix: list[str] = ()) -> CappedRun:
    """`python -m ragkit ...` in a subprocess with its data memory capped; killed after `timeout`.

    `prefix` runs the CLI under another command (e.g. setpriv). The peak memory comes from
    wait4(), so it is this child's own, not the maximum over every child pytest ever ran.
    """
    def cap() -> None:
        if cap_bytes is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (cap_bytes, cap_bytes))

    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # no pipes: nothing to drain while waiting
    process = subprocess.Popen([*prefix, *cli_command(args)], env=cli_env(env), cwd=cwd,
                               stdout=out, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=cap)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        process.kill()

    killer = threading.Timer(timeout, expire)
    killer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    with out, err:
        out.seek(0)
        err.seek(0)
        return CappedRun(process.returncode, out.read(), err.read(), usage.ru_maxrss / 1024, expired.is_set())
