"""Lost writes between two processes on one Milvus server, and what the row lock costs (issue 19, A).

Two real processes (tests/row_races.py) start on one signal and edit the same ROWS assets:
`trash restore` against `trash empty`, and `delete` against `tag --add`. A repeat loses writes
when an asset's final state contradicts what the two reported. `--code DIR` runs the workers on
another checkout (e.g. the code before the row lock: `git archive 3f5ddf4 | tar -x -C /tmp/before`).
Then the cost of the lock per edit: one process tags one asset at a time, with the lock (today's
code) and with the lock's pieces replaced by no-ops (a Session read, no file lock).

    python -m bench.races_bench --engine lite --repeats 5 [--code /tmp/before]
    python -m bench.races_bench --engine milvus --repeats 5 --cost-edits 30
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import time
from pathlib import Path

from bench.common import TMP_DIR, Table, bench_env, quiet_logs
from tests.row_races import PAIRS, REPO, lost_writes, race, seed


@contextlib.contextmanager
def running_server(engine: str):
    from tests.milvus_servers import LiteServer, RealMilvus
    folder = TMP_DIR / f"races-{engine}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    server = LiteServer(folder / "data") if engine == "lite" else RealMilvus(folder / "engine")
    try:
        yield server.target
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def open_library(target, data_dir: Path):
    from ragkit.config import Settings
    from ragkit.library import Library
    target.drop_all_collections()
    shutil.rmtree(data_dir, ignore_errors=True)
    env = bench_env(data_dir, **target.env)
    return env, Library.open(Settings.load(env=env, cwd=data_dir.parent, secrets_files=[]))


def run_races(target, engine: str, rows: int, repeats: int, code: Path) -> Table:
    table = Table(f"Two processes, {rows} assets, on {engine} ({'this code' if code == REPO else code})",
                  ["race", "repeat", "lost writes", "A done", "B done", "A s", "B s"])
    for pair in PAIRS:
        for repeat in range(repeats):
            data_dir = TMP_DIR / f"races-lib-{engine}"
            env, library = open_library(target, data_dir)
            try:
                ids = seed(library, rows, trashed=pair == "restore-vs-empty", salt=f"{pair}{repeat}")
                reports = race(pair, env, ids, data_dir.parent / "races-work", code)
                lost = lost_writes(pair, library, ids, reports)
            finally:
                library.close()
            a, b = (reports[op] for op in PAIRS[pair])
            table.add(pair, repeat + 1, len(lost), len(a["done"]), len(b["done"]),
                      f"{a['seconds']:.2f}", f"{b['seconds']:.2f}")
    return table.finish()


NO_LOCK, LOCK_SESSION, LOCK = ("no lock, Session read (old code)", "file lock, Session read",
                               "file lock, Strong read (this code)")


def run_cost(target, engine: str, edits: int) -> Table:
    """Median seconds of one tag edit of one asset, with the row lock and without it."""
    from ragkit.storage import row_lock, store as store_module
    table = Table(f"Cost of one tag edit on {engine} ({edits} edits each)", ["variant", "median ms", "p90 ms"])
    env, library = open_library(target, TMP_DIR / f"races-cost-{engine}")
    try:
        ids = seed(library, edits, trashed=False, salt="cost")
        library.update_tags_many(ids, add=["warm-up"])  # connections and caches warm before any sample
        for variant in (NO_LOCK, LOCK_SESSION, LOCK) * 2:
            saved = (row_lock.RowLock.held, store_module.AssetStore._get_rows)
            if variant == NO_LOCK:
                row_lock.RowLock.held = lambda self: contextlib.nullcontext()
            if variant != LOCK:
                original = saved[1]
                store_module.AssetStore._get_rows = lambda self, s, with_vector=False, latest=False: original(
                    self, s, with_vector)
            try:
                samples = []
                for i, sha in enumerate(ids):
                    start = time.perf_counter()
                    library.update_tags_many([sha], add=[f"cost-{variant[:4]}-{i}"])
                    samples.append(time.perf_counter() - start)
            finally:
                row_lock.RowLock.held, store_module.AssetStore._get_rows = saved
            samples.sort()
            table.add(variant, f"{1000 * statistics.median(samples):.1f}",
                      f"{1000 * samples[int(0.9 * (len(samples) - 1))]:.1f}")
    finally:
        library.close()
    return table.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["lite", "milvus"], default="lite")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout the two workers run")
    parser.add_argument("--cost-edits", type=int, default=0, help="also time this many single tag edits")
    args = parser.parse_args()
    quiet_logs()
    with running_server(args.engine) as target:
        tables = [run_races(target, args.engine, args.rows, args.repeats, args.code.resolve())] if args.repeats else []
        if args.cost_edits:
            tables.append(run_cost(target, args.engine, args.cost_edits))
    for table in tables:
        print(table.header())
        print(table.text())


if __name__ == "__main__":
    main()
