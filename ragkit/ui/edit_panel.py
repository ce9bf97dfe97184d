"""The Edit panel: a conversation with the model about one image (ragkit.studio.edit), on the Studio page.

Opened by "Edit" on a Studio result (saved or not) or on any asset's details in the Library. It
shows the conversation, a strip of the versions, a before/after compare of the version shown
against the one it was edited from, and "Save this version". One instruction is one request;
the page waits for it (a spinner), since an edit is one image, not a batch.
"""
from __future__ import annotations

import streamlit as st

from ragkit.config import Settings
from ragkit.library import Library
from ragkit.studio.edit import EditSession, save_version, send_edit, start_from_asset, start_from_image
from ragkit.studio.cost import format_usd
from ragkit.studio.generation import GeneratedImage
from ragkit.studio.models import default_model, model_info
from ragkit.tags import parse_tag_list
from ragkit.ui import state
from ragkit.ui.errors import error_message, show_message
from ragkit.ui.markdown import md_escape

K_EDIT = "studio.edit"            # the EditSession in progress
K_SHOWN = "studio.edit-shown"     # the version shown (index)
K_ERROR = "studio.edit-error"     # the last failed turn's message
K_MODEL = "studio.model"          # the Studio's model picker (app_pages/studio.py)


def session() -> EditSession | None:
    return st.session_state.get(K_EDIT)


def _open(edit: EditSession) -> None:
    st.session_state[K_EDIT] = edit
    st.session_state[K_SHOWN] = 0
    st.session_state.pop(K_ERROR, None)


def open_result(image: GeneratedImage, model: str, prompt: str, saved_sha: str | None) -> None:
    """Edit a Studio result (a button's on_click)."""
    _open(start_from_image(image, model, saved_sha=saved_sha, prompt=prompt))


def open_asset(library: Library, settings: Settings, sha256: str, *, from_studio: bool = False) -> None:
    """Edit a library asset with the Studio's model, then show it on the Studio page."""
    model = st.session_state.get(K_MODEL) or default_model(settings.gemini_model)
    _open(start_from_asset(library, sha256, model))
    if from_studio:
        st.rerun()  # the panel is drawn above, at the top of the Generate tab
    st.switch_page(state.STUDIO_PAGE, query_params={"tab": "generate"})  # the panel is on the Generate tab


def close() -> None:
    for key in (K_EDIT, K_SHOWN, K_ERROR):
        st.session_state.pop(key, None)


def _show(index: int) -> None:
    st.session_state[K_SHOWN] = index


def _send(library: Library, settings: Settings, edit: EditSession, text: str) -> None:
    st.session_state.pop(K_ERROR, None)
    try:
        with st.spinner(f"{model_info(edit.model).label} is editing…"):
            send_edit(library, state.generator(settings), edit, text)
        st.session_state[K_SHOWN] = len(edit.versions) - 1
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message; the versions stay
        st.session_state[K_ERROR] = error_message(exc, "editing the image")


def _save(library: Library, edit: EditSession, index: int, tags: list[str]) -> None:
    try:
        asset = save_version(library, edit, index, tags=tags)
        state.mark_changed(library)
        st.toast(f"Saved {md_escape(asset.filename)} to the library, with what it was edited from",
                 icon=":material/check:")
    except Exception as exc:  # noqa: BLE001
        st.session_state[K_ERROR] = error_message(exc, "saving the version")


