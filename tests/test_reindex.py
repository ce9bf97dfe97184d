"""Re-indexing with another embedding model while the current one serves (ragkit.lifecycle.reindex), and the
model the library records for itself (ragkit.lifecycle.active_model). Two tiny random-weight architectures
from checkpoint files: A (ragkit-tiny, 64-d) then B (ragkit-tiny-b, 32-d)."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from contextlib import closing

import numpy as np
import pytest

from ragkit.config import Settings
from ragkit.ingest.embedder import ClipEmbedder, make_random_checkpoint, model_identity
from ragkit.errors import ModelUnavailableError, ReindexError, StoreSupersededError
from ragkit.ingest.pipeline import Upload, embed_query_image
from ragkit.library import Library
from ragkit.lifecycle.migrate import all_ids
from ragkit.lifecycle.reindex import _Reindex, reindex
from tests.conftest import REPO, TINY_MODEL
from tests.support.cli import run_cli_inprocess
from tests.images_factory import jpeg_bytes

MODEL_B = "ragkit-tiny-b"


@pytest.fixture(scope="session")
def checkpoint_b(tmp_path_factory):
    return make_random_checkpoint(MODEL_B, tmp_path_factory.mktemp("model-b") / "ragkit-tiny-b.pt")


@pytest.fixture(scope="session")
def embedder_b(checkpoint_b) -> ClipEmbedder:
    return ClipEmbedder(MODEL_B, str(checkpoint_b), "cpu")


def _add(library: Library, seeds, **kwargs) -> list:
    report = library.ingest_uploads([Upload(f"photo-{i}.jpg", jpeg_bytes(i)) for i in seeds], **kwargs)
    assert not report.rejected
    return [asset for _, asset in report.added]


def _reopen(library: Library) -> Library:
    """A new process's view: the same settings (the environment still names model A), no model handed in."""
    return Library.open(Settings.load(env={"RAGKIT_DATA_DIR": str(library.settings.data_dir),
                                           "RAGKIT_MILVUS_URI": library.settings.milvus_uri,
                                           "RAGKIT_MILVUS_TOKEN": library.settings.milvus_token,
                                           "RAGKIT_CLIP_MODEL": TINY_MODEL,
                                           "RAGKIT_CLIP_PRETRAINED": library.active_model.configured.pretrained,
                                           "RAGKIT_DEVICE": "cpu"},
                                      cwd=library.settings.data_dir.parent, secrets_files=[]))


def test_reindex_keeps_every_field_switches_the_library_and_keeps_the_old_index(any_library, checkpoint_b, embedder_b):
    library = any_library
    assets = _add(library, range(10), tags=["summer"])
    # Every field a person can set: provenance, caption, rights, trash, details.
    special = dataclasses.replace(assets[3], caption="a red cape", licence="CC-BY", usable_until=1_900_000_000_000,
                                  no_reference=True, prompt="a brief", model="gemini-2.5-flash-image",
                                  reference_ids=(assets[1].sha256,), source="generated", details={"kit": "K1"})
    trashed = dataclasses.replace(assets[4], trashed_at=1_800_000_000_000)
    for changed in (special, trashed):
        library.store.upsert([changed], library.store.get_vector(changed.sha256)[None, :])
    before = {a.sha256: a for a in library.store.get_many([a.sha256 for a in assets])}

    report = reindex(library, MODEL_B, str(checkpoint_b), embedder=embedder_b, settle_seconds=0.2)

    assert report.switched and report.embedded == 10 and report.assets == 10 and report.verified == 9
    assert report.previous == library.model_id and report.model == model_identity(MODEL_B, str(checkpoint_b))
    assert library.search_text("cape", k=3), "the old index still serves its library object"
    after = _reopen(library)
    try:
        assert after.model_id == report.model and after.dim == 32
        assert after.count() == 9 and [a.sha256 for a in after.store.trashed()] == [trashed.sha256]
        assert {a.sha256: a for a in after.store.get_many(list(before))} == before  # every field, as it was
        original = library.original_bytes(assets[6].sha256)
        assert after.search_image(original, k=1)[0].asset.sha256 == assets[6].sha256
        assert after.store.full_text == library.store.full_text  # keyword search, where the engine has it
        if after.store.full_text:  # Milvus 2.3 has no BM25: there random-weight CLIP alone ranks "red cape"
            assert after.search_text("red cape", k=3)[0].asset.sha256 == special.sha256  # its caption's words
        np.testing.assert_allclose(after.store.get_vector(assets[6].sha256),  # the new model's vector
                                   embed_query_image(original, embedder_b, after.settings.max_image_pixels), atol=1e-4)
        stats = after.stats().to_dict()
        assert stats["model"] == report.model and stats["configured_model"] == library.model_id
        assert stats["reindex"] is None
        assert [(o["model"], o["count"]) for o in stats["other_collections"]] == [(library.model_id, 10)]
    finally:
        after.close()


