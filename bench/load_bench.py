"""Several people at once, in Chromium, against one `streamlit run app.py` (issue 20).

    .venv/bin/python bench/run.py --only load                          # 1, 4, 8 people; this checkout
    .venv/bin/python bench/run.py --only load --busy                   # + a busy process on one core
    .venv/bin/python bench/run.py --only load --load-app /work/main    # the same, another checkout's app
    .venv/bin/python bench/run.py --only encode                        # query encode alone / contended

N people each have a browser context that has opened the app once (Streamlit's scripts cached,
as for anyone who used it before). Each round, each of them opens a search link `/search?q=…&k=12`
in a new tab (a new Streamlit session that runs the whole app) at the same moment; a search is done when its 12 result thumbnails are
loaded and visible. Meanwhile one more session scrolls the Library page. Reported per N:
p50/p95 of link-open → 12 results, searches per second (searches / wall time of the rounds),
the app's CPU per search (user+system of the app process and its children over the rounds,
divided by the searches; Chromium is not a child of the app, so it is excluded) and the app's
memory per open session ((RSS with the sessions open − RSS before) / sessions).

The library is a synthetic one (bench/synth.py) with real thumbnails; the model is ViT-B-32 with
fixed random weights (the real compute). Other work on the machine skews all of it: each table
carries the load average, and `--busy` adds a known load of its own.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from bench.common import REPO, Table, bench_env, ms, percentile
from bench.synth import TEXT_QUERIES, synthetic_library

RESULT_IMAGES = '[class*="st-key-ragkit-grid-search"] [data-testid="stImage"] img'
K = 12
NAVIGATION_TIMEOUT = 300.0  # seconds; Playwright's default 30 s was exceeded at load average 30
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --- the app process, seen through /proc ----------------------------------------------------------
def _tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def cpu_seconds(pid: int) -> float:
    """user + system CPU of the process tree (live processes; children that ended count via cutime)."""
    total = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    total = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * PAGE_SIZE
    return total / 2**20


@contextlib.contextmanager
def busy_core(enabled: bool):
    """A process spinning on one core (the `other work` of a shared machine), or nothing."""
    if not enabled:
        yield None
        return
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                               preexec_fn=lambda: os.sched_setaffinity(0, {max(os.sched_getaffinity(0))}))
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def app_server(data_dir: Path, port: int, app_repo: Path, log_path: Path):
    from tests.conftest import wait_for_port
    from tests.e2e_support import clean_env, stop_process_group, streamlit_command
    env = clean_env(bench_env(data_dir))
    env["PYTHONPATH"] = str(app_repo)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(streamlit_command(port), cwd=app_repo, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(port, timeout=180, process=process)
            yield f"http://127.0.0.1:{port}", process
        finally:
            stop_process_group(process)


# --- the browser side -------------------------------------------------------------------------
async def _open_search(context, url: str, query: str, timeout: float) -> float:
    """A new tab of this person's browser opens a search link (a new Streamlit session);
    seconds until its 12 result thumbnails are loaded."""
    page = await context.new_page()
    try:
        start = time.perf_counter()
        await page.goto(f"{url}/search?q={quote(query)}&k={K}")
        await page.wait_for_function(
            """([sel, k]) => { const imgs = [...document.querySelectorAll(sel)];
                   return imgs.length >= k && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
            arg=[RESULT_IMAGES, K], timeout=timeout * 1000, polling=50)
        return time.perf_counter() - start
    finally:
        await page.close()


async def _person(browser, url: str):
    """A person's browser that has opened the app before (its static files are in the browser's cache,
    as for anyone who used the app once; a first visit also downloads ~2 MB of Streamlit's scripts)."""
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(NAVIGATION_TIMEOUT * 1000)  # a loaded shared machine is slow
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT * 1000)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector('[data-testid="stApp"]')
    await page.close()
    return context