def render(library: Library, settings: Settings) -> None:
    edit = session()
    if edit is None:
        return
    shown = min(st.session_state.get(K_SHOWN, 0), len(edit.versions) - 1)
    info = model_info(edit.model)
    with st.container(border=True, key="studio-edit"):
        with st.container(horizontal=True, vertical_alignment="center", key="studio-edit-header"):
            st.subheader(f"Edit · {md_escape(edit.origin_label)}")
            st.space("stretch")
            st.button("Close", key="studio.edit-close", on_click=close, type="tertiary", icon=":material/close:",
                      help="Versions you did not save are let go.")
        st.caption(f"A conversation with {md_escape(info.label)} about this picture: each instruction edits the "
                   "latest version. Save the versions you want; they keep what they were edited from.")
        versions_strip(edit, shown)
        compare(edit, shown)
        conversation(edit)
        message = st.session_state.get(K_ERROR)
        if message:
            show_message(message)
        with st.form("studio-edit-form", clear_on_submit=True, border=False):
            with st.container(horizontal=True, vertical_alignment="bottom"):
                text = st.text_input("What should change?", key="studio.edit-instruction", max_chars=2000,
                                     placeholder="make the background blue", width=520)
                sent = st.form_submit_button("Send", type="primary", icon=":material/send:",
                                             disabled=not settings.gemini_api_key,
                                             help=None if settings.gemini_api_key else "Add a Gemini API key first.")
        if sent:
            _send(library, settings, edit, text)
            st.rerun()  # draw the strip, the compare and the conversation with the new version
        save_row(library, edit, shown)


def versions_strip(edit: EditSession, shown: int) -> None:
    with st.container(horizontal=True, gap="small", key="studio-edit-versions"):
        for index, version in enumerate(edit.versions):
            with st.container(width=96, gap="xsmall"):
                st.image(version.image.data, width=88, alt=f"Version {index}")
                label = "Original" if index == 0 else f"v{index}"
                st.button(label, key=f"studio.edit-version.{index}", on_click=_show, args=(index,),
                          type="primary" if index == shown else "secondary", width="stretch",
                          icon=":material/check_circle:" if version.saved_sha else None)


def compare(edit: EditSession, shown: int) -> None:
    version = edit.versions[shown]
    before = edit.parent_of(shown)
    left, right = st.columns(2, gap="small")
    with left:
        st.caption("Before" + (" (the original)" if shown <= 1 else f" (v{shown - 1})"))
        st.image(before.image.data, width="stretch", alt="Before")
    with right:
        st.caption("After" + ("" if shown else " (nothing edited yet)") + (f" (v{shown})" if shown else ""))
        st.image(version.image.data, width="stretch", alt="After")


def conversation(edit: EditSession) -> None:
    for index, version in enumerate(edit.versions[1:], start=1):
        with st.chat_message("user"):
            st.markdown(md_escape(version.instruction))
        with st.chat_message("assistant", avatar=":material/auto_awesome:"):
            cost = f" · {format_usd(version.cost_usd)}" if version.cost_usd is not None else ""
            st.caption(f"v{index} · {version.seconds:.1f} s{cost}")
            if version.text:
                st.markdown(md_escape(version.text))


def save_row(library: Library, edit: EditSession, shown: int) -> None:
    version = edit.versions[shown]
    with st.container(horizontal=True, vertical_alignment="bottom", key="studio-edit-save"):
        if shown == 0:
            st.caption("Send an instruction to make the first version.")
            return
        if version.saved_sha:
            if st.button("In the library", key=f"studio.edit-open.{shown}", icon=":material/check_circle:",
                         help="Saved with the version it was edited from. Open it in the Library."):
                st.session_state[state.OPEN_ASSET] = version.saved_sha
                st.switch_page(state.LIBRARY_PAGE)
        else:
            tags_text = st.text_input("Tags (optional)", key="studio.edit-tags", placeholder="summer, campaign",
                                      width=260)
            st.button("Save this version", key=f"studio.edit-save.{shown}", type="primary",
                      icon=":material/library_add:", on_click=_save,
                      args=(library, edit, shown, list(parse_tag_list(tags_text))))
        st.download_button("Download", data=version.image.data, file_name=f"edit-v{shown}.png",
                           mime=version.image.mime, on_click="ignore", key=f"studio.edit-download.{shown}",
                           icon=":material/download:")
