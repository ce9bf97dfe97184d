"""A selection of assets that survives paging and filter changes: a checkbox on each tile and
"select all" buttons. Each page has its own (`scope`: "library", "search", "trash"), kept in session
state as asset ids, so it outlives the widgets of the page that is shown. What can be done to the
selected assets is in ragkit.ui.selection_bar.

    from ragkit.ui import selection
    selection.checkbox("library", sha)               # on a tile, synced with the selection
    selection.select("library", ids) / unselect / clear / ids / count
    selection.page_buttons("library", page_ids, total, every_id, key="library.select", every_label=...)
    selection.forget(ids)                            # deleted or restored: out of every page's selection
"""
from __future__ import annotations

from typing import Callable, Iterable

import streamlit as st

# One person's selection is held in their session; the core's bulk changes take it in steps of 512.
# Past 10,000 the CLI is the better tool (`python -m ragkit tag --add T $(...)`).
MAX_SELECTION = 10_000


def _key(scope: str) -> str:
    return f"ragkit.selection.{scope}"


def _selected(scope: str) -> dict[str, None]:
    """The selection as an ordered set (a dict's keys, in the order picked)."""
    return st.session_state.setdefault(_key(scope), {})


def ids(scope: str) -> list[str]:
    return list(_selected(scope))


def count(scope: str) -> int:
    return len(_selected(scope))


def contains(scope: str, sha256: str) -> bool:
    return sha256 in _selected(scope)


def select(scope: str, sha256s: Iterable[str]) -> int:
    """Add these ids (up to MAX_SELECTION in all); how many were left out for the cap."""
    chosen = _selected(scope)
    left_out = 0
    for sha in sha256s:
        if sha in chosen:
            continue
        if len(chosen) >= MAX_SELECTION:
            left_out += 1
            continue
        chosen[sha] = None
    return left_out


def unselect(scope: str, sha256s: Iterable[str]) -> None:
    chosen = _selected(scope)
    for sha in sha256s:
        chosen.pop(sha, None)


def clear(scope: str) -> None:
    st.session_state[_key(scope)] = {}


def forget(sha256s: Iterable[str]) -> None:
    """Drop these ids from every page's selection (they moved to the trash, or out of it)."""
    gone = set(sha256s)
    for key in [k for k in st.session_state.keys() if str(k).startswith(_key(""))]:
        st.session_state[key] = {sha: None for sha in st.session_state[key] if sha not in gone}


def _sync_from_widget(scope: str, sha256: str, widget_key: str) -> None:
    if st.session_state.get(widget_key):
        select(scope, [sha256])
    else:
        unselect(scope, [sha256])


def checkbox(scope: str, sha256: str, label: str = "Select") -> bool:
    """A checkbox on a tile that shows and changes whether this asset is selected."""
    widget_key = f"{scope}.select.{sha256}"
    # The selection is the truth (select-all and Clear change it): the widget follows it.
    st.session_state[widget_key] = contains(scope, sha256)
    return st.checkbox(label, key=widget_key, on_change=_sync_from_widget, args=(scope, sha256, widget_key))


def select_all(scope: str, sha256s: list[str]) -> None:
    """A callback for "select all": select these ids, and say so if the cap left some out."""
    left_out = select(scope, sha256s)
    if left_out:
        st.toast(f"A selection holds at most {MAX_SELECTION:,} images: {left_out:,} were left out. For more, "
                 "use the command line (`python -m ragkit tag`, `delete`, `rights` take many ids).",
                 icon=":material/info:")


def page_buttons(scope: str, page_ids: list[str], total: int, every_id: Callable[[], list[str]], *, key: str,
                 every_label: str) -> None:
    """"Select this page (N)", or "Unselect this page" once it is all selected; and, when there is more
    than this page, `every_label`, which selects `every_id()` (read only when clicked)."""
    if page_ids and all(contains(scope, sha) for sha in page_ids):
        st.button("Unselect this page", key=f"{key}-page", icon=":material/deselect:", type="tertiary",
                  on_click=unselect, args=(scope, page_ids))
    else:
        st.button(f"Select this page ({len(page_ids):,})", key=f"{key}-page", icon=":material/select_all:",
                  type="tertiary", on_click=select_all, args=(scope, page_ids))
    if total > len(page_ids):
        st.button(every_label, key=f"{key}-all", icon=":material/done_all:", type="tertiary",
                  on_click=lambda: select_all(scope, every_id()))
