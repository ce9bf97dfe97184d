"""One image viewer (lightbox) for the Library and Search: the picture at full resolution with zoom,
previous / next (buttons, and the ← → keys), and beside it the page's details and actions.

A page opens it inside its own dialog with `show(library, sha256, scope=..., details=...)`; the order
that previous / next walk is the page's grid, remembered with `remember_order(scope, ids)` as the grid
is drawn. Moving calls `on_move(sha256)`, which the page uses to open the other image.
"""
from __future__ import annotations

import base64
from typing import Callable

import streamlit as st

from ragkit.library import Library
from ragkit.records import Asset
from ragkit.ui.grid import preview_bytes

FULL_SIDE_MAX = 4096  # the longest side sent to the browser (a 100 MP original would be 30+ MB)
ZOOMS = {"Fit": None, "Actual size": 1.0, "2×": 2.0}
K_ZOOM = "viewer.zoom"


def _order_key(scope: str) -> str:
    return f"viewer.order.{scope}"


def remember_order(scope: str, ids) -> None:
    """The images previous / next walk through, in the grid's order."""
    st.session_state[_order_key(scope)] = list(ids)


def neighbours(order: list[str], sha256: str) -> tuple[str | None, str | None, int]:
    """(previous, next, position) of `sha256` in `order`; position -1 when it is not there."""
    if sha256 not in order:
        return None, None, -1
    i = order.index(sha256)
    return (order[i - 1] if i > 0 else None), (order[i + 1] if i + 1 < len(order) else None), i


def full_resolution(library: Library, asset: Asset) -> bytes | None:
    """The picture at its own size (up to FULL_SIDE_MAX), as a JPEG the browser can show (TIFF, HEIC…)."""
    side = min(max(asset.width, asset.height, 1), FULL_SIDE_MAX)
    return preview_bytes(library, asset.sha256, side=side)


def _picture(data: bytes, asset: Asset, zoom: float | None) -> None:
    """The picture in a pannable frame: fitted, at its own pixels, or twice that."""
    style = "width:100%;height:auto" if zoom is None else \
        f"width:{int(min(asset.width, FULL_SIDE_MAX) * zoom)}px;max-width:none;height:auto"
    encoded = base64.b64encode(data).decode("ascii")
    st.html(f'<div class="ragkit-viewer-frame" style="overflow:auto;max-height:72vh;border-radius:6px;'
            f'background:var(--st-secondary-background-color,#F1EEE8)">'
            f'<img src="data:image/jpeg;base64,{encoded}" alt="" style="{style};display:block;margin:auto"></div>')


def show(library: Library, sha256: str, *, scope: str, on_move: Callable[[str], None],
         details: Callable[[Asset], None]) -> None:
    """The viewer for `sha256`: picture, zoom and previous / next on the left; `details(asset)` on the right."""
    asset = library.get(sha256)
    order = st.session_state.get(_order_key(scope)) or [sha256]
    previous, following, position = neighbours(order, sha256)
    picture, info = st.columns([3, 2], gap="medium")
    with picture:
        with st.container(horizontal=True, vertical_alignment="center", gap="small", key="ragkit-viewer-nav"):
            # A dialog reruns alone (it is a fragment) with the image it was opened on: moving
            # reruns the whole page, which opens the dialog again on the other image.
            if st.button("Previous", key="viewer.previous", icon=":material/chevron_left:", shortcut="Left",
                         disabled=previous is None):
                on_move(previous)
                st.rerun()
            if st.button("Next", key="viewer.next", icon=":material/chevron_right:", shortcut="Right",
                         disabled=following is None):
                on_move(following)
                st.rerun()
            if position >= 0:
                st.caption(f"{position + 1} of {len(order)}")
            st.space("stretch")
            zoom = st.segmented_control("Zoom", list(ZOOMS), default="Fit", key=K_ZOOM, label_visibility="collapsed")
        data = full_resolution(library, asset)
        if data is None:
            st.caption(":material/broken_image: The original is missing: run `python -m ragkit doctor --repair`.")
        else:
            _picture(data, asset, ZOOMS.get(zoom or "Fit"))
    with info:
        details(asset)
