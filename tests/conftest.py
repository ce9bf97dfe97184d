"""Shared fixtures: a tiny real open_clip model from a checkpoint file, real Milvus Lite in temp dirs."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from ragkit.config import Settings
from ragkit.ingest.embedder import ClipEmbedder, make_random_checkpoint
from ragkit.library import Library

from devtools.fake_gemini import FakeGemini
from tests.images_factory import jpeg_bytes
from tests.milvus_servers import LiteServer, MilvusTarget, RealMilvus, free_port  # noqa: F401 - free_port for other test modules
from tests.support.cli import run_cli  # noqa: F401 - a subprocess; most tests want tests.support.cli.run_cli_inprocess

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = "ragkit-tiny"



GEMINI_TEST_KEY = "sk-test-9f8e7d6c5b4a39281706"  # the tests' Gemini key: it must never be shown


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    """A running local Gemini-format server (devtools/fake_gemini.py) on a free loopback port. The
    process's cached model lists are dropped first: each test's server offers its own models."""
    from ragkit.studio import discovery
    discovery.forget()
    with FakeGemini(tags=False) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Random weights for a tiny open_clip architecture, saved like a real checkpoint file."""
    return make_random_checkpoint(TINY_MODEL, tmp_path_factory.mktemp("model") / "ragkit-tiny.pt")


@pytest.fixture(scope="session")
def tiny_embedder(tiny_checkpoint) -> ClipEmbedder:
    return ClipEmbedder(TINY_MODEL, str(tiny_checkpoint), "cpu")


def make_env(data_dir: Path, checkpoint: Path, **extra: str) -> dict[str, str]:
    return {"RAGKIT_DATA_DIR": str(data_dir), "RAGKIT_CLIP_MODEL": TINY_MODEL,
            "RAGKIT_CLIP_PRETRAINED": str(checkpoint), "RAGKIT_DEVICE": "cpu", **extra}


@pytest.fixture
def ragkit_env(tmp_path, tiny_checkpoint) -> dict[str, str]:
    """Environment variables for a fresh library in tmp_path (for subprocesses)."""
    return make_env(tmp_path / "data", tiny_checkpoint)


@pytest.fixture
def settings(tmp_path, ragkit_env) -> Settings:
    return Settings.load(env=ragkit_env, cwd=tmp_path, secrets_files=[])


@pytest.fixture
def library(settings, tiny_embedder):
    lib = Library.open(settings, embedder=tiny_embedder)
    yield lib
    lib.close()


@pytest.fixture
def gemini_env(ragkit_env, fake_gemini) -> dict[str, str]:
    """ragkit_env plus a Gemini key and the fake Gemini server's address: the Studio and Describe work."""
    return {**ragkit_env, "GEMINI_API_KEY": GEMINI_TEST_KEY, "RAGKIT_GEMINI_BASE_URL": fake_gemini.url}


@pytest.fixture
def gemini_library(tmp_path, gemini_env, tiny_embedder):
    """A fresh library whose settings reach the fake Gemini server with a key."""
    library = Library.open(Settings.load(env=gemini_env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    yield library
    library.close()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Eight distinct JPEGs in a nested folder."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(8):
        target = folder / ("sub" if i % 2 else "") / f"photo_{i}.jpg"
        target.write_bytes(jpeg_bytes(i))
    return folder


def wait_for_port(port: int, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


# --- Milvus servers (tests/milvus_servers.py): each engine starts once per test session -------------
SERVER_ENGINES = ["milvus-lite", "milvus"]
_SERVERS: dict[str, LiteServer | RealMilvus] = {}  # engine -> the running server, to tell a crash from a bug


@pytest.fixture(scope="session")
def real_milvus(tmp_path_factory) -> Iterator[MilvusTarget]:
    """The real Milvus engine (2.3.x standalone), authentication on. One per machine: see milvus_servers."""
    server = RealMilvus(tmp_path_factory.mktemp("milvus") / "engine")
    _SERVERS["milvus"] = server
    try:
        yield server.target
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lite_server(tmp_path_factory) -> Iterator[MilvusTarget]:
    """`milvus-lite server` on 127.0.0.1 and a free port."""
    server = LiteServer(tmp_path_factory.mktemp("milvus-lite") / "data")
    _SERVERS["milvus-lite"] = server
    try:
        yield server.target
    finally:
        server.stop()


def _empty_server(request, engine: str) -> MilvusTarget:
    target = request.getfixturevalue("real_milvus" if engine == "milvus" else "lite_server")
    died = _SERVERS[engine].death_notice()
    if died:
        pytest.fail(died, pytrace=False)
    target.drop_all_collections()  # every test starts with an empty server
    return target


@pytest.fixture(params=SERVER_ENGINES)
def server(request) -> MilvusTarget:
    """A Milvus server, empty: the test runs once on `milvus-lite server` and once on real Milvus."""
    return _empty_server(request, request.param)


@pytest.fixture(params=["embedded", *SERVER_ENGINES])
def any_engine(request) -> MilvusTarget | None:
    """Each engine a library can live on: the embedded Milvus Lite file (None), or a server."""
    return None if request.param == "embedded" else _empty_server(request, request.param)


@pytest.fixture
def any_env(tmp_path, tiny_checkpoint, any_engine) -> dict[str, str]:
    """Environment variables for a fresh library on `any_engine` (for subprocesses)."""
    return make_env(tmp_path / "data", tiny_checkpoint, **(any_engine.env if any_engine else {}))


@pytest.fixture
def any_library(tmp_path, any_env, tiny_embedder):
    lib = Library.open(Settings.load(env=any_env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    yield lib
    lib.close()


@pytest.fixture
def server_env(tmp_path, tiny_checkpoint, server) -> dict[str, str]:
    return make_env(tmp_path / "data", tiny_checkpoint, **server.env)




# --- lanes: `pytest -m "not browser and not server and not slow"` is the quick loop (README) -------
_SERVER_FIXTURES = {"server", "real_milvus", "lite_server", "server_env"}


def pytest_collection_modifyitems(items) -> None:
    """Mark what needs a Milvus server engine (`server`) and what drives app.py in AppTest (`app`),
    from the fixtures and file names, so a new test gets its lane without remembering a marker.
    `browser` (Chromium) and `slow` are marked in the test modules."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if _SERVER_FIXTURES & set(item.fixturenames) or params.get("any_engine") in SERVER_ENGINES:
            item.add_marker(pytest.mark.server)
        if item.path.name.startswith("test_app_"):
            item.add_marker(pytest.mark.app)
