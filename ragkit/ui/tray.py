"""The reference tray: the images picked as references, kept in session state across pages.

The Search page fills it, the sidebar shows it on every page, the Studio page sends it to
the image model. The API is deliberately small::

    from ragkit.ui import tray
    tray.ids()                 # picked asset ids, in the order picked
    tray.add(sha) / tray.remove(sha) / tray.clear() / tray.contains(sha)
    tray.pick_toggle(sha, key_prefix="search", blocked=reason)  # a toggle on a result, synced with the
                                                 # tray; with a `blocked` reason it asks first
    tray.room(settings)                          # (model label, its reference limit, free slots)
    tray.render_sidebar(library)                 # thumbnails, count, Clear, Open Studio
    tray.render_grid(library, key="studio")      # a larger grid with Remove buttons
"""
from __future__ import annotations

import streamlit as st

from ragkit.config import Settings
from ragkit.library import Library
from ragkit.rights import now_ms
from ragkit.studio.models import default_model, model_info
from ragkit.ui import state
from ragkit.ui.grid import inject_css, rights_badges, short_name, thumbnail_bytes
from ragkit.ui.markdown import md_escape

TRAY_KEY = "ragkit.tray"
ASK_KEY = "ragkit.tray.ask"  # {sha256: why it should not be a reference}, waiting for "Add anyway"


def ids() -> list[str]:
    return list(st.session_state.get(TRAY_KEY, []))


def _set(values: list[str]) -> None:
    st.session_state[TRAY_KEY] = list(dict.fromkeys(values))


def contains(sha256: str) -> bool:
    return sha256 in st.session_state.get(TRAY_KEY, [])


def add(sha256: str) -> None:
    _set([*ids(), sha256])


def remove(sha256: str) -> None:
    _set([s for s in ids() if s != sha256])


def clear() -> None:
    _set([])


def count() -> int:
    return len(st.session_state.get(TRAY_KEY, []))


def set_picked(sha256: str, picked: bool) -> None:
    add(sha256) if picked else remove(sha256)


def _asking() -> dict[str, str]:
    return st.session_state.setdefault(ASK_KEY, {})


def _sync_from_widget(sha256: str, widget_key: str, blocked: str | None) -> None:
    picked = bool(st.session_state.get(widget_key))
    if picked and blocked:  # e.g. its usage rights ended: ask first (below the toggle)
        _asking()[sha256] = blocked
        return
    set_picked(sha256, picked)


def _answer(sha256: str, add_it: bool) -> None:
    _asking().pop(sha256, None)
    if add_it:
        add(sha256)


def pick_toggle(sha256: str, *, key_prefix: str, label: str = "Reference", blocked: str | None = None) -> bool:
    """A toggle that shows and changes whether this asset is in the tray. With `blocked` (why the
    asset should not be a reference: ragkit.rights.blocked_as_reference), switching it on asks first."""
    widget_key = f"{key_prefix}.pick.{sha256}"
    # The tray is the truth (it can be cleared from the sidebar): the widget follows it.
    st.session_state[widget_key] = contains(sha256)
    picked = st.toggle(label, key=widget_key, on_change=_sync_from_widget, args=(sha256, widget_key, blocked))
    why = _asking().get(sha256)
    if why and not picked:
        st.warning(f"Use it as a reference anyway? {md_escape(why[:1].upper() + why[1:])}.", icon=":material/gpp_maybe:")
        with st.container(horizontal=True, gap="small"):
            st.button("Add anyway", key=f"{key_prefix}.pick-anyway.{sha256}", on_click=_answer, args=(sha256, True),
                      type="primary")
            st.button("Cancel", key=f"{key_prefix}.pick-cancel.{sha256}", on_click=_answer, args=(sha256, False))
    return picked


STUDIO_MODEL_KEY = "studio.model"  # the Studio page's model picker (app_pages/studio.py K_MODEL)


def room(settings: Settings) -> tuple[str, int, int]:
    """(the Studio's model, how many references it takes, how many more fit in the tray now)."""
    info = model_info(st.session_state.get(STUDIO_MODEL_KEY) or default_model(settings.gemini_model))
    return info.label, info.max_references, max(0, info.max_references - count())


def add_many(sha256s: list[str], settings: Settings) -> tuple[list[str], list[str]]:
    """Add these to the tray while the Studio's model takes more: (added, left out for the limit)."""
    new = [sha for sha in dict.fromkeys(sha256s) if not contains(sha)]
    _, _, free = room(settings)
    _set([*ids(), *new[:free]])
    return new[:free], new[free:]


def assets(library: Library):
    """The tray's assets; ids of assets deleted (or moved to the trash) meanwhile are dropped from the tray."""
    picked = ids()
    if not picked:
        return []
    found = [asset for asset in library.get_many(picked) if not asset.trashed]
    if len(found) != len(picked):
        _set([a.sha256 for a in found])
    return found


def render_sidebar(library: Library, *, open_studio_button: bool = True) -> None:
    """The tray in the sidebar: count, thumbnails, Clear and (off the Studio page) Open Studio."""
    with st.sidebar:
        picked = assets(library)
        st.markdown(f"**References** · {len(picked)}")
        if not picked:
            st.caption("Pick search results as references for the Studio.")
            return
        inject_css()
        cells = st.grid(4, min_column_width=40, gap="xsmall", key="ragkit-tray-sidebar")
        for asset in picked:
            data = thumbnail_bytes(library, asset.sha256)
            with cells.cell():
                if data:
                    st.image(data, width="stretch", alt=asset.filename)
                else:
                    st.caption(md_escape(short_name(asset.filename, 10)))
        if open_studio_button and st.button("Open Studio", key="tray.open-studio", type="primary", icon=":material/auto_awesome:",
                     width="stretch"):
            st.switch_page(state.STUDIO_PAGE)
        st.button("Clear references", key="tray.clear", on_click=clear, icon=":material/clear_all:",
                  width="stretch")


def render_grid(library: Library, *, key: str) -> None:
    """The tray as a larger grid with a Remove button on each reference (Studio page)."""
    picked = assets(library)
    if not picked:
        return
    inject_css()
    now = now_ms()
    cells = st.grid("auto", min_column_width=150, border=True, gap="small", key=f"ragkit-grid-tray-{key}")
    for asset in picked:
        with cells.cell():
            data = thumbnail_bytes(library, asset.sha256)
            if data:
                st.image(data, width="stretch", alt=asset.filename)
            st.caption(md_escape(short_name(asset.filename)))
            rights_badges(asset, now)  # added anyway, or expired since: the person sees it before sending
            st.button("Remove", key=f"{key}.tray-remove.{asset.sha256}", on_click=remove, args=(asset.sha256,),
                      icon=":material/close:", type="tertiary")
