"""Two real processes editing the same rows of one library at the same instant (issue 19, A.1-A.3).

Used by tests/test_row_races.py (one repeat per engine) and bench/races_bench.py (repeats, before and
after). A worker is a separate Python process running this file: it opens the library, says it is
ready, waits for a shared "go" file, then makes its change through the same Library calls the CLI
makes (`trash restore`, `trash empty`, `delete`, `tag --add`), so both changes really overlap.

    python tests/row_races.py OP IDS_FILE READY_FILE GO_FILE   (settings from RAGKIT_* variables)

Run as a script (not `-m`), so PYTHONPATH alone chooses which ragkit it runs: the bench points it
at an old checkout to count the lost writes of the code before the row lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RACED_TAG = "raced"
PAIRS = {"restore-vs-empty": ("restore", "empty"), "delete-vs-tag": ("trash", "tag")}


# --- the worker (a separate process) --------------------------------------------------------------
def _work(op: str, ids: list[str], library) -> dict:
    if op == "restore":
        result = library.restore(ids)
    elif op == "empty":
        result = library.empty_trash(ids)
    elif op == "trash":
        result = library.trash(ids)
    elif op == "tag":
        result = library.update_tags_many(ids, add=[RACED_TAG])
    else:
        raise SystemExit(f"unknown op {op}")
    return {"done": [a.sha256 for a in result.done], "skipped": sorted(result.skipped), "missing": result.missing}


def worker_main(argv: list[str]) -> None:
    import logging
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    from ragkit.config import Settings
    from ragkit.library import Library
    op, ids_file, ready, go = argv
    ids = json.loads(Path(ids_file).read_text())
    library = Library.open(Settings.load(secrets_files=[]))
    try:
        library.get_many(ids[:1])  # connected and loaded: the race starts at the first edit
        Path(ready).touch()
        deadline = time.monotonic() + 120
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise SystemExit("no go signal")
            time.sleep(0.001)
        started = time.monotonic()
        outcome = _work(op, ids, library)
        outcome["seconds"] = time.monotonic() - started
        print(json.dumps(outcome))
    finally:
        library.close()


# --- the harness (the test's or the bench's process) --------------------------------------------
def seed(library, n: int, trashed: bool, salt: str = "") -> list[str]:
    """`n` assets with their files (tiny stand-in bytes: no step here decodes them), in the trash or not."""
    import numpy as np
    from ragkit.records import Asset
    rng = np.random.default_rng(n)
    assets, stamp = [], int(time.time() * 1000)
    for i in range(n):
        data = f"row-race {salt} {i}".encode()
        sha = hashlib.sha256(data).hexdigest()
        library.blobs.put(sha, data, data)
        assets.append(Asset(sha, f"r{i}.jpg", "image/jpeg", 8, 8, len(data), tags=("seeded",),
                            created_at=stamp - i, trashed_at=stamp if trashed else 0))
    vectors = rng.normal(size=(n, library.dim)).astype(np.float32)
    library.store.upsert(assets, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return [a.sha256 for a in assets]


def race(pair: str, env: dict[str, str], ids: list[str], work: Path, code: Path = REPO) -> dict[str, dict]:
    """Run the pair's two ops in two processes that start on one signal; what each reported."""
    work.mkdir(parents=True, exist_ok=True)
    ids_file = work / "ids.json"
    ids_file.write_text(json.dumps(ids))
    go = work / "go"
    go.unlink(missing_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_"))}
    full_env.update(env, PYTHONPATH=str(code))
    procs = {}
    for op in PAIRS[pair]:
        ready = work / f"ready-{op}"
        ready.unlink(missing_ok=True)
        procs[op] = (subprocess.Popen([sys.executable, str(Path(__file__).resolve()), op, str(ids_file), str(ready),
                                       str(go)], env=full_env, cwd=work, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE), ready)
    deadline = time.monotonic() + 180
    while not all(ready.exists() for _, ready in procs.values()):
        for op, (proc, _) in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{op} worker exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError("workers not ready")
        time.sleep(0.02)
    go.touch()
    reports = {}
    for op, (proc, _) in procs.items():
        out, err = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"{op} worker exited {proc.returncode}: {err.decode()[-2000:]}")
        reports[op] = json.loads(out.decode().strip().splitlines()[-1])
    return reports


def final_rows(library, ids: list[str]):
    """The rows as every process left them (a Strong read on a server; written the way old ragkit
    can run it too, so the same check counts the old code's losses)."""
    from ragkit.storage.schema import row_asset
    store = library.store
    extra = {} if store.embedded else {"consistency_level": "Strong"}
    rows = store._client.get(store.collection, ids=ids, output_fields=store.fields, **extra)  # noqa: SLF001
    return [row_asset(row) for row in rows]


def lost_writes(pair: str, library, ids: list[str], reports: dict[str, dict]) -> list[str]:
    """Ids whose final state contradicts what the two ops reported (a write one of them lost).

    restore-vs-empty: an id is either restored (a live row with its original) or emptied (no row,
    no file), as its reports say. delete-vs-tag: every id ends in the trash (the delete always
    applies), and one the tag edit reported done carries the tag."""
    rows = {a.sha256: a for a in final_rows(library, ids)}
    lost = []
    if pair == "restore-vs-empty":
        restored, emptied = set(reports["restore"]["done"]), set(reports["empty"]["done"])
        for sha in ids:
            row, has_file = rows.get(sha), library.blobs.original_path(sha).is_file()
            ok_restored = sha in restored and sha not in emptied and row is not None and not row.trashed and has_file
            ok_emptied = sha in emptied and sha not in restored and row is None and not has_file
            if not (ok_restored or ok_emptied):
                lost.append(sha)
    else:
        tagged = set(reports["tag"]["done"])
        for sha in ids:
            row = rows.get(sha)
            if row is None or not row.trashed or (sha in tagged and RACED_TAG not in row.tags):
                lost.append(sha)
    return lost


if __name__ == "__main__":
    worker_main(sys.argv[1:])