def test_the_recorded_model_wins_over_a_changed_environment(settings, tiny_embedder, checkpoint_b, tmp_path):
    """Immich #702: changing RAGKIT_CLIP_MODEL no longer makes the library look empty."""
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        _add(library, range(3))
    finally:
        library.close()
    changed = Settings.load(env={"RAGKIT_DATA_DIR": str(settings.data_dir), "RAGKIT_CLIP_MODEL": MODEL_B,
                                 "RAGKIT_CLIP_PRETRAINED": str(checkpoint_b), "RAGKIT_DEVICE": "cpu"},
                            cwd=tmp_path, secrets_files=[])
    library = Library.open(changed)
    try:
        assert library.model_id == model_identity(TINY_MODEL, settings.clip_pretrained) and library.count() == 3
        assert library.stats().configured_model == model_identity(MODEL_B, str(checkpoint_b))
        assert len(library.search_text("photo", k=3)) == 3
    finally:
        library.close()


def test_search_never_fails_or_comes_back_empty_while_the_library_is_reindexed(library, checkpoint_b, embedder_b):
    assets = _add(library, range(60), tags=["summer"])
    seen: dict[str, list] = {"latency": [], "errors": [], "empty": []}
    stop = threading.Event()

    def search_all_the_time() -> None:
        queries = [lambda: library.search_text("red cape", k=6),
                   lambda: library.search_similar(assets[5].sha256, k=6),
                   lambda: library.search_text("summer", k=6, tags=["summer"])]
        while not stop.is_set():
            for query in queries:
                started = time.perf_counter()
                try:
                    hits = query()
                except Exception as exc:  # noqa: BLE001 - what the test is looking for
                    seen["errors"].append(repr(exc))
                    continue
                seen["latency"].append(time.perf_counter() - started)
                if not hits:
                    seen["empty"].append(query)

    searcher = threading.Thread(target=search_all_the_time)
    searcher.start()
    try:
        time.sleep(0.3)
        report = reindex(library, MODEL_B, str(checkpoint_b), embedder=embedder_b, settle_seconds=0.5)
        time.sleep(0.3)
    finally:
        stop.set()
        searcher.join(timeout=60)
    assert report.switched and report.assets == 60
    assert seen["errors"] == [] and seen["empty"] == []
    assert len(seen["latency"]) > 30
    print(f"\nsearches during the reindex: {len(seen['latency'])}, "
          f"p50 {statistics.median(seen['latency']) * 1000:.1f} ms, max {max(seen['latency']) * 1000:.1f} ms; "
          f"reindex {report.images_per_second:.1f} images/s")


def test_what_changes_during_the_reindex_ends_up_in_the_new_index(any_library, checkpoint_b, embedder_b):
    """An ingest, a tag edit and a delete made while the reindex runs (catch-up passes)."""
    library = any_library
    assets = _add(library, range(12))
    done_once = threading.Event()
    added: list = []

    def meanwhile(done: int, total: int) -> None:
        if done and not done_once.is_set():  # the first batch has landed in the new index
            done_once.set()
            added.extend(_add(library, range(100, 103), tags=["late"]))
            library.update_tags(assets[0].sha256, add=["edited"])
            library.delete([assets[1].sha256])

    report = reindex(library, MODEL_B, str(checkpoint_b), embedder=embedder_b, on_progress=meanwhile,
                     settle_seconds=0.2, batch_size=4)
    assert done_once.is_set() and len(added) == 3
    after = _reopen(library)
    try:
        assert after.model_id == report.model
        for asset in added:  # in both indexes
            assert after.get(asset.sha256).tags == ("late",) and library.get(asset.sha256).tags == ("late",)
        assert "edited" in after.get(assets[0].sha256).tags
        assert after.store.get(assets[1].sha256) is None
        assert after.count() == library.count() == 14
    finally:
        after.close()


