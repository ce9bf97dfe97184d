"""What every page shows: the random-weights banner, library facts in the sidebar, the tray."""
from __future__ import annotations

import os

import streamlit as st

from ragkit.library import Library
from ragkit.records import SOURCE_GENERATED
from ragkit.ui import batches, pending, settings, state, tray, uploads
from ragkit.ui.errors import guard
from ragkit.ui.markdown import md_escape

RANDOM_WEIGHTS_MESSAGE = (
    "**Demo model with random weights.** Search results and similarity scores mean nothing. "
    "Point `RAGKIT_CLIP_PRETRAINED` at real CLIP weights (README › Offline weights) for real search."
)


def model_label(library: Library) -> str:
    pretrained = library.settings.clip_pretrained
    if os.sep in pretrained:
        pretrained = os.path.basename(pretrained)
    return f"{library.settings.clip_model} · {pretrained}"


def short_location(uri: str) -> str:
    """A DB location that fits the sidebar: a server URI as is, a file as …/folder/name."""
    if "://" in uri:
        return uri
    parts = uri.replace("\\", "/").rstrip("/").split("/")
    return uri if len(parts) <= 3 else "…/" + "/".join(parts[-2:])


def render_banner(library: Library) -> None:
    """Top of every page: a loud warning when the model is not a real one."""
    if state.random_weights(library):
        st.warning(RANDOM_WEIGHTS_MESSAGE, icon=":material/warning:")


def render(library: Library, *, on_studio_page: bool = False, on_library_page: bool = False) -> None:
    state.show_flash()
    with st.sidebar:
        with guard("reading the library size"):
            total = library.count()
            generated = library.count(source=SOURCE_GENERATED) if total else 0
            st.metric("Images in the library", f"{total:,}", border=False,
                      help=f"{generated:,} of them generated in the Studio" if generated else None)
            advice = library.scale_advice(total)
            if advice:
                st.info(advice, icon=":material/dns:")
        if state.random_weights(library):
            st.error("Random weights: results are meaningless", icon=":material/warning:")
        st.caption(f":material/memory: **Model** {md_escape(model_label(library))}")
        where = "server" if not library.settings.is_embedded_db else "embedded"
        uri = library.settings.milvus_uri_display
        st.caption(f":material/database: **Database** ({where}) `{short_location(uri)}`", help=md_escape(uri))
        with guard("showing the settings"):
            settings.render(library)
        # Always this slot, emptied explicitly when there is nothing to say: the Studio page keeps
        # its run going while it waits for the model, and until a run ends Streamlit goes on showing
        # what the previous page drew at any position the new run has not drawn over.
        slot = st.empty()
        if not on_studio_page and pending.get() is not None:
            with slot.container():
                pending.sidebar_note()
                st.page_link(state.STUDIO_PAGE, label="Go to the Studio", icon=":material/arrow_forward:")
        else:
            slot.empty()
        upload_slot = st.empty()  # the same for an upload, which the Library page shows itself
        if not on_library_page and uploads.get() is not None:
            with upload_slot.container():
                uploads.sidebar_note()
        else:
            upload_slot.empty()
        batch_slot = st.empty()  # the same for this session's batch jobs
        if not on_studio_page and batches.running():
            with batch_slot.container():
                batches.sidebar_note(library)
        else:
            batch_slot.empty()
        st.divider()
        with guard("showing the reference tray"):
            tray.render_sidebar(library, open_studio_button=not on_studio_page)
