"""Batch jobs seen from the app: started or resumed on the Studio's Batch tab, run in the background.

A batch runs in a `ragkit.jobs.thread.Job` (its own thread, the job's requests on a pool under it), so it
goes on while the person works on other pages, and a page switch or a closed tab never stops it.
What it has done is on disk (ragkit.studio.batch), so the Batch tab reads progress from there: the
same view for a job this session runs, one another session or process runs, and one a restart
interrupted (then "Resume"). The session remembers which jobs it started, for the sidebar note.
"""
from __future__ import annotations

import streamlit as st

from ragkit.jobs.thread import Job
from ragkit.library import Library
from ragkit.studio import batch
from ragkit.studio.cost import format_usd
from ragkit.ui import state
from ragkit.ui.markdown import md_escape

K_STARTED = "batch.started"      # job id -> Job, the runs this session started (or resumed)
NOTE_REFRESH_S = 1.0


def store(library: Library) -> batch.JobStore:
    return batch.job_store(library.settings)


def start(library: Library, job_id: str, concurrency: int, *, retry_failed: bool = False) -> None:
    """Run (or resume) a job in the background; its outcome (a BatchError, say) waits in the session."""
    jobs = store(library)

    def work(progress) -> batch.BatchJob:
        try:
            return batch.run_batch(jobs, job_id, library, concurrency=concurrency, retry_failed=retry_failed,
                                   on_progress=progress)
        finally:
            state.mark_changed(library)

    st.session_state.setdefault(K_STARTED, {})[job_id] = Job.start(work, name=f"ragkit-batch-{job_id}")


def started(job_id: str) -> Job | None:
    return st.session_state.get(K_STARTED, {}).get(job_id)


def forget(job_id: str) -> None:
    st.session_state.get(K_STARTED, {}).pop(job_id, None)


def stop(job_id: str) -> None:
    """Send no more requests for this job (those in flight finish and are kept)."""
    run = batch.live_run(job_id)
    if run is not None:
        run.stop()


def progress_line(job: batch.BatchJob, run: batch.BatchRun | None) -> str:
    """'5 of 8 images · 1 failed · about 12 s left · $0.195 so far' (Markdown-safe: numbers only)."""
    counts = job.counts()
    parts = [f"{counts[batch.DONE]} of {len(job.takes)} image{'s' if len(job.takes) != 1 else ''}"]
    if counts[batch.FAILED]:
        parts.append(f"{counts[batch.FAILED]} failed")
    eta = run.eta_s() if run else None
    if eta is not None and counts[batch.PENDING]:
        parts.append(f"about {eta:.0f} s left")
    parts.append(f"{format_usd(job.cost_usd)} so far" if counts[batch.PENDING] else f"cost {format_usd(job.cost_usd)}")
    return " · ".join(parts)


def running() -> bool:
    """Does a batch this session started still run?"""
    return any(not job.done for job in st.session_state.get(K_STARTED, {}).values())


def sidebar_note(library: Library) -> None:
    """On pages other than the Studio: this session's batches still running, counting on."""
    if running():
        st.fragment(_running_note, run_every=NOTE_REFRESH_S)(library)


def _running_note(library: Library) -> None:
    running = [job_id for job_id, job in st.session_state.get(K_STARTED, {}).items() if not job.done]
    if not running:
        st.rerun()  # the whole app: the note goes away
    for job_id in running:
        try:
            job = store(library).load(job_id)
        except batch.BatchError:
            continue
        st.info(f"Batch {job_id}: {progress_line(job, batch.live_run(job_id))}. "
                f"“{md_escape(job.spec.brief[:40])}” goes on while you browse.", icon=":material/dynamic_feed:")
    st.page_link(state.STUDIO_PAGE, label="Watch it in the Studio", icon=":material/arrow_forward:",
                 query_params={"tab": "batch"})