def test_changes_in_the_switch_window_are_caught_up_without_undoing_newer_ones(library, checkpoint_b,
                                                                              embedder_b, monkeypatch):
    """A process still on the old model writes just before the switch; a process on the new one edits
    just after it. The catch-up brings the first over and keeps the second."""
    assets = _add(library, range(8))
    switch = _Reindex.switch
    late: list = []

    def switch_with_writers_around(self, target) -> None:
        late.extend(_add(library, range(200, 202)))                      # old model, before the mark
        library.update_tags(assets[2].sha256, add=["old-side"])
        library.update_tags(assets[3].sha256, add=["old-side"])
        switch(self, target)
        with pytest.raises(StoreSupersededError):                         # after the mark: refused
            library.update_tags(assets[4].sha256, add=["lost?"])
        self.target.update_tags(assets[3].sha256, add=["new-side"])       # a process on the new model

    monkeypatch.setattr(_Reindex, "switch", switch_with_writers_around)
    monkeypatch.setattr("ragkit.lifecycle.reindex.RECORD_EVERY_S", 0)  # progress into the record at every step
    report = reindex(library, MODEL_B, str(checkpoint_b), embedder=embedder_b, settle_seconds=0.1)
    after = _reopen(library)
    try:
        assert after.stats().reindex is None  # the catch-up's progress did not bring the finished reindex back
        assert {a.sha256 for a in late} <= set(all_ids(after.store)) and report.assets == 10
        assert "old-side" in after.get(assets[2].sha256).tags
        assert after.get(assets[3].sha256).tags == ("new-side",)  # the newer edit, in the new index, wins
        assert "lost?" not in after.get(assets[4].sha256).tags
    finally:
        after.close()


