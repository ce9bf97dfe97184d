"""The session's upload in flight: started on the Library page, finished even if the user leaves it.

Run inside the Library page's script, an ingest stopped at the page's next Streamlit call when the
user went to another page, and part of the upload was lost without a word. So Add starts a
`ragkit.jobs.thread.Job` (as the Studio does for a generation, see ui/pending.py) that holds the
uploaded bytes and ingests them in its own thread; the session keeps the job. The Library page
shows its progress while it is displayed and its report once it is done; the sidebar of the
other pages says how far it got.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import streamlit as st

from ragkit.ingest.pipeline import IngestProgress, Upload
from ragkit.jobs.thread import Job
from ragkit.library import Library
from ragkit.records import IngestReport
from ragkit.ui import state
from ragkit.ui.grid import short_name
from ragkit.ui.markdown import md_escape

K_UPLOAD = "library.upload-job"
NOTE_REFRESH_S = 1.0  # how often the sidebar note on other pages counts on


@dataclass
class PendingUpload:
    """An Add click whose images are being checked, thumbnailed, embedded and stored."""
    files: int
    job: Job[IngestReport] = field(init=False)
    latest: IngestProgress | None = None  # the ingest's last progress report (set by the job's thread)
    folder: str = ""                      # an imported folder on the server (files: counted as it goes)

    @property
    def noun(self) -> str:
        files = self.latest.total if self.folder and self.latest else self.files
        if self.folder and not self.latest:
            return f"the images of {self.folder}"
        return f"{files} image{'s' if files != 1 else ''}"

    @property
    def done_count(self) -> int:
        return self.latest.done if self.latest else 0

    @property
    def stored_count(self) -> int:
        return self.latest.added if self.latest else 0


def start(library: Library, uploads: list[Upload], tags: Iterable[str],
          then: Callable[[IngestReport], None] | None = None) -> PendingUpload:
    """Ingest `uploads` in a background job (keep it with `put`). The job takes the list over: it
    empties it once the ingest is over, so the session does not keep the bytes. `then` gets the
    report of a finished ingest (e.g. to describe the new images)."""
    pending = PendingUpload(len(uploads))
    tags = list(tags)

    def work(progress) -> IngestReport:
        def on_progress(update: IngestProgress) -> None:
            pending.latest = update
            progress(update.done, update.total)

        try:
            report = library.ingest_uploads(uploads, tags=tags, on_progress=on_progress)
            if then is not None:
                then(report)
            return report
        finally:
            uploads.clear()
            state.mark_changed(library)  # even a failed run may have stored some

    pending.job = Job.start(work, name="ragkit-upload")
    return pending


def start_folder(library: Library, folder: Path, tags: Iterable[str]) -> PendingUpload:
    """Import the images of a folder on the server's disk in a background job: the CLI's `ingest FOLDER`
    (Library.ingest_paths: the same checks and limits), with the same progress and report as an upload.
    Run it again after a stop: the images already stored are recognised and skipped."""
    pending = PendingUpload(0, folder=str(folder))
    tags = list(tags)

    def work(progress) -> IngestReport:
        def on_progress(update: IngestProgress) -> None:
            pending.latest = update
            pending.files = update.total
            progress(update.done, update.total)

        try:
            return library.ingest_paths([folder], tags=tags, on_progress=on_progress)
        finally:
            state.mark_changed(library)

    pending.job = Job.start(work, name="ragkit-import-folder")
    return pending


def get() -> PendingUpload | None:
    return st.session_state.get(K_UPLOAD)


def put(pending: PendingUpload) -> None:
    st.session_state[K_UPLOAD] = pending


def take() -> PendingUpload | None:
    """Remove and return the upload (once its outcome is collected)."""
    return st.session_state.pop(K_UPLOAD, None)


def running() -> bool:
    pending = get()
    return pending is not None and not pending.job.done


def progress_text(pending: PendingUpload) -> str:
    """'32 of 60 · 30 added · 1 already there · 1 rejected · blue-mug.jpg' (Markdown)."""
    p = pending.latest
    if p is None:
        return f"Adding {md_escape(pending.noun)}…"
    return (f"{p.done} of {p.total} · {p.added} added · {p.duplicates} already there · {p.rejected} rejected · "
            f"{md_escape(short_name(p.current, 40))}")


def outcome_text(report: IngestReport) -> str:
    """'58 added, 2 rejected' (and how many were already in the library, if any)."""
    parts = [f"{len(report.added)} added"]
    if report.duplicates:
        parts.append(f"{len(report.duplicates)} already in the library")
    parts.append(f"{len(report.rejected)} rejected")
    return ", ".join(parts)


def sidebar_note() -> None:
    """On pages other than the Library: the upload still running (counting on), or its outcome."""
    pending = get()
    if pending is None:
        return
    if pending.job.done:
        _finished_note(pending)
    else:
        st.fragment(_running_note, run_every=NOTE_REFRESH_S)()


def _running_note() -> None:
    pending = get()
    if pending is None:
        return
    if pending.job.done:
        st.rerun()  # the whole app: the outcome replaces this self-refreshing note
    st.info(f"Adding {md_escape(pending.noun)}: {pending.done_count} done… You can browse on; the upload goes on.",
            icon=":material/upload:")
    st.page_link(state.LIBRARY_PAGE, label="Watch it in the Library", icon=":material/arrow_forward:")


def _finished_note(pending: PendingUpload) -> None:
    try:
        report = pending.job.outcome()
    except Exception:  # noqa: BLE001 - the Library shows the error itself, with the details
        st.warning(f"Adding {md_escape(pending.noun)} stopped after {pending.done_count} with an error.",
                   icon=":material/report:")
    else:
        st.success(f"Upload finished: {outcome_text(report)}", icon=":material/check_circle:")
    st.page_link(state.LIBRARY_PAGE, label="See the report in the Library", icon=":material/arrow_forward:")
