"""Acting on many assets at once on a big embedded library: what a person waits for.

On a copy of the synthetic library (bench/synth.py), through ragkit's Library, the calls the
Library page and the CLI make: opening (which empties the expired trash), the Trash view's
count and first page, and the bulk changes of a selection of SELECTED assets (tags, usage
rights, moving to the trash, restoring) and emptying part of the trash.

    python -m bench.trash_bench --size 100000
"""
from __future__ import annotations

import argparse
import shutil
import time

from bench.common import TMP_DIR, Table, bench_settings, quiet_logs
from bench.synth import synthetic_library

SELECTED = 10_000  # ragkit.ui.selection.MAX_SELECTION: the most the app selects at once
EMPTIED = 1_000


def timed(table: Table, label: str, call):
    start = time.perf_counter()
    result = call()
    table.add(label, f"{time.perf_counter() - start:.2f}")
    return result


def run(n: int) -> Table:
    from ragkit.library import Library
    from ragkit.rights import rights_change

    source = synthetic_library(n)
    copy = TMP_DIR / f"trash-{n}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source.root, copy)
    table = Table(f"Bulk changes and the trash, {n:,} assets, embedded Milvus Lite", ["step", "seconds"])
    try:
        library = timed(table, "Library.open (expires old trash)", lambda: Library.open(bench_settings(copy / "data")))
        try:
            chosen = timed(table, "select all (newest first ids)", lambda: library.store.matching_ids())[:SELECTED]
            timed(table, "trash_count (empty trash)", library.trash_count)
            timed(table, f"tags on {SELECTED:,}", lambda: library.update_tags_many(chosen, add=["campaign 7"]))
            timed(table, f"usage rights on {SELECTED:,}",
                  lambda: library.set_rights(chosen, rights_change(until="2030-01-01", note="bench")))
            timed(table, f"move {SELECTED:,} to the trash", lambda: library.trash(chosen))
            timed(table, "count (library)", library.count)
            timed(table, "trash_count", library.trash_count)
            timed(table, "Trash view: first page of 24", lambda: library.trashed_page(0, 24))
            timed(table, "expire_trash (nothing expired)", library.expire_trash)
            timed(table, f"restore {SELECTED - EMPTIED:,}", lambda: library.restore(chosen[EMPTIED:]))
            timed(table, f"empty the trash ({EMPTIED:,})", library.empty_trash)
            timed(table, "count (library)", library.count)
        finally:
            library.close()
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return table.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args()
    quiet_logs()
    table = run(args.size)
    print(table.header())
    print(table.text())


if __name__ == "__main__":
    main()
