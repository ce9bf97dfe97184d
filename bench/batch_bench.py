"""Batch promo jobs: how long a batch of products takes, and what a running batch costs the other pages.

    python bench/batch_bench.py                                  # 20 products; model 0 s and 1 s; 1, 4, 8 at a time
    python bench/batch_bench.py --products 20 --delays 0,1 --concurrency 4 --page-runs 40

The Gemini side is devtools/fake_gemini.py run as its own process (`python -m devtools.fake_gemini --delay D`),
so its drawing and JSON don't share this process's cores' GIL with the client: D is the model's time to
draw one image (a real Nano Banana image takes several seconds; 0 s shows ragkit's own overhead). Its
pictures are small PNGs (96 px), so the client's base64 work is less than with real 1K images.

Table 1: one job of N products x 1 variation through ragkit.studio.batch.run_batch (the code behind the
CLI and the Batch tab): wall time, images/s, the ideal (ceil(N / C) x D), ragkit's overhead per request,
and this process's CPU time (the client threads, state.json writes, the ledger). Then "Approve all"
(N images saved to the library: decode, thumbnail, CLIP embedding, upsert).

Table 2: the Library page (app.py through Streamlit's AppTest, in this process, as a click costs it),
idle, then while a batch started on the Studio's Batch tab runs in the app's background thread (with
the sidebar's progress note that the page then shows).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, TMP_DIR, Table, bench_env, ms, percentile, quiet_logs, shared_embedder, show  # noqa: E402

BRIEF = "The product on a pastel podium, soft studio light, a few spring flowers"
TAG = "bench-products"
KEY = "bench-key-not-a-secret"
STUDIO, LIBRARY = "app_pages/studio.py", "app_pages/library.py"


# --- the fake Gemini, in a process of its own ------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def fake_gemini(delay_s: float) -> Iterator[str]:
    """`python -m devtools.fake_gemini --delay D` on a free port; yields its URL."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "devtools.fake_gemini", "--port", str(port), "--delay",
                                str(delay_s)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the fake Gemini server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- a library of product shots -------------------------------------------------------------------
def make_library(root: Path, products: int):
    """A fresh library in root/data with `products` product shots tagged TAG (random ViT-B-32)."""
    from ragkit.config import Settings
    from ragkit.ingest.pipeline import Upload
    from ragkit.library import Library
    from tests.e2e_support import product_set

    data_dir = root / "data"
    settings = Settings.load(env=bench_env(data_dir), cwd=root, secrets_files=[])
    library = Library.open(settings, embedder=shared_embedder())
    uploads = [Upload(name, data) for name, data in product_set(products)]
    report = library.ingest_uploads(uploads, tags=[TAG])
    if len(report.added) != products:
        raise RuntimeError(f"only {len(report.added)} of {products} product shots were added")
    library.close()
    return data_dir


def open_library(data_dir: Path, url: str):
    from ragkit.config import Settings
    from ragkit.library import Library
    env = bench_env(data_dir, GEMINI_API_KEY=KEY, RAGKIT_GEMINI_BASE_URL=url)
    return Library.open(Settings.load(env=env, cwd=data_dir.parent, secrets_files=[]), embedder=shared_embedder())


# --- table 1: a batch, end to end -----------------------------------------------------------------
def time_batches(data_dir: Path, products: int, delays: list[float], concurrencies: list[int]) -> Table:
    from ragkit.studio import batch

    table = Table(f"A batch of {products} products x 1 variation against the local fake Gemini",
                  ["model s/image", "at a time", "wall s", "images/s", "ideal s", "overhead ms/round",
                   "client CPU s"])
    approve_s = None
    for delay in delays:
        with fake_gemini(delay) as url:
            library = open_library(data_dir, url)
            try:
                store = batch.job_store(library.settings)
                for concurrency in concurrencies:
                    spec = batch.plan_batch(library, BRIEF, tag=TAG, variations=1, new=True)
                    job_id = store.create(spec).id
                    wall, cpu = time.perf_counter(), time.process_time()
                    job = batch.run_batch(store, job_id, library, concurrency=concurrency)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    if job.counts()[batch.DONE] != products:
                        raise RuntimeError(f"the batch finished {job.counts()}")
                    ideal = math.ceil(products / concurrency) * delay
                    per_request = (wall - ideal) / math.ceil(products / concurrency)
                    table.add(f"{delay:g}", concurrency, f"{wall:.2f}", f"{products / wall:.1f}", f"{ideal:.1f}",
                              ms(per_request), f"{cpu:.2f}")
                    if approve_s is None:
                        started = time.perf_counter()
                        saved = batch.approve_all(store, job_id, library)
                        approve_s = (time.perf_counter() - started, len(saved))
            finally:
                library.close()
    if approve_s:
        table.note(f"Approve all ({approve_s[1]} images into the library: decode, thumbnail, CLIP ViT-B-32 "
                   f"embedding, upsert): {approve_s[0]:.2f} s")
    table.note("overhead/round = (wall - ideal) / ceil(N / C): what a round of C requests costs beyond the model's "
               "time (reading the product, the request and its base64, the fake server's own work in its process, "
               "the image and state.json writes, the ledger); client CPU = this process's CPU time for the run.")
    return table.finish()


