"""A library made by an older ragkit (schema 1) keeps working, and `upgrade` brings it to the current
schema without re-embedding: same assets, vectors, tags and provenance; a kill loses nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from ragkit.errors import StoreSupersededError
from ragkit.library import Library
from tests.conftest import REPO, TINY_MODEL
from tests.support.cli import run_cli_inprocess
from tests.support.libraries import old_library


def test_an_old_library_works_and_upgrades_in_place(settings, tiny_embedder):
    assets, vectors = old_library(settings, tiny_embedder.dim)
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        assert library.needs_upgrade and library.store.version == 1
        before = [(h.asset.sha256, round(h.score, 5)) for h in library.store.search(vectors[7], k=5)]
        assert library.count() == 40 and library.count(tags=["t1"]) == 13
        progress: list[tuple[int, int]] = []
        report = library.upgrade(on_progress=lambda done, total: progress.append((done, total)))
        assert (report.from_version, report.to_version, report.copied, report.assets) == (1, 2, 40, 40)
        assert progress[-1] == (40, 40)
        assert not library.needs_upgrade and library.store.version == 2
        after = [(h.asset.sha256, round(h.score, 5)) for h in library.store.search(vectors[7], k=5)]
        assert after == before
        assert library.get(assets[8].sha256) == assets[8]  # every field, provenance included
        np.testing.assert_allclose(library.store.get_vector(assets[3].sha256), vectors[3], atol=1e-6)
    finally:
        library.close()
    again = Library.open(settings, embedder=tiny_embedder)  # a new process picks the upgraded collection
    try:
        assert again.store.version == 2 and again.count() == 40 and again.page(0, 1).assets[0] == assets[-1]
        assert again.upgrade().copied == 0
    finally:
        again.close()


def test_a_process_still_on_the_old_collection_is_refused_then_follows(settings, tiny_embedder):
    assets, vectors = old_library(settings, tiny_embedder.dim, rows=10)
    stale = Library.open(settings, embedder=tiny_embedder)
    upgrader = Library.open(settings, embedder=tiny_embedder)
    try:
        upgrader.upgrade()
        with pytest.raises(StoreSupersededError, match="upgraded"):
            stale.update_tags(assets[0].sha256, add=["lost?"])
        assert stale.follow_upgrade() and stale.store.version == 2
        stale.update_tags(assets[0].sha256, add=["kept"])
        assert "kept" in upgrader.get(assets[0].sha256).tags
    finally:
        stale.close()
        upgrader.close()


def test_a_killed_upgrade_loses_nothing_and_the_next_run_completes_it(settings, ragkit_env, tmp_path, tiny_embedder):
    assets, _ = old_library(settings, tiny_embedder.dim, rows=3000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    env.update(ragkit_env, PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-m", "ragkit", "upgrade", "--batch-size", "20", "--json"],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in process.stderr:  # "copied N of 3000", a line per tenth: kill after the second
        if line.startswith(b"copied ") and not line.startswith(b"copied 0 "):
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the upgrade finished before it could be killed"
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        assert library.store.version == 1 and library.count() == 3000  # still the old, whole library
    finally:
        library.close()
    out = run_cli_inprocess(["upgrade", "--json"], ragkit_env, tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    report = json.loads(out.stdout)
    assert report["to_version"] == 2 and report["assets"] == 3000
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        assert library.store.version == 2 and library.count() == 3000
        assert {a.sha256 for a in library.page(0, 3000).assets} == {a.sha256 for a in assets}
    finally:
        library.close()
