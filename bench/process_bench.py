"""Cold start and peak memory of the app process, each run in a fresh process (bench/app_probe.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.common import BENCH_DIR, REPO, Table, median
from bench.synth import synthetic_library


def probe(data_dir, streamlit: bool = True) -> dict:
    command = [sys.executable, str(BENCH_DIR / "app_probe.py"), str(data_dir)]
    if not streamlit:
        command.append("--no-streamlit")
    from ragkit.storage.store import DEFAULT_INDEX
    env = {**os.environ, "RAGKIT_BENCH_INDEX": json.dumps(DEFAULT_INDEX)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"app probe failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def run(cold_size: int, memory_size: int, repeat: int, want_cold: bool, want_memory: bool,
        log=print) -> list[Table]:
    sizes = sorted({s for s, wanted in ((cold_size, want_cold), (memory_size, want_memory)) if wanted})
    cold = Table(f"Cold start of a fresh app process at {cold_size} assets (seconds; median of {repeat})",
                 ["step", "seconds"])
    memory = Table(f"Memory of the app process at {memory_size} assets (MiB; median of {repeat})",
                   ["after step", "RSS MiB"])
    runs: dict[int, list[dict]] = {}
    for n in sizes:
        lib = synthetic_library(n, log=log)
        runs[n] = []
        for attempt in range(repeat):
            log(f"  app probe at {n} assets, run {attempt + 1}/{repeat} ...")
            runs[n].append(probe(lib.data_dir))
    tables = []
    if want_cold:
        results = runs[cold_size]
        table = cold
        names = [s["step"] for s in results[0]["steps"]]
        per_step = {name: median([next(s["seconds"] for s in r["steps"] if s["step"] == name) for r in results])
                    for name in names}
        for name in names:
            table.add(name, f"{per_step[name]:.2f}")
        opened = median([sum(s["seconds"] for s in r["steps"]
                             if s["step"] in ("DB open (connect + load collection)", "first vector search"))
                         for r in results])
        table.add("= DB open + first search (target <= 10 s)", f"{opened:.2f}")
        table.add("= process start to first text-search result", f"{median([sum(s['seconds'] for s in r['steps'][:-2]) for r in results]):.2f}")
        table.note("the OS page cache is warm (the library files were read before); a first start after a "
                   "reboot also pays the disk reads.")
        tables.append(table.finish())
    if want_memory:
        results = runs[memory_size]
        table = memory
        for name in [s["step"] for s in results[0]["steps"]]:
            table.add(name, f"{median([next(s['rss_mib'] for s in r['steps'] if s['step'] == name) for r in results]):.0f}")
        table.add("= peak (VmHWM)", f"{median([r['vm_hwm_mib'] for r in results]):.0f}")
        table.add("= peak (ru_maxrss)", f"{median([r['ru_maxrss_mib'] for r in results]):.0f}")
        table.note("the process imports Streamlit and ragkit, opens the library (Milvus Lite runs inside the "
                   "process), loads the model, lists one page and runs text searches, as the app does.")
        tables.append(table.finish())
    return tables
