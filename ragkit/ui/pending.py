"""The session's generation in flight: started on the Studio page, visible from every page.

The Studio starts a `ragkit.jobs.thread.Job` and keeps it here (one per session); the page waits on it
while it is shown, and the sidebar of the other pages says that it is still running or ready.
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ragkit.studio import Generation
from ragkit.jobs.thread import Job
from ragkit.ui.markdown import md_escape

K_PENDING = "studio.pending"


@dataclass
class PendingGeneration:
    """A Generate click whose images are on their way."""
    job: Job[Generation]
    model_label: str
    variations: int
    references: int

    @property
    def noun(self) -> str:
        return f"{self.variations} image{'s' if self.variations != 1 else ''}"


def get() -> PendingGeneration | None:
    return st.session_state.get(K_PENDING)


def put(pending: PendingGeneration) -> None:
    st.session_state[K_PENDING] = pending


def take() -> PendingGeneration | None:
    """Remove and return the pending generation (once its outcome is collected, or abandoned)."""
    return st.session_state.pop(K_PENDING, None)


def running() -> bool:
    pending = get()
    return pending is not None and not pending.job.done


def sidebar_note() -> None:
    """On pages other than the Studio: the generation still running, or its images ready."""
    pending = get()
    if pending is None:
        return
    if pending.job.done:
        st.success(f"Your {pending.noun} from the Studio {'are' if pending.variations != 1 else 'is'} ready.",
                   icon=":material/auto_awesome:")
    else:
        done, total = pending.job.progress
        st.info(f"Generating {pending.noun} with {md_escape(pending.model_label)}: "
                f"{done} of {total or pending.variations} finished, {pending.job.elapsed:.0f} s so far. "
                "Browse on; the Studio keeps the results.",
                icon=":material/hourglass_top:")