# --- table 2: the Library page while a batch runs -------------------------------------------------
@contextlib.contextmanager
def app_environment(data_dir: Path, url: str) -> Iterator[None]:
    """The app's environment for AppTest: this library and the fake Gemini, nothing from outside."""
    saved_env = {k: v for k, v in os.environ.items() if k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    saved_cwd = os.getcwd()
    for key in saved_env:
        del os.environ[key]
    os.environ.update(bench_env(data_dir, GEMINI_API_KEY=KEY, RAGKIT_GEMINI_BASE_URL=url))
    os.chdir(data_dir.parent)  # no .streamlit/secrets.toml of the repo or a developer
    try:
        yield
    finally:
        import streamlit as st
        st.cache_resource.clear()  # closes the app's Library
        os.chdir(saved_cwd)
        for key in bench_env(data_dir, GEMINI_API_KEY="", RAGKIT_GEMINI_BASE_URL=""):
            os.environ.pop(key, None)
        os.environ.update(saved_env)


def timed_run(at) -> float:
    started = time.perf_counter()
    at.run(timeout=300)
    if at.exception:
        raise RuntimeError("; ".join(str(e.value) for e in at.exception)[:300])
    return time.perf_counter() - started


def start_batch_in_the_studio(at, variations: int) -> str:
    """Fill in the Batch tab as a person would and press Start; the job's id."""
    at.switch_page(STUDIO)
    timed_run(at)
    at.session_state["studio.tab"] = "Batch"
    timed_run(at)
    at.text_area(key="batch.brief").set_value(BRIEF)
    at.selectbox(key="batch.tag").set_value(TAG)
    at.segmented_control(key="batch.variations").set_value(variations)
    timed_run(at)
    at.button(key="batch.start").click()
    timed_run(at)
    return at.session_state["batch.job"]


def time_library_page(data_dir: Path, products: int, runs: int, delay: float, variations: int) -> Table:
    from streamlit.testing.v1 import AppTest

    from ragkit.studio import batch

    requests = products * variations
    table = Table(f"The Library page (app.py through AppTest), idle and while a batch of {requests} requests "
                  f"runs (model {delay:g} s/image, 4 at a time)", ["Library page", "runs", "p50 ms", "p95 ms",
                                                                   "max ms"])
    with fake_gemini(delay) as url, app_environment(data_dir, url):
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
        timed_run(at)
        for thread in threading.enumerate():  # the app's model warm-up is not a page cost
            if "warm-up" in thread.name:
                thread.join(timeout=300)
        idle = [timed_run(at) for _ in range(runs)]
        job_id = start_batch_in_the_studio(at, variations)
        at.switch_page(LIBRARY)
        timed_run(at)
        busy, started = [], time.perf_counter()
        while batch.live_run(job_id) is not None:
            seconds = timed_run(at)
            if batch.live_run(job_id) is not None:  # the whole run overlapped the batch
                busy.append(seconds)
        batch_s = time.perf_counter() - started
        after = [timed_run(at) for _ in range(runs)]
        job = batch.JobStore(data_dir).load(job_id)
    if job.counts()[batch.DONE] != requests:
        raise RuntimeError(f"the batch started on the Batch tab finished {job.counts()}")
    for name, samples in (("idle", idle), ("while the batch runs", busy), ("after it finished", after)):
        table.add(name, len(samples), ms(percentile(samples, 50)), ms(percentile(samples, 95)),
                  ms(max(samples)) if samples else "n/a")
    table.note(f"the batch ran {batch_s:.1f} s in the app's background thread (ideal "
               f"{math.ceil(requests / 4) * delay:.0f} s); the page was rerun back to back meanwhile, as fast "
               "as AppTest goes, so the batch threads and the page competed for the same interpreter.")
    return table.finish()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--delays", default="0,1", help="the model's seconds per image, comma-separated")
    parser.add_argument("--concurrency", default="1,4,8", help="requests at a time, comma-separated")
    parser.add_argument("--page-runs", type=int, default=30, help="Library page runs, idle and after the batch")
    parser.add_argument("--page-delay", type=float, default=1.0, help="the model's s/image during the page runs")
    parser.add_argument("--page-variations", type=int, default=4, help="variations per product during the page runs")
    parser.add_argument("--skip-page", action="store_true")
    args = parser.parse_args(argv)
    quiet_logs()
    root = TMP_DIR / f"batch-bench-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=True)
    try:
        data_dir = make_library(root, args.products)
        show(time_batches(data_dir, args.products, [float(d) for d in args.delays.split(",")],
                          [int(c) for c in args.concurrency.split(",")]))
        if not args.skip_page:
            show(time_library_page(data_dir, args.products, args.page_runs, args.page_delay, args.page_variations))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
