"""The sidebar's Settings: the library's embedding model, and re-indexing it with another one.

A reindex embeds every image again (minutes to hours), so it runs as a `ragkit.jobs.thread.Job` of this
process, one per library whichever session started it, while every page keeps searching with the
current model. Its progress is also in the library's record (ragkit.lifecycle.active_model), so a reindex run
from the command line against a shared server shows here as well. Once it has switched the library,
the next page view opens the library on the new model (state.library_key names the recorded model).
"""
from __future__ import annotations

import threading

import streamlit as st

from ragkit.config import Settings, setting_source
from ragkit.lifecycle import active_model as model_record
from ragkit.jobs.thread import Job
from ragkit.library import Library
from ragkit.lifecycle.reindex import ReindexReport, drop_old_collections, reindex
from ragkit.studio.discovery import Catalogue, configured_models, discover, known_catalogue
from ragkit.studio.models import model_info, text_model_info
from ragkit.ui import state
from ragkit.ui.errors import show_error
from ragkit.ui.markdown import md_code, md_escape

REFRESH_S = 1.0
K_OLD_INDEXES = "settings.old-indexes"  # (library state, the other models' collections) last asked
MODELS_DOC = "docs/models.md"
K_KEY_CHECK = "settings.key-check"  # (key fingerprint, Catalogue) of the last Check, this session
KEY_NAMES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

_jobs: dict[str, Job[ReindexReport]] = {}  # library (data folder | database) -> this process's reindex
_jobs_lock = threading.Lock()


def _where(library: Library) -> str:
    return f"{library.settings.data_dir}|{library.settings.milvus_uri}"


def job(library: Library) -> Job[ReindexReport] | None:
    with _jobs_lock:
        return _jobs.get(_where(library))


def start(library: Library, model: str, pretrained: str) -> Job[ReindexReport]:
    """Start a reindex of `library` unless this process runs one already (then that one is returned)."""
    with _jobs_lock:
        running = _jobs.get(_where(library))
        if running is not None and not running.done:
            return running
        started = Job.start(lambda progress: reindex(library, model, pretrained, on_progress=progress),
                            name="ragkit-reindex")
        _jobs[_where(library)] = started
        return started


def render(library: Library) -> None:
    """Under the model line: a configured model the library does not use, a reindex in progress in
    any process; then the Settings expander."""
    current = job(library)
    recorded = model_record.read_record(library.settings.data_dir).reindex
    if library.active_model.differs:
        used = library.active_model.choice
        st.caption(f":material/info: RAGKIT_CLIP_MODEL / RAGKIT_CLIP_PRETRAINED name "
                   f"{md_code(library.active_model.configured.model_id)}, but this library's images are indexed "
                   f"with {md_code(library.model_id)} (recorded in model.json in its data folder). To search "
                   f"them with the new model, re-index in Settings below; to keep the current one, set "
                   f"{md_code('RAGKIT_CLIP_MODEL=' + used.model)} and "
                   f"{md_code('RAGKIT_CLIP_PRETRAINED=' + used.pretrained)} and restart.")
    if recorded is not None and (current is None or current.done):
        state = "stopped" if recorded.stalled else "running"
        st.caption(f":material/sync: Re-index with {md_code(recorded.target.model_id)} {state}: "
                   f"{recorded.done:,} of {recorded.total:,}.")
    with st.expander("Settings", icon=":material/settings:", expanded=current is not None and not current.done):
        st.markdown("**Embedding model**")
        st.caption(f"This library searches with {md_code(library.model_id)} "
                   f"({library.dim}-d vectors).")
        if current is not None and not current.done:
            st.fragment(_progress, run_every=REFRESH_S)(library)
        else:
            if current is not None:
                _outcome(library, current)
            _recorded_reindex(library)
            _form(library)
            _old_indexes(library)
        _gemini(library.settings)
        _trash(library.settings)


def _progress(library: Library) -> None:
    current = job(library)
    if current is None or current.done:
        st.rerun()  # the whole app: the outcome (and, after a switch, the new model) replaces this
    done, total = current.progress
    target = model_record.read_record(library.settings.data_dir).reindex
    name = md_escape(target.target.model_id) if target else "the new model"
    st.progress(done / total if total else 0.0, text=f"Re-indexing with {name}: {done:,} of {total:,}")
    st.caption("Search keeps using the current model until the new index is complete and checked; "
               "you can go on working.")


def _outcome(library: Library, finished: Job[ReindexReport]) -> None:
    try:
        report = finished.outcome()
    except Exception as exc:  # noqa: BLE001 - shown with its fix; running it again resumes
        show_error(exc, "re-indexing the library")
        st.caption("What was embedded is kept: re-index again to resume.")
        return
    if report.switched:
        st.success(f"The library now uses {md_code(report.model)} ({report.assets:,} images, "
                   f"{report.images_per_second:.1f} images/s). The index of {md_code(report.previous)} is kept "
                   "until `python -m ragkit reindex --drop-old`.", icon=":material/check_circle:")
    if st.button("Dismiss", key="settings.dismiss", type="tertiary", icon=":material/close:"):
        with _jobs_lock:
            _jobs.pop(_where(library), None)
        st.rerun()


def _recorded_reindex(library: Library) -> None:
    """A reindex recorded but not running here: in another process, or stopped (then: resume)."""
    state = model_record.read_record(library.settings.data_dir).reindex
    if state is None:
        return
    target = md_code(state.target.model_id)
    if not state.stalled:
        st.info(f"Another process is re-indexing with {target}: {state.done:,} of {state.total:,}.",
                icon=":material/sync:")
        return
    st.warning(f"A re-index with {target} stopped at {state.done:,} of {state.total:,}.", icon=":material/pause:")
    if st.button("Resume", key="settings.resume", icon=":material/play_arrow:"):
        start(library, state.target.model, state.target.pretrained)
        st.rerun()


