"""Moving an embedded library to a Milvus server: `python -m ragkit migrate --to URI`.

Vectors are copied, not re-embedded; the same library then answers the same way on the server;
a second run copies nothing; a run killed halfway is completed by the next; the source is only read.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from ragkit.config import Settings
from ragkit.ingest.pipeline import Provenance, Upload
from ragkit.library import Library
from ragkit.records import Asset
from tests.conftest import REPO
from tests.support.cli import run_cli_inprocess
from tests.e2e_support import app_env, seed  # noqa: F401 - fixtures
from tests.images_factory import jpeg_bytes


def _open(env, tmp_path, tiny_embedder) -> Library:
    return Library.open(Settings.load(env=env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)


def _snapshot(library: Library, queries: list[str]) -> dict:
    """What a person sees: the newest-first grid, every asset's metadata, tags, and search hits."""
    page = library.page(0, 100)
    hits = {q: [(h.asset.sha256, round(h.score, 4)) for h in library.search_text(q, k=5)] for q in queries}
    similar = [h.asset.sha256 for h in library.search_similar(page.assets[0].sha256, k=5)]
    return {"grid": [a.to_dict() for a in page.assets], "total": page.total, "tags": library.all_tags(),
            "hits": hits, "similar": similar, "generated": library.count(source="generated")}


def test_migrate_copies_the_library_and_the_server_answers_the_same(server, ragkit_env, tmp_path, tiny_embedder,
                                                                    image_folder):
    embedded = _open(ragkit_env, tmp_path, tiny_embedder)
    try:
        embedded.ingest_paths([image_folder], tags=["shoot", "summer 24"])
        refs = [a.sha256 for a in embedded.page(0, 2).assets]
        embedded.save_generated(jpeg_bytes(77), "image/jpeg",
                                Provenance("a model wearing these on the beach", "gemini-2.5-flash-image", tuple(refs)),
                                tags=["campaign"])
        queries = ["red silk cape", "a golden watch", "SKU-4471"]
        before = _snapshot(embedded, queries)
    finally:
        embedded.close()

    out = run_cli_inprocess(["migrate", "--to", server.uri, *(["--token", server.token] if server.token else []), "--json"],
                  ragkit_env, tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    report = json.loads(out.stdout)
    assert report["copied"] == 9 and report["already_there"] == 0 and report["target"] == server.uri
    assert report["target_rows"] == 9
    if server.token:
        assert server.token not in out.stdout.decode() + out.stderr.decode()

    again = run_cli_inprocess(["migrate", "--to", server.uri, *(["--token", server.token] if server.token else []), "--json"],
                    ragkit_env, tmp_path)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert json.loads(again.stdout)["copied"] == 0 and json.loads(again.stdout)["already_there"] == 9

    on_server = _open({**ragkit_env, **server.env}, tmp_path, tiny_embedder)
    try:
        after = _snapshot(on_server, queries)
    finally:
        on_server.close()
    assert after == before  # same grid, tags, provenance, top-k and scores
    untouched = _open(ragkit_env, tmp_path, tiny_embedder)
    try:
        assert _snapshot(untouched, queries) == before  # the embedded library is as it was
    finally:
        untouched.close()


def test_a_killed_migration_is_completed_by_the_next_run(real_milvus, ragkit_env, tmp_path, tiny_embedder):
    real_milvus.drop_all_collections()
    rows = 1200
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((rows, tiny_embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assets = [Asset(sha256=f"{i:064x}", filename=f"img{i}.jpg", mime="image/jpeg", width=10, height=10,
                    size_bytes=100, tags=(f"t{i % 7}",), created_at=1_000 + i) for i in range(rows)]
    embedded = _open(ragkit_env, tmp_path, tiny_embedder)
    try:
        embedded.store.upsert(assets, vectors)
        embedded.store.flush()
    finally:
        embedded.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    env.update(ragkit_env, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "ragkit", "migrate", "--to", real_milvus.uri, "--token", real_milvus.token,
               "--batch-size", "1", "--json"]  # one row a request: seconds of copying to kill
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = real_milvus.client()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and _landed(watcher, "Eventually") < 100:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        landed = _landed(watcher)  # what the killed run left: part of the library
    finally:
        watcher.close()
    assert process.returncode == -signal.SIGKILL, "the migration finished before it could be killed"
    assert 0 < landed < rows

    out = run_cli_inprocess(["migrate", "--to", real_milvus.uri, "--token", real_milvus.token, "--json"], ragkit_env, tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    report = json.loads(out.stdout)
    assert report["already_there"] >= landed and report["copied"] + report["already_there"] == rows
    on_server = _open({**ragkit_env, **real_milvus.env}, tmp_path, tiny_embedder)
    try:
        assert on_server.count() == rows  # everything, nothing doubled
        assert {a.sha256 for a in on_server.page(0, rows).assets} == {a.sha256 for a in assets}
        assert on_server.store.search(vectors[1111], k=1)[0].asset.sha256 == assets[1111].sha256
        assert on_server.count(tags=["t3"]) == sum(1 for i in range(rows) if i % 7 == 3)
    finally:
        on_server.close()


def _landed(client, consistency: str = "Strong") -> int:
    """Rows on the server (Strong: all of them; Eventually: fast, to poll with)."""
    try:
        return client.query(_collection(client), filter="", output_fields=["count(*)"],
                            consistency_level=consistency)[0]["count(*)"]
    except Exception:  # noqa: BLE001 - not created or not loaded yet
        return 0


def _collection(client) -> str:
    names = [n for n in client.list_collections() if n.startswith("ragkit_")]
    return names[0] if names else "ragkit_none"


def test_migrating_onto_itself_is_refused(ragkit_env, tmp_path, settings):
    out = run_cli_inprocess(["migrate", "--to", settings.milvus_uri], ragkit_env, tmp_path)
    assert out.returncode == 1 and "own database" in out.stderr.decode()


def test_an_embedded_library_past_the_comfortable_size_points_to_migrate(library, image_folder, monkeypatch):
    from ragkit.storage import milvus_lite
    library.ingest_paths([image_folder])
    assert library.stats().advice == ""  # 8 assets: nothing to say
    monkeypatch.setattr(milvus_lite, "COMFORTABLE_ASSETS", 8)
    advice = library.stats().advice
    assert "python -m ragkit migrate --to" in advice and "Team mode" in advice and "8 assets" in advice


def test_the_sidebar_says_when_to_move_to_a_server(app_env, seed, monkeypatch):
    from ragkit.storage import milvus_lite
    from tests.e2e_support import new_app, run, texts
    seed([Upload(f"p{i}.jpg", jpeg_bytes(900 + i)) for i in range(3)])
    monkeypatch.setattr(milvus_lite, "COMFORTABLE_ASSETS", 3)
    at = run(new_app())
    assert any("ragkit migrate" in info for info in texts(at.sidebar.info)), texts(at.sidebar.info)
