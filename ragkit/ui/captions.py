"""Describe from the app: captions and suggested tags for one image (its details) or every image
without a caption (the Library), as a background job.

The job is a `ragkit.jobs.thread.Job` running `ragkit.studio.describe.describe` in its own thread, kept per
library for the whole process (not per session): an upload's "describe them" starts one from the
upload's own thread, where there is no session. One runs at a time per library; the Library page
shows its progress (polling, so the page can be left) and its outcome.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import streamlit as st

from ragkit.errors import BatchError, MissingApiKeyError
from ragkit.jobs.thread import Job
from ragkit.library import Library
from ragkit.records import Asset, IngestReport
from ragkit.studio import describe
from ragkit.studio.batch import BatchRun
from ragkit.studio.captions import Captioner
from ragkit.ui import models as models_ui
from ragkit.studio.cost import format_usd
from ragkit.ui import state
from ragkit.ui.errors import guard, show_error
from ragkit.ui.markdown import md_escape

log = logging.getLogger("ragkit.ui")
POLL_S = 1.0


@dataclass
class Describing:
    """A Describe started in this process: what it covers, its job and (once started) its live run."""
    what: str
    ids: tuple[str, ...] = ()           # the assets asked for ("" = every one without a caption)
    job: Job[describe.Outcome] = field(init=False)
    run: BatchRun | None = None

    def stop(self) -> None:
        if self.run is not None:
            self.run.stop()


_current: dict[str, Describing] = {}   # library key -> the latest Describe of that library
_current_lock = threading.Lock()


def current(library: Library) -> Describing | None:
    with _current_lock:
        return _current.get(state.library_key(library.settings))


def running(library: Library) -> bool:
    found = current(library)
    return found is not None and not found.job.done


def key_problem(library: Library) -> str:
    """'' when a Gemini key is set; otherwise the message that says how to set one."""
    if library.settings.gemini_api_key:
        return ""
    try:
        Captioner.from_settings(library.settings).close()
    except MissingApiKeyError as exc:
        return str(exc)
    return ""


def start(library: Library, ids: Sequence[str] = (), *, new: bool = False, model: str | None = None) -> Describing:
    """Describe these assets (none: every one without a caption) in the background. BatchError if a
    Describe of this library still runs, or there is nothing to describe; MissingApiKeyError without a key."""
    if problem := key_problem(library):
        raise MissingApiKeyError(problem)
    plan = describe.plan_describe(library, everything=not ids, ids=ids, new=new, model=model)
    if not plan.assets:
        raise BatchError("Every image already has a caption" + (f" ({len(plan.skipped)} failed before)."
                                                                if plan.skipped else "."))
    what = f"{plan.assets} image{'s' if plan.assets != 1 else ''}"
    holder = Describing(what, tuple(ids))

    def work(progress) -> describe.Outcome:
        try:
            return describe.describe(library, plan, on_progress=progress,
                                     on_run=lambda run: setattr(holder, "run", run))
        finally:
            state.mark_changed(library)

    with _current_lock:
        key = state.library_key(library.settings)
        if key in _current and not _current[key].job.done:
            raise BatchError("Images of this library are being described; wait for that to finish, or stop it.")
        holder.job = Job.start(work, name="ragkit-describe")
        _current[key] = holder
    return holder


def after_upload(library: Library) -> Callable[[IngestReport], None]:
    """For the upload job: describe the images it added (runs in the upload's thread, no session)."""
    def then(report: IngestReport) -> None:
        added = [asset.sha256 for _, asset in report.added]
        if not added:
            return
        try:
            start(library, added)
        except BatchError as exc:  # e.g. another Describe runs: "Describe all without a caption" catches up
            log.warning("the new images were not described: %s", exc)
    return then


# ----------------------------------------------------------------------------- widgets
def upload_checkbox(library: Library) -> bool:
    """On the upload form: describe the new images too?"""
    problem = key_problem(library)
    return st.checkbox("Describe them with Gemini (a caption and suggested tags)", key="library.upload-describe",
                       disabled=bool(problem), help=problem or "A one-sentence caption that searches find by its "
                       "words, and tags you can accept in each image's details. Costs a fraction of a cent per image.")


def library_panel(library: Library) -> None:
    """Describe every image without a caption; the progress of a running Describe, or how the last one went."""
    with st.container(border=True, key="library-describe"):
        found = current(library)
        if found is not None and not found.job.done:
            st.fragment(_progress, run_every=POLL_S)(library)
            return
        if found is not None:
            _outcome(library, found)
        problem = key_problem(library)
        gone = not problem and models_ui.caption_gone_notice(library.settings)
        if st.button("Describe all without a caption", key="library.describe-all", icon=":material/subtitles:",
                     disabled=bool(problem) or gone, help=problem or "Ask Gemini for a caption and suggested tags "
                     "for every image that has none yet; it goes on while you browse."):
            with guard("starting Describe"):
                start(library, model=models_ui.caption_model(library.settings))
                st.rerun()
        if problem:  # the whole how-to is the button's help
            st.caption("Describe needs a Gemini API key: set `GEMINI_API_KEY` (or add it to "
                       "`.streamlit/secrets.toml`) and restart ragkit")


def _progress(library: Library) -> None:
    found = current(library)
    if found is None or found.job.done:
        st.rerun()  # the whole page: the outcome, the new captions
    done, total = found.job.progress
    eta = found.run.eta_s() if found.run else None
    left = f" · about {eta:.0f} s left" if eta is not None and done < total else ""
    st.progress(done / max(total, 1), text=f"Describing {found.what}: {done} of {total or '?'}{left}")
    stopping = found.run is not None and found.run.stopping
    st.button("Stopping…" if stopping else "Stop", key="library.describe-stop", icon=":material/stop:",
              disabled=stopping, on_click=found.stop)


def _outcome(library: Library, found: Describing) -> None:
    try:
        outcome = found.job.outcome()
    except Exception as exc:  # noqa: BLE001 - shown with its fix
        show_error(exc, "describing images")
        return
    counts = outcome.counts()
    line = (f"Described {counts[describe.DONE]} of {found.what} · {counts[describe.FAILED]} failed · "
            f"cost {format_usd(outcome.cost_usd)}")
    (st.warning if counts[describe.FAILED] or outcome.error else st.success)(line, icon=":material/subtitles:")
    if outcome.error:
        st.caption(md_escape(outcome.error))
    failed = [item for item in outcome.items if item.status == describe.FAILED]
    if failed:
        with st.expander(f"Why {len(failed)} failed"):
            names = {a.sha256: a.filename for a in library.get_many([i.sha256 for i in failed])}
            for item in failed:
                st.markdown(md_escape(f"{names.get(item.sha256, item.sha256[:12])}: {item.reason}"))


def details_section(library: Library, asset: Asset) -> None:
    """In an image's details: its caption, Describe (again), and the suggested tags to accept."""
    st.markdown("**Caption**")
    if asset.caption:
        st.markdown(md_escape(asset.caption))
    else:
        st.caption("No caption yet.")
    if failure := describe.last_failure(asset):
        st.caption(md_escape(f"The last Describe failed: {failure}"))
    found = current(library)
    if found is not None and not found.job.done:
        if asset.sha256 in found.ids:
            _wait_for_one(found)
        else:
            st.caption(f"Describing {found.what}… (the Library shows the progress)")
    else:
        problem = key_problem(library)
        if st.button("Describe again" if asset.caption else "Describe", key="library.describe-one",
                     icon=":material/subtitles:", disabled=bool(problem), help=problem or None):
            with guard("describing the image"):
                start(library, [asset.sha256], new=True, model=models_ui.caption_model(library.settings))
                st.rerun()
    _suggested_tags(library, asset)


def _wait_for_one(found: Describing) -> None:
    """Describing one image takes a second or two: wait here, redrawing (so the page can be left)."""
    with st.spinner("Describing…"):
        slot = st.empty()
        while not found.job.wait(0.25):
            slot.caption(f"{found.job.elapsed:.0f} s")
    st.rerun()


def _suggested_tags(library: Library, asset: Asset) -> None:
    suggested = describe.suggested_tags(asset)
    if not suggested:
        return
    # A pill's label is Markdown: the model's words must not become an image, a formula or an icon.
    chosen = st.pills("Suggested tags", suggested, selection_mode="multi", key=f"library.suggested.{asset.sha256}",
                      format_func=md_escape,
                      help="Gemini's suggestions: pick the ones that fit and add them; none is applied on its own.")
    with st.container(horizontal=True, gap="small"):
        if st.button("Add selected tags", key="library.accept-tags", icon=":material/done_all:", disabled=not chosen):
            with guard("adding the tags"):
                describe.resolve_suggested_tags(library, asset.sha256, accept=chosen)
                state.mark_changed(library)
                st.session_state.pop(f"library.edit-tags.{asset.sha256}", None)  # the tag editor shows them
                st.rerun()
        if st.button("Dismiss suggestions", key="library.dismiss-tags", icon=":material/close:", type="tertiary"):
            with guard("dismissing the suggestions"):
                describe.resolve_suggested_tags(library, asset.sha256, dismiss=suggested)
                st.rerun()