async def _scroll_library(context, url: str, stop: asyncio.Event) -> int:
    page = await context.new_page()
    scrolls = 0
    try:
        await page.goto(url)
        while not stop.is_set():
            await page.mouse.wheel(0, 900 if scrolls % 6 < 3 else -900)
            scrolls += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.4)
    finally:
        await page.close()
    return scrolls


async def _round(people: list, url: str, first_query: int, timeout: float, pid: int,
                 scroller_context) -> tuple[list[float], float, float]:
    """Everyone opens a search link at once (+ a Library scroller): (latencies, wall s, RSS MiB meanwhile)."""
    stop = asyncio.Event()
    scroller = asyncio.create_task(_scroll_library(scroller_context, url, stop)) if scroller_context else None
    memory = [0.0]

    async def sample_memory():
        while not stop.is_set():
            memory[0] = max(memory[0], rss_mib(pid))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    sampler = asyncio.create_task(sample_memory())
    start = time.perf_counter()
    latencies = await asyncio.gather(*[_open_search(context, url, TEXT_QUERIES[(first_query + i) % len(TEXT_QUERIES)],
                                                    timeout) for i, context in enumerate(people)])
    wall = time.perf_counter() - start
    stop.set()
    await sampler
    if scroller:
        await scroller
    return list(latencies), wall, memory[0]


async def _measure(url: str, pid: int, people_counts: list[int], rounds: int, timeout: float, log) -> list[dict]:
    from playwright.async_api import async_playwright

    from tests.e2e_support import CHROMIUM_ARGS, chromium_executable
    rows = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS)
        try:
            log("  load: warm-up search (model load, first thumbnails) ...")
            everyone = [await _person(browser, url) for _ in range(max(people_counts) + 1)]
            await _open_search(everyone[0], url, "warm up", timeout=300)
            query = 0
            for people in people_counts:
                await asyncio.sleep(3)  # let the previous round's sessions settle
                base_memory = rss_mib(pid)
                latencies, walls, memories = [], [], []
                cpu_before = cpu_seconds(pid)
                for attempt in range(rounds):
                    log(f"  load: {people} at once, round {attempt + 1}/{rounds} ...")
                    lat, wall, memory = await _round(everyone[1:people + 1], url, query, timeout, pid, everyone[0])
                    query += people
                    latencies += lat
                    walls.append(wall)
                    memories.append(memory)
                cpu = cpu_seconds(pid) - cpu_before
                searches = len(latencies)
                rows.append({"people": people, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                             "per_second": searches / sum(walls), "cpu_per_search": cpu / searches,
                             "memory_per_session": (max(memories) - base_memory) / (people + 1),
                             "rss": max(memories)})
        finally:
            await browser.close()
    return rows


def run(people_counts: list[int], rounds: int, assets: int, busy: bool, app_repo: Path | None = None,
        timeout: float = 180.0, log=print) -> list[Table]:
    from tests.milvus_servers import free_port
    app_repo = Path(app_repo or REPO).resolve()
    lib = synthetic_library(assets, thumbnails=assets, log=log)
    log_path = lib.root / "load-app.log"
    label = "this checkout" if app_repo == REPO else str(app_repo)
    table = Table(f"Search links, N people at once + 1 scrolling the Library ({assets} assets, ViT-B-32 random "
                  f"weights, app: {label}{', a busy process on one core' if busy else ''}; {rounds} rounds)",
                  ["people", "p50 s", "p95 s", "searches/s", "vs 1 person", "app CPU s/search",
                   "MiB/session", "app RSS MiB"])
    with busy_core(busy), app_server(lib.data_dir, free_port(), app_repo, log_path) as (url, process):
        rows = asyncio.run(_measure(url, process.pid, people_counts, rounds, timeout, log))
    single = next((r["per_second"] for r in rows if r["people"] == 1), None)
    for r in rows:
        table.add(r["people"], f"{r['p50']:.2f}", f"{r['p95']:.2f}", f"{r['per_second']:.2f}",
                  f"{r['per_second'] / single:.2f}x" if single else "", f"{r['cpu_per_search']:.3f}",
                  f"{r['memory_per_session']:.1f}", f"{r['rss']:.0f}")
    table.note("latency: link opened in a new session → 12 result thumbnails loaded; searches/s: searches / "
               "summed wall time of the rounds; app CPU: user+system of the app process tree over the rounds "
               "(the scroller's reruns included) / searches; MiB/session: (RSS with the round's sessions "
               "open − RSS before) / (N + 1 scroller), the largest round.")
    return [table.finish()]


