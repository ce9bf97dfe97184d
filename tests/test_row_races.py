"""Edits that read rows and write them back never undo each other (issue 19, A.1-A.3).

Two real processes on one Milvus server start their change on one signal (tests/row_races.py):
restore against empty, delete against a tag edit. Before the row lock (ragkit.storage.row_lock)
they lost writes in every run (bench/races_bench.py counts them); now each asset ends as what the
two processes reported. And inside one process (a Streamlit server's sessions), threads alike.
"""
import threading

import pytest

from ragkit.config import Settings
from ragkit.lifecycle import doctor
from ragkit.library import Library
from tests.row_races import PAIRS, lost_writes, race, seed

ROWS = 150  # enough that the two changes overlap for a good part of a second on a busy machine


@pytest.mark.server
@pytest.mark.parametrize("pair", list(PAIRS))
def test_two_processes_changing_the_same_assets_lose_no_write(pair, server, server_env, tmp_path):
    library = Library.open(Settings.load(env=server_env, cwd=tmp_path, secrets_files=[]))
    try:
        ids = seed(library, ROWS, trashed=pair == "restore-vs-empty", salt=pair)
        reports = race(pair, server_env, ids, tmp_path / "race")
        lost = lost_writes(pair, library, ids, reports)
        first, second = PAIRS[pair]
        assert not lost, (f"{len(lost)} of {ROWS} assets lost a write on {server.engine}: {first} reported "
                          f"{len(reports[first]['done'])} done, {second} {len(reports[second]['done'])}")
        if pair == "restore-vs-empty":  # every asset went one way, and the two reports add up
            assert len(reports["restore"]["done"]) + len(reports["empty"]["done"]) == ROWS
            assert not doctor.check(library).rows_without_original  # what `doctor --repair` would delete
    finally:
        library.close()


def test_sessions_of_one_process_restoring_and_emptying_at_once_lose_nothing(library):
    """Two sessions of one app: one restores what the other empties from the trash, same instant."""
    ids = seed(library, 120, trashed=True, salt="threads")
    barrier, reports, errors = threading.Barrier(2), {}, []

    def act(op: str) -> None:
        try:
            barrier.wait(timeout=30)
            result = library.restore(ids) if op == "restore" else library.empty_trash(ids)
            reports[op] = {"done": [a.sha256 for a in result.done]}
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=act, args=(op,)) for op in ("restore", "empty")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not lost_writes("restore-vs-empty", library, ids, reports)