def _popen_reindex(env: dict, cwd, *args: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    full.update(env, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "ragkit", "reindex", *args], env=full, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_a_killed_reindex_resumes_and_doubles_nothing(settings, ragkit_env, tmp_path, tiny_embedder, checkpoint_b,
                                                       embedder_b):
    ASSETS = 120  # noqa: N806 - enough that the kill lands mid-way (about 100 writes still to go)
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        ids = {a.sha256 for a in _add(library, range(ASSETS), tags=["big"])}
    finally:
        library.close()
    process = _popen_reindex(ragkit_env, tmp_path, "--model", MODEL_B, "--pretrained", str(checkpoint_b),
                             "--batch-size", "1", "--workers", "1", "--json")  # a write per asset: time to kill it
    for line in process.stderr:  # "re-indexed N of 120", a line per tenth: kill after the second
        if line.startswith(b"re-indexed ") and not line.startswith(b"re-indexed 0 "):
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the reindex finished before it could be killed"

    stats = json.loads(run_cli_inprocess(["stats", "--json"], ragkit_env, tmp_path).stdout)
    assert stats["model"] == model_identity(TINY_MODEL, settings.clip_pretrained) and stats["assets"] == ASSETS
    assert stats["reindex"]["model_id"] == model_identity(MODEL_B, str(checkpoint_b))
    assert stats["reindex"]["done"] < stats["reindex"]["total"] == ASSETS  # the record's progress, every 2 s
    partial = {o["model"]: o for o in stats["other_collections"]}[stats["reindex"]["model_id"]]
    assert 0 < partial["count"] < ASSETS and not partial["complete"]

    library = Library.open(settings)  # the resume: the same call the CLI makes, in-process (no torch import)
    try:
        report = reindex(library, MODEL_B, str(checkpoint_b), embedder=embedder_b, settle_seconds=0)
    finally:
        library.close()
    assert report.switched and report.assets == ASSETS and 0 < report.embedded < ASSETS  # resumed
    library = Library.open(settings)
    try:
        assert library.model_id == report.model and library.count() == ASSETS
        assert sorted(all_ids(library.store)) == sorted(ids)  # each once
    finally:
        library.close()


def test_an_original_that_cant_be_read_stops_the_switch_and_loses_nothing(library, checkpoint_b, embedder_b):
    assets = _add(library, range(6))
    path = library.blobs.original_path(assets[2].sha256)
    kept = path.read_bytes()
    path.unlink()
    with pytest.raises(ReindexError, match="doctor --repair"):
        reindex(library, MODEL_B, str(checkpoint_b), embedder=embedder_b, settle_seconds=0)
    again = _reopen(library)
    try:
        assert again.model_id == library.model_id and again.count() == 6  # still the old model, whole
    finally:
        again.close()
    path.write_bytes(kept)
    report = reindex(library, MODEL_B, str(checkpoint_b), embedder=embedder_b, settle_seconds=0)
    assert report.switched and report.embedded == 1 and report.assets == 6


def test_drop_old_removes_the_previous_index_only(settings, ragkit_env, tmp_path, tiny_embedder, checkpoint_b):
    """Two CLI runs (each loads torch: seconds); the checks between them read the library in-process."""
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        _add(library, range(5))
    finally:
        library.close()
    out = run_cli_inprocess(["reindex", "--model", MODEL_B, "--pretrained", str(checkpoint_b)], ragkit_env, tmp_path)
    assert out.returncode == 0 and b"reindex --drop-old" in out.stderr, out.stderr.decode()[-2000:]
    with closing(Library.open(settings)) as switched:
        assert len(switched.stats().other_collections) == 1
    out = run_cli_inprocess(["reindex", "--drop-old", "--json"], ragkit_env, tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert not json.loads(out.stdout)["switched"] and len(json.loads(out.stdout)["dropped"]) == 1
    with closing(Library.open(settings)) as dropped:
        stats = dropped.stats().to_dict()
        assert stats["other_collections"] == [] and stats["assets"] == 5
        assert stats["model"] == model_identity(MODEL_B, str(checkpoint_b))
        assert len(dropped.search_text("photo", k=10)) == 5


def test_reindex_usage_errors(ragkit_env, tmp_path):
    assert run_cli_inprocess(["reindex", "--model", MODEL_B], ragkit_env, tmp_path).returncode == 2
    assert run_cli_inprocess(["reindex"], ragkit_env, tmp_path).returncode == 2


def test_a_recorded_checkpoint_found_elsewhere_on_another_machine(library, checkpoint_b, embedder_b, tmp_path):
    """The record keeps the path of the machine that re-indexed; another machine names its own copy."""
    _add(library, range(3))
    here = tmp_path / "models" / "ragkit-tiny-b.pt"
    here.parent.mkdir()
    here.write_bytes(checkpoint_b.read_bytes())
    reindex(library, MODEL_B, str(here), embedder=embedder_b, settle_seconds=0)
    elsewhere = tmp_path / "other-machine" / "ragkit-tiny-b.pt"
    elsewhere.parent.mkdir()
    here.rename(elsewhere)
    moved = _reopen(library)
    try:
        with pytest.raises(ModelUnavailableError, match="RAGKIT_CLIP_PRETRAINED=/path/to/ragkit-tiny-b.pt"):
            moved.search_text("photo")
        assert moved.count() == 3  # everything but the model still works
    finally:
        moved.close()
    told = Library.open(Settings.load(env={"RAGKIT_DATA_DIR": str(library.settings.data_dir), "RAGKIT_DEVICE": "cpu",
                                           "RAGKIT_CLIP_MODEL": MODEL_B, "RAGKIT_CLIP_PRETRAINED": str(elsewhere)},
                                      cwd=tmp_path, secrets_files=[]))
    try:
        assert len(told.search_text("photo", k=3)) == 3 and told.stats().configured_model == ""
    finally:
        told.close()