def _form(library: Library) -> None:
    # enter_to_submit=False: Enter in a field must not start hours of re-indexing; only the button does.
    with st.form("settings.reindex", border=False, enter_to_submit=False):
        model = st.text_input("Architecture", value=library.settings.clip_model, key="settings.model",
                              help="An open_clip architecture, e.g. ViT-B-16 (see docs/models.md).")
        pretrained = st.text_input("Weights", value="", key="settings.weights",
                                   placeholder="pretrained tag, or /path/to/checkpoint",
                                   help="An open_clip pretrained tag such as datacomp_xl_s13b_b90k, or the path of a "
                                        "checkpoint file on the server (no network: README › Offline weights).")
        submitted = st.form_submit_button("Re-index with this model", key="settings.reindex-button",
                                          icon=":material/autorenew:")
    st.caption(f"Every image is embedded again; search keeps working meanwhile. Which model: {MODELS_DOC}.")
    if submitted:
        if not model.strip() or not pretrained.strip():
            st.error("Give the architecture and its weights.", icon=":material/error:")
            return
        start(library, model, pretrained)
        st.rerun()


def _old_indexes(library: Library) -> None:
    """Indexes of models the library used before: kept until removed here (or `reindex --drop-old`)."""
    in_progress = model_record.read_record(library.settings.data_dir).reindex
    filling = in_progress.target.model_id if in_progress else ""
    # Asked once per state of the library, not on every rerun of every page (the sidebar draws this):
    # on a server each other collection costs a describe and a Strong count.
    key = (library.collection, filling, state.revision(library))
    cached = st.session_state.get(K_OLD_INDEXES)
    if cached is None or cached[0] != key:
        cached = (key, [c for c in library.other_collections()
                        if c.model_id not in (library.model_id, "?", filling)])
        st.session_state[K_OLD_INDEXES] = cached
    old = cached[1]
    if not old:
        return
    with st.popover("Remove old indexes", icon=":material/delete:"):
        for other in old:
            st.caption(f"{md_code(other.model_id)}: {other.count:,} images")
        st.caption("Switching back to one of these models would then embed every image again.")
        if st.button("Remove them", key="settings.drop-old", type="primary"):
            drop_old_collections(library)
            st.session_state.pop(K_OLD_INDEXES, None)
            st.rerun()


def _gemini(settings: Settings) -> None:
    """The Gemini key's status (set, and where: never the key), a Check, and the model defaults."""
    st.markdown("**Gemini (Studio, captions)**")
    source = setting_source(KEY_NAMES) if settings.gemini_api_key else ""
    checked = None
    if not settings.gemini_api_key:
        st.caption(":material/key_off: No Gemini API key is set: the Studio and captions are off. Set "
                   "`GEMINI_API_KEY` in the environment or in `.streamlit/secrets.toml` and restart "
                   "(README › Studio).")
    else:
        st.caption(f":material/key: A Gemini API key is set, from {md_escape(source or 'the settings')}.")
        fingerprint = discovery_fingerprint(settings)
        checked = st.session_state.get(K_KEY_CHECK)
        if checked is not None and checked[0] != fingerprint:
            checked = None  # another key since
        if st.button("Check the key", key="settings.check-key", icon=":material/network_check:",
                     help="Asks Gemini which models this key can use (the answer is kept for an hour)."):
            checked = (fingerprint, discover(settings, refresh=checked is not None))
            st.session_state[K_KEY_CHECK] = checked
        if checked is not None:
            _key_verdict(checked[1])
    # Not asked on every page view (the sidebar draws this): the known table until a Check asked Gemini.
    found = checked[1] if checked is not None else known_catalogue("")
    for configured in configured_models(settings, found):
        info = (model_info if configured.kind == "image" else text_model_info)(configured.model)
        what = "Image model" if configured.kind == "image" else "Caption model"
        label = info.label if info.known else f"{configured.model} (not in ragkit's table)"
        line = f"{what}: {md_escape(label)} · {md_code(configured.setting + '=' + configured.model)}"
        if configured.gone:  # a caption, not a second red box: the page using the model shows the one error line
            st.caption(f"{line} · :red[{md_escape(configured.message)}]")
        else:
            st.caption(f"{line} · " + (":green[offered]" if found.live else "not shut down, as far as ragkit knows"))
    if not found.live and settings.gemini_api_key:
        st.caption("Check the key to ask Gemini whether it still offers them.")


def discovery_fingerprint(settings: Settings) -> str:
    """Which key and endpoint a Check was for (a hash: the key itself is never kept in the session)."""
    import hashlib
    return hashlib.sha256(f"{settings.gemini_api_key}\0{settings.gemini_base_url}".encode()).hexdigest()[:16]


def _key_verdict(found: Catalogue) -> None:
    if found.live:
        st.success(f"The key works: it can use {len(found.image)} image and {len(found.text)} text models.",
                   icon=":material/check_circle:")
    else:
        st.warning(f"The key could not be checked. {md_escape(found.note)}", icon=":material/error:")


def _trash(settings: Settings) -> None:
    st.markdown("**Trash**")
    days = settings.trash_days
    st.caption(f":material/delete: Deleted images stay in the trash for {days:,} day{'s' if days != 1 else ''} "
               "(`RAGKIT_TRASH_DAYS`, restorable from Library › Trash); after that they are deleted for good "
               "when the app or a command next opens the library.")
