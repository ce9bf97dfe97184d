"""The asset store on real Milvus (Lite in-process, and `milvus-lite server`)."""
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ragkit.config import Settings
from ragkit.errors import ModelMismatchError, StoreLockedError
from ragkit.library import Library
from ragkit.records import Asset
from ragkit.storage.connection import connect
from ragkit.storage.store import AssetStore


def _random_assets(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assets = [Asset(sha256=f"{i:064x}", filename=f"img{i}.jpg", mime="image/jpeg", width=10, height=10,
                    size_bytes=100, tags=("even",) if i % 2 == 0 else ("odd",),
                    source="generated" if i % 5 == 0 else "upload", created_at=1_000 + i,
                    prompt=f"prompt {i}" if i % 5 == 0 else "")
              for i in range(n)]
    return assets, vectors


def test_search_equals_brute_force_top_k(any_library):
    assets, vectors = _random_assets(400, any_library.dim)
    any_library.store.upsert(assets, vectors)
    any_library.store.flush()
    rng = np.random.default_rng(1)
    for _ in range(10):
        query = rng.standard_normal(any_library.dim).astype(np.float32)
        query /= np.linalg.norm(query)
        expected = np.argsort(-(vectors @ query))[:10]
        hits = any_library.store.search(query, k=10)
        assert [h.asset.sha256 for h in hits] == [assets[i].sha256 for i in expected]
        np.testing.assert_allclose([h.score for h in hits], (vectors @ query)[expected], atol=1e-4)


def test_filters_and_min_score(any_library):
    assets, vectors = _random_assets(60, any_library.dim)
    any_library.store.upsert(assets, vectors)
    query = vectors[10]
    hits = any_library.store.search(query, k=60, tags=["EVEN"], source="generated")
    assert hits and all(h.asset.sha256 in {a.sha256 for a in assets[::10]} for h in hits)
    assert hits[0].asset.sha256 == assets[10].sha256 and hits[0].asset.prompt == "prompt 10"
    assert all(h.score >= 0.5 for h in any_library.store.search(query, k=60, min_score=0.5))
    assert len(any_library.store.search(query, k=60, min_score=0.5)) == 1


def test_pages_newest_first_with_total(any_library):
    assets, vectors = _random_assets(50, any_library.dim)
    any_library.store.upsert(assets, vectors)
    first = any_library.store.page(0, 24)
    assert first.total == 50 and first.page_count == 3
    assert [a.created_at for a in first.assets] == list(range(1049, 1025, -1))
    last = any_library.store.page(48, 24)
    assert [a.sha256 for a in last.assets] == [assets[1].sha256, assets[0].sha256]
    odd = any_library.store.page(0, 100, tags=["odd"])
    assert odd.total == 25 and all("odd" in a.tags for a in odd.assets)
    assert any_library.store.count(source="generated") == 10
    assert any_library.store.count() == 50


def test_update_tags_and_delete(any_library):
    assets, vectors = _random_assets(5, any_library.dim)
    any_library.store.upsert(assets, vectors)
    updated = any_library.store.update_tags(assets[1].sha256, add=["Hero Shot", "  summer  "], remove=["odd"])
    assert updated.tags == ("hero shot", "summer")
    assert any_library.store.get(assets[1].sha256).tags == ("hero shot", "summer")
    np.testing.assert_allclose(any_library.store.get_vector(assets[1].sha256), vectors[1], atol=1e-6)
    assert dict(any_library.all_tags())["summer"] == 1
    assert any_library.store.delete([assets[1].sha256]) == 1
    assert any_library.store.get(assets[1].sha256) is None
    assert any_library.count() == 4


def test_model_mismatch_is_caught(library):
    client = library._client
    with pytest.raises(ModelMismatchError, match="configured model"):
        AssetStore(client, library.store.collection, library.dim * 2, "other-model/x")


def test_second_process_on_the_same_lite_file_gets_a_clear_message(library, ragkit_env, tmp_path):
    library.store.count()
    script = textwrap.dedent(f"""
        from ragkit.storage.connection import connect
        from ragkit.errors import StoreLockedError
        try:
            connect({library.settings.milvus_uri!r})
        except StoreLockedError as exc:
            print("LOCKED", exc)
        else:
            print("OPENED")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=str(tmp_path), env={"PYTHONPATH": str(__import__("tests.conftest").conftest.REPO)})
    assert "LOCKED" in out.stdout, out.stdout + out.stderr
    assert "milvus-lite server" in out.stdout and "Stop that process" in out.stdout
    assert "Traceback" not in out.stderr


def test_server_uri_works_the_same(server, tmp_path, tiny_checkpoint, tiny_embedder):
    env = {"RAGKIT_DATA_DIR": str(tmp_path / "files"), "RAGKIT_CLIP_MODEL": "ragkit-tiny",
           "RAGKIT_CLIP_PRETRAINED": str(tiny_checkpoint), **server.env}
    settings = Settings.load(env=env, cwd=tmp_path, secrets_files=[])
    first = Library.open(settings, embedder=tiny_embedder)
    second = Library.open(settings, embedder=tiny_embedder)  # two clients share one server
    try:
        assets, vectors = _random_assets(30, first.dim)
        first.store.upsert(assets, vectors)
        assert first.count() == 30  # the writer sees its own writes at once
        deadline = time.monotonic() + 5
        while second.count() != 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.count() == 30
        hits = second.store.search(vectors[3], k=3)
        assert hits[0].asset.sha256 == assets[3].sha256 and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert second.page(0, 5).assets[0].sha256 == assets[-1].sha256
    finally:
        first.close()
        second.close()


def test_close_releases_the_lite_file_for_another_process(settings, tiny_embedder, ragkit_env, tmp_path):
    import json
    import time

    from tests.conftest import run_cli
    first = Library.open(settings, embedder=tiny_embedder)
    second = Library.open(settings, embedder=tiny_embedder)  # same file, same process: one server
    assets, vectors = _random_assets(12, first.dim)
    first.store.upsert(assets, vectors)
    first.close()
    first.close()  # twice is harmless, and doesn't release the file under `second`
    assert second.count() == 12  # still served: the file stays open while a Library uses it
    second.store.delete([assets[0].sha256])
    second.close()

    started = time.monotonic()
    out = run_cli(["stats", "--json"], ragkit_env, tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert json.loads(out.stdout)["assets"] == 11
    assert time.monotonic() - started < 30  # right away: no waiting for a lock

    again = Library.open(settings, embedder=tiny_embedder)  # and this process can open it again
    try:
        assert again.count() == 11
        assert again.store.get(assets[5].sha256).filename == "img5.jpg"
    finally:
        again.close()


def test_a_library_that_fails_to_open_does_not_keep_the_file(settings, tiny_embedder, ragkit_env, tmp_path):
    import json
    import types

    from tests.conftest import run_cli
    Library.open(settings, embedder=tiny_embedder).close()  # the collection exists, with the tiny model's dim
    wrong = types.SimpleNamespace(dim=tiny_embedder.dim * 2)
    with pytest.raises(ModelMismatchError):
        Library.open(settings, embedder=wrong)
    out = run_cli(["stats", "--json"], ragkit_env, tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert json.loads(out.stdout)["assets"] == 0
