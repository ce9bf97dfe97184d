"""A fresh process that does what the app process does, timing each step and reading its memory.

Run by bench/process_bench.py as `python bench/app_probe.py DATA_DIR`; prints one JSON object.
Steps, in the order the app meets them: import Streamlit and ragkit, open the library (connect
+ load the collection), a first vector search, load the CLIP model, a text search, and one
Library page (count, tag list, page of 24, their thumbnails).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _status(key: str) -> float:
    """VmRSS / VmHWM of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    data_dir = Path(sys.argv[1])
    with_streamlit = "--no-streamlit" not in sys.argv
    steps: list[dict] = []

    def step(name: str, fn):
        start = time.perf_counter()
        result = fn()
        steps.append({"step": name, "seconds": time.perf_counter() - start, "rss_mib": _status("VmRSS")})
        return result

    steps.append({"step": "interpreter start", "seconds": time.perf_counter() - START, "rss_mib": _status("VmRSS")})
    if with_streamlit:
        step("import streamlit", lambda: __import__("streamlit"))
    step("import ragkit", lambda: __import__("ragkit.library"))
    from bench.common import bench_env, quiet_logs
    quiet_logs()
    if os.environ.get("RAGKIT_BENCH_INDEX"):  # the index the parent benchmark run is measuring
        import ragkit.storage.store
        ragkit.storage.store.DEFAULT_INDEX = json.loads(os.environ["RAGKIT_BENCH_INDEX"])
    from ragkit.config import Settings
    from ragkit.library import Library
    settings = Settings.load(env=bench_env(data_dir), cwd=data_dir.parent, secrets_files=[])
    library = step("DB open (connect + load collection)", lambda: Library.open(settings))
    import numpy as np
    vector = np.random.default_rng(5).standard_normal(library.dim).astype(np.float32)
    vector /= np.linalg.norm(vector)
    step("first vector search", lambda: library.search_vector(vector, 10))
    step("second vector search", lambda: library.search_vector(vector, 10))
    step("import torch + open_clip", lambda: (__import__("torch"), __import__("open_clip")))
    step("model load (ViT-B-32, random weights)", lambda: library.embedder)
    step("first text search", lambda: library.search_text("a golden watch on dark velvet", 10))

    def page():
        library.count()
        library.all_tags()
        listing = library.page(0, 24)
        for asset in listing.assets:
            try:
                library.thumbnail_bytes(asset.sha256)
            except Exception:  # noqa: BLE001 - synthetic libraries have thumbnails for recent pages only
                pass
        return listing

    step("library page (count, tags, page of 24, thumbnails)", page)
    step("text search again", lambda: library.search_text("a red silk cape with gold trim", 10))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "steps": steps,
        "vm_hwm_mib": _status("VmHWM"),
        "vm_rss_mib": _status("VmRSS"),
        "ru_maxrss_mib": usage.ru_maxrss / 1024,
        "threads": len(os.listdir("/proc/self/task")),
    }))
    sys.stdout.flush()
    library.close()


if __name__ == "__main__":
    main()
