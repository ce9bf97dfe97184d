"""Inference that shares the CPU (issue 20): torch's thread set-up, the one model worker with queries
first, the fast-loading safetensors copy of a checkpoint, and CLI commands that never import torch.
Nothing here is timed: each test checks what makes the speed, not the speed."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ragkit.ingest import cpu
from ragkit.ingest.embedder import ClipEmbedder, make_random_checkpoint
from ragkit.ingest.model_worker import BULK, QUERY, ModelWorker
from ragkit.ingest.weights_cache import cached_copy_path
from tests.conftest import REPO, TINY_MODEL, make_env, run_cli


def _python(code: str, env: dict[str, str] | None = None) -> str:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("RAGKIT_", "OMP_", "MKL_"))}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --- torch's threads -------------------------------------------------------------------------------
def test_loading_the_model_sizes_torch_to_the_cores_this_process_may_use_and_stops_spinning(tiny_checkpoint):
    # One core allowed (as a container or `taskset` would): one thread, and passive waiting, set
    # before torch loaded its OpenMP runtime (the embedder's load is the one place that does it).
    out = _python(
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from ragkit.ingest.embedder import ClipEmbedder\n"
        f"e = ClipEmbedder({TINY_MODEL!r}, {str(tiny_checkpoint)!r}, 'cpu')\n"
        "import torch; print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])")
    assert out.split() == ["1", "PASSIVE"]


def test_the_thread_count_can_be_chosen_and_a_chosen_waiting_policy_is_kept():
    out = _python("import os, torch\nfrom ragkit.ingest.cpu import configure_torch\n"
                  "print(configure_torch(), torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])",
                  {"RAGKIT_TORCH_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"})
    assert out.split() == ["3", "3", "ACTIVE"]


def test_a_cgroup_quota_caps_the_cores(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu.cgroup_cpu_limit(tmp_path) == 1.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu.cgroup_cpu_limit(tmp_path) is None


# --- the model worker ------------------------------------------------------------------------------
def _blocked(worker: ModelWorker):
    """Occupy the worker until the returned event is set (so that jobs queue up behind it)."""
    started, release = threading.Event(), threading.Event()
    worker.submit(lambda: (started.set(), release.wait(30)), priority=BULK)
    assert started.wait(30)
    return release


def test_queries_go_before_queued_bulk_work_and_each_priority_keeps_its_order():
    worker, order = ModelWorker(), []
    release = _blocked(worker)
    futures = [worker.submit(lambda name=name: order.append(name), priority=priority)
               for name, priority in [("ingest-1", BULK), ("ingest-2", BULK), ("search-1", QUERY),
                                      ("ingest-3", BULK), ("search-2", QUERY)]]
    release.set()
    for future in futures:
        future.result(timeout=30)
    assert order == ["search-1", "search-2", "ingest-1", "ingest-2", "ingest-3"]


def test_text_queries_waiting_together_share_one_forward_and_each_gets_its_own_rows():
    worker, batches = ModelWorker(), []

    def forward(items):
        batches.append(list(items))
        return [f"vector of {item}" for item in items]

    release = _blocked(worker)
    results: dict[str, list] = {}
    threads = [threading.Thread(target=lambda t=t: results.__setitem__(t, worker.call_batch("k", forward, [t, t + "!"])))
               for t in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    while worker.pending() < 3:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(batches) == 1 and sorted(batches[0]) == sorted(["a", "a!", "b", "b!", "c", "c!"])
    assert results == {t: [f"vector of {t}", f"vector of {t}!"] for t in ("a", "b", "c")}


def test_one_callers_bad_input_does_not_sink_the_others_sharing_its_forward():
    worker = ModelWorker()

    def forward(items):
        if "bad" in items:
            raise ValueError("bad text")
        return [item.upper() for item in items]

    release = _blocked(worker)
    outcome: dict[str, object] = {}

    def ask(text):
        try:
            outcome[text] = worker.call_batch("k", forward, [text])
        except ValueError as exc:
            outcome[text] = exc

    threads = [threading.Thread(target=ask, args=(t,)) for t in ("ok", "bad", "fine")]
    for thread in threads:
        thread.start()
    while worker.pending() < 3:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(30)
    assert outcome["ok"] == ["OK"] and outcome["fine"] == ["FINE"]
    assert isinstance(outcome["bad"], ValueError)


def test_a_call_from_the_worker_thread_itself_runs_at_once():
    worker = ModelWorker()
    assert worker.call(lambda: worker.call(lambda: 42)) == 42


def test_concurrent_searches_get_the_same_vectors_as_one_at_a_time(tiny_embedder):
    texts = [f"a red cup number {i}" for i in range(12)] + ["a much longer description of a blue chair " * 3]
    alone = {t: tiny_embedder.embed_texts([t], trim=False)[0] for t in texts}
    together: dict[str, np.ndarray] = {}
    threads = [threading.Thread(target=lambda t=t: together.__setitem__(t, tiny_embedder.embed_texts([t])[0]))
               for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for text in texts:
        np.testing.assert_allclose(together[text], alone[text], atol=1e-5)


def test_bulk_images_reach_the_model_in_chunks_a_search_can_slip_between(tiny_embedder):
    import torch
    batch = torch.randn(20, 3, tiny_embedder.image_size, tiny_embedder.image_size)
    before = tiny_embedder._worker.forwards  # noqa: SLF001
    vectors = tiny_embedder.embed_tensors(batch)
    assert tiny_embedder._worker.forwards - before == 3  # noqa: SLF001 - 8 + 8 + 4
    np.testing.assert_allclose(vectors, tiny_embedder.embed_tensors(batch, priority=QUERY), atol=1e-5)


# --- the fast-loading copy of the weights ----------------------------------------------------------
def test_the_second_load_reads_the_safetensors_copy_and_a_changed_original_rebuilds_it(tmp_path, monkeypatch):
    original = make_random_checkpoint(TINY_MODEL, tmp_path / "weights" / "tiny.pt")
    cache = tmp_path / "data" / "model-cache"
    first = ClipEmbedder(TINY_MODEL, str(original), "cpu", cache_dir=cache)
    copy = cached_copy_path(original.resolve(), cache)
    assert copy.is_file()
    reference = first.embed_texts(["a cup"])

    import torch

    def no_torch_load(*args, **kwargs):
        raise AssertionError("the original checkpoint was unpickled again")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "load", no_torch_load)
        second = ClipEmbedder(TINY_MODEL, str(original), "cpu", cache_dir=cache)
    np.testing.assert_allclose(second.embed_texts(["a cup"]), reference, atol=1e-6)
    assert second.random_weights and second.model_id == first.model_id  # the identity is the original's

    # A new checkpoint saved over the original (other weights): the copy follows it.
    torch.manual_seed(1)
    import open_clip
    other = open_clip.create_model(TINY_MODEL, pretrained=None)
    torch.save({"state_dict": other.state_dict()}, original)
    stamp = os.stat(original)
    os.utime(original, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 5_000_000_000))
    third = ClipEmbedder(TINY_MODEL, str(original), "cpu", cache_dir=cache)
    assert not np.allclose(third.embed_texts(["a cup"]), reference, atol=1e-3)
    direct = ClipEmbedder(TINY_MODEL, str(original), "cpu")  # no cache: torch.load of the original
    np.testing.assert_allclose(third.embed_texts(["a cup"]), direct.embed_texts(["a cup"]), atol=1e-6)
    assert not third.random_weights


def test_a_damaged_copy_is_rebuilt_not_trusted(tmp_path, tiny_checkpoint):
    cache = tmp_path / "model-cache"
    good = ClipEmbedder(TINY_MODEL, str(tiny_checkpoint), "cpu", cache_dir=cache).embed_texts(["a cup"])
    copy = cached_copy_path(Path(tiny_checkpoint).resolve(), cache)
    copy.write_bytes(b"not a safetensors file")
    again = ClipEmbedder(TINY_MODEL, str(tiny_checkpoint), "cpu", cache_dir=cache)
    np.testing.assert_allclose(again.embed_texts(["a cup"]), good, atol=1e-6)
    assert copy.stat().st_size > 1000


# --- a CLI that starts fast ------------------------------------------------------------------------
PROBE = ("import runpy, sys, atexit\n"
         "atexit.register(lambda: print('IMPORTED', 'torch' in sys.modules, 'open_clip' in sys.modules, "
         "file=sys.stderr))\n"
         "sys.argv = ['ragkit'] + sys.argv[1:]\n"
         "runpy.run_module('ragkit', run_name='__main__')\n")


@pytest.mark.parametrize("args", [["--help"], ["stats"], ["trash"], ["tag", "a" * 64, "--add", "x"],
                                  ["brand-kit", "list"]])
def test_commands_that_embed_nothing_do_not_import_torch(tmp_path, tiny_checkpoint, args):
    env = make_env(tmp_path / "data", tiny_checkpoint)
    assert run_cli(["stats"], env, tmp_path).returncode == 0  # the library exists (made by another run)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    full_env.update(env, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=full_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 3), done.stderr
    assert "IMPORTED False False" in done.stderr, done.stderr


# --- no full collection of the long-lived heap after every rerun ------------------------------------
def test_the_app_freezes_what_lives_long_once_the_model_is_loaded(library):
    import gc

    from ragkit.ui.state import _warm_up_model
    gc.unfreeze()
    try:
        _warm_up_model(library)
        assert library._embedder is not None  # noqa: SLF001 - loaded by the warm-up
        assert gc.get_freeze_count() > 10_000  # torch, open_clip, the model: out of gc.collect()'s walk
        assert not any(obj is library for obj in gc.get_objects())  # frozen objects are not walked
    finally:
        gc.unfreeze()