# --- query encode latency, alone and with a busy core --------------------------------------------
ENCODE_SCRIPT = """
import json, statistics, sys, time
from ragkit.ingest.embedder import ClipEmbedder
e = ClipEmbedder("ViT-B-32", "none", "cpu")
text = "a red silk cape with gold trim"
for _ in range(3):
    e.embed_texts([text])
samples = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter(); e.embed_texts([text]); samples.append(time.perf_counter() - start)
samples.sort()
import torch
print(json.dumps({"p50": statistics.median(samples), "p95": samples[int(0.95 * (len(samples) - 1))],
                  "threads": torch.get_num_threads()}))
"""


def encode_table(calls: int, app_repos: list[Path], log=print) -> Table:
    """One trimmed ViT-B-32 text query in a fresh process of each checkout: alone, then with a
    process spinning on one core; back to back, so the machine's other load is alike."""
    table = Table(f"Query text encode in ms (ViT-B-32 text tower, trimmed, {calls} calls, fresh process each)",
                  ["code", "torch threads", "alone p50", "alone p95", "busy core p50", "busy core p95"])
    for repo in app_repos:
        row: list = [("this checkout" if Path(repo).resolve() == REPO else str(repo))]
        for busy in (False, True):
            log(f"  encode: {row[0]}, {'a busy core' if busy else 'alone'} ...")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "RAGKIT_"))}
            env["PYTHONPATH"] = str(repo)
            with busy_core(busy):
                done = subprocess.run([sys.executable, "-c", ENCODE_SCRIPT, str(calls)], cwd=repo, env=env,
                                      capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            import json
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if not busy:
                row.append(result["threads"])
            row += [ms(result["p50"]), ms(result["p95"])]
        table.add(*row)
    table.note("'busy core': another process spins on one of the cores during the calls (as other work on a "
               "shared machine does).")
    return table.finish()


# --- the collection Streamlit runs after every script run ------------------------------------------
GC_SCRIPT = """
import gc, json, resource, statistics, time
import pymilvus, streamlit  # noqa: F401 - what the app's process holds besides the model
from ragkit.ingest.embedder import ClipEmbedder
e = ClipEmbedder("ViT-B-32", "none", "cpu")
e.embed_texts(["warm up"])
def collect_ms():
    samples = []
    for _ in range(5):
        start = time.perf_counter(); gc.collect(2); samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)
objects, before = len(gc.get_objects()), collect_ms()
from ragkit.ui.state import freeze_long_lived_objects
freeze_long_lived_objects()
after = collect_ms()
print(json.dumps({"objects": objects, "before": before, "after": after, "frozen": gc.get_freeze_count(),
                  "objects_after": len(gc.get_objects()),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def gc_table(log=print) -> Table:
    """gc.collect(2) (what Streamlit runs after every script run) in a process holding ViT-B-32, Streamlit
    and pymilvus: before and after ragkit.ui.state.freeze_long_lived_objects."""
    import json
    log("  gc: a full collection before and after the freeze ...")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "RAGKIT_"))}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", GC_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    table = Table("Streamlit's post-run gc.collect(2) in the app's process (ViT-B-32 loaded; median of 5)",
                  ["", "objects the collector walks", "gc.collect(2) ms"])
    table.add("as shipped before", f"{result['objects']:,}", f"{result['before']:.1f}")
    table.add("after freeze_long_lived_objects()", f"{result['objects_after']:,} (frozen "
              f"{result['frozen']:,})", f"{result['after']:.2f}")
    table.note(f"peak RSS of the probe {result['rss']:.0f} MiB; the freeze moves objects, it allocates nothing.")
    return table.finish()
