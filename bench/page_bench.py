"""The Library page's script run at 10k assets.

Streamlit re-runs a page's whole script on every click, so what one run costs is what a
person waits for. The page needs: the asset count, the tag list (filter picker), one page
of 24 assets newest first, and their 24 thumbnails. Timed through ragkit's Library, the
same calls the page makes; and, when pages/library.py exists and runs, through Streamlit's
AppTest as a whole script.
"""
from __future__ import annotations

import os
import time

from bench.common import REPO, Table, bench_env, bench_settings, ms, percentile
from bench.synth import synthetic_library

PAGE = 24


def _thumbnails(library, assets) -> None:
    for asset in assets:
        library.thumbnail_bytes(asset.sha256)


def _new_assets(dim: int, count: int):
    """`count` assets newer than any other, with random unit vectors (an upload, as the store sees it)."""
    import hashlib
    import uuid

    import numpy as np

    from ragkit.records import Asset
    now = int(time.time() * 1000)
    assets = [Asset(sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(), filename=f"upload_{i}.jpg",
                    mime="image/jpeg", width=1600, height=1200, size_bytes=250_000, tags=("fresh",),
                    source="upload", created_at=now + i) for i in range(count)]
    vectors = np.random.default_rng().standard_normal((count, dim)).astype(np.float32)
    return assets, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def run(n: int, repeat: int, log=print) -> list[Table]:
    from ragkit.library import Library

    lib = synthetic_library(n, log=log)
    table = Table(f"Library page script at {n} assets (ms; {repeat} runs each)", ["step", "p50", "p95"])
    library = Library.open(bench_settings(lib.data_dir))
    store = library.store
    samples: dict[str, list[float]] = {}

    def forget() -> None:
        """What a first visit finds: no listing yet (AssetStore's catalog of dates, sources, tags)."""
        store.drop_listing()

    def timed(name: str, fn, cold: bool = False):
        if cold:
            forget()
        start = time.perf_counter()
        result = fn()
        samples.setdefault(name, []).append(time.perf_counter() - start)
        return result

    top_tag = None
    try:
        for _ in range(repeat):
            timed("count()", library.count)
            tags = timed("all_tags(), cache cold", library.all_tags, cold=True)
            timed("all_tags(), cache warm", library.all_tags)
            top_tag = tags[0][0] if tags else None
            timed("page(0, 24), order cache cold", lambda: library.page(0, PAGE), cold=True)
            listing = timed("page(0, 24), order cache warm", lambda: library.page(0, PAGE))
            timed("page(24, 24), next page", lambda: library.page(PAGE, PAGE))
            if top_tag:
                timed(f"page filtered by tag '{top_tag}', cold", lambda: library.page(0, PAGE, tags=[top_tag]),
                      cold=True)
                timed(f"page filtered by tag '{top_tag}', warm", lambda: library.page(0, PAGE, tags=[top_tag]))
            timed("24 thumbnail reads", lambda: _thumbnails(library, listing.assets))

            def script(cold: bool) -> None:
                if cold:
                    forget()
                library.count()
                library.all_tags()
                page = library.page(0, PAGE)
                _thumbnails(library, page.assets)

            timed("= script run, first visit (count + tags + page + thumbnails)", lambda: script(True))
            timed("= script run, rerun (caches warm)", lambda: script(False))
            # An upload of 24 (this process's own write), then the page again; then they go again.
            fresh, vectors = _new_assets(library.dim, PAGE)
            thumb = library.thumbnail_bytes(listing.assets[0].sha256)
            for asset in fresh:
                library.blobs.put(asset.sha256, thumb, thumb)
            library.store.upsert(fresh, vectors)
            timed("= script run, just after an upload of 24", lambda: script(False))
            library.delete([a.sha256 for a in fresh])
            timed("= script run, just after deleting them", lambda: script(False))
    finally:
        library.close()
    for name, values in samples.items():
        table.add(name, ms(percentile(values, 50)), ms(percentile(values, 95)))
    table.note("AssetStore lists from an in-memory catalog (ragkit.storage.listing) built by one scan and kept up to "
               "date with its own writes; rebuilt when the row count changes behind its back (or after 30 s on "
               "a server). 'cold' drops the catalog.")
    tables = [table.finish()]
    tables.append(apptest(lib, repeat, log))
    return tables


def apptest(lib, repeat: int, log=print) -> Table:
    """Time whole script runs of the app's Library page under streamlit.testing's AppTest.

    Runs the real app.py (its default page is the Library), as tests/test_app_library.py
    does, in this process, on the synthetic library. The app loads the CLIP model in a
    background thread after the first run; reruns are timed after that has finished, so the
    model load (see the cold-start table) does not land in them."""
    import threading

    table = Table(f"Library page through Streamlit AppTest at {lib.n} assets (ms)", ["run", "p50", "p95"])
    page = next((p for p in (REPO / "app_pages" / "library.py", REPO / "pages" / "library.py") if p.exists()), None)
    app = REPO / "app.py"
    if page is None:
        table.add("TODO(lead): no Library page (app_pages/library.py) when this ran; re-run "
                  "`python bench/run.py --only page` once it exists", "-", "-")
        return table.finish()
    saved_env = {key: value for key, value in os.environ.items() if key.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    saved_cwd = os.getcwd()
    for key in saved_env:
        del os.environ[key]
    os.environ.update(bench_env(lib.data_dir))
    os.chdir(lib.root)  # no .streamlit/secrets.toml of the repo or a developer (as the app tests do)
    try:
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file(str(app), default_timeout=300)
        start = time.perf_counter()
        at.run()
        first = time.perf_counter() - start
        if at.exception:
            raise RuntimeError("; ".join(str(e.value) for e in at.exception)[:200])
        for thread in threading.enumerate():  # let the app's model warm-up finish (not a page cost)
            if "warm-up" in thread.name:
                thread.join(timeout=300)
        again = []
        for _ in range(repeat):
            start = time.perf_counter()
            at.run()
            again.append(time.perf_counter() - start)
        table.add("app.py -> Library page, first run (opens the library; cold caches)", ms(first), "")
        table.add("app.py -> Library page, rerun (what each click costs)", ms(percentile(again, 50)),
                  ms(percentile(again, 95)))
        table.note("the page runs in this process through AppTest (no browser, no websocket); the "
                   "app's tag list is cached per library revision (ragkit/ui/state.py).")
    except Exception as exc:  # noqa: BLE001 - a page under construction: report, don't fail the benchmark
        table.add(f"TODO(lead): the app did not run under AppTest ({' '.join(str(exc).split())[:120]}); "
                  "re-run `python bench/run.py --only page`", "-", "-")
    finally:
        os.chdir(saved_cwd)
        for key in bench_env(lib.data_dir):
            os.environ.pop(key, None)
        os.environ.update(saved_env)
        try:
            import streamlit as st
            st.cache_resource.clear()  # closes the app's Library (on_release)
        except Exception:  # noqa: BLE001
            pass
    return table.finish()
