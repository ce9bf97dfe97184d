"""The Library's Trash view: what was deleted waits here, restorable, until it is emptied or expires."""
from datetime import datetime

import streamlit as st

from ragkit.library import Library
from ragkit.lifecycle.trash import days_left
from ragkit.records import Asset
from ragkit.rights import now_ms
from ragkit.ui import selection, state
from ragkit.ui.errors import guard
from ragkit.ui.grid import grid, name_caption, show_thumbnail
from ragkit.ui.paging import Pager

K_CONFIRM_EMPTY = "library.confirm-empty"
TRASH_SCOPE = "trash"  # the Trash view's selection (ragkit.ui.selection)
PER_PAGE = 24
PAGER = Pager("library.trash-page", "library.trash-paging")

library: Library  # set by show(): the page's library, for the callbacks below


def images(count: int) -> str:
    return f"{count:,} image{'s' if count != 1 else ''}"


def restore(sha256s: list[str]) -> None:
    with guard("restoring"):
        result = library.restore(sha256s)
        selection.forget(sha256s)
        state.mark_changed(library)
        gone = f"; {len(result.skipped)} could not be restored (see `python -m ragkit doctor`)" if result.skipped else ""
        st.toast(f"Restored {images(len(result.done))} to the library{gone}", icon=":material/restore_from_trash:")


def trash_cell(asset: Asset) -> None:
    selection.checkbox(TRASH_SCOPE, asset.sha256)
    show_thumbnail(library, asset)
    name_caption(asset)
    deleted = datetime.fromtimestamp(asset.trashed_at / 1000)
    left = days_left(asset.trashed_at, now_ms(), library.settings.trash_days)
    colour = "red" if left <= 1 else "orange" if left <= 7 else "gray"  # what goes soon stands out
    st.caption(f"Deleted {deleted:%b} {deleted.day}")
    st.markdown(f":{colour}-badge[:material/timer: {left} day{'s' if left != 1 else ''} left]",
                help=f"Deleted {deleted:%Y-%m-%d %H:%M}; deleted for good after {library.settings.trash_days} days.")
    st.button("Restore", key=f"library.restore.{asset.sha256}", on_click=restore, args=([asset.sha256],),
              icon=":material/restore_from_trash:", type="tertiary")


def ask_empty(what: str | None) -> None:
    """Which confirmation the Trash view shows: "all" (Empty trash), "selected", or none."""
    st.session_state[K_CONFIRM_EMPTY] = what


def empty_trash(chosen: list[str] | None, count: int) -> None:
    """Delete for good the whole trash (`chosen` None) or the chosen assets of it."""
    with guard("emptying the trash"), st.spinner(f"Deleting {images(count)} for good…"):
        result = library.empty_trash(chosen)
        if chosen is None:
            selection.clear(TRASH_SCOPE)
        else:
            selection.forget(chosen)
        ask_empty(None)
        state.mark_changed(library)
        state.flash(f"Deleted {images(len(result.done))} for good", ":material/delete_forever:")
        st.rerun()


def trash_actions(page_ids: list[str], total: int) -> None:
    with st.container(horizontal=True, gap="small", vertical_alignment="center", key="library-trash-actions"):
        selection.page_buttons(TRASH_SCOPE, page_ids, total, library.trashed_ids, key="library.trash-select",
                               every_label=f"Select all {total:,} in the trash")
        st.space("stretch")
        st.button("Empty trash…", key="library.empty-trash", icon=":material/delete_forever:", on_click=ask_empty,
                  args=("all",))
    trash_selection_bar()
    confirm_empty(total)


def trash_selection_bar() -> None:
    """The selected assets of the trash: restore them, or delete them for good."""
    chosen = selection.ids(TRASH_SCOPE)
    if not chosen:
        return
    with st.container(border=True, key="selection-bar-trash"), \
            st.container(horizontal=True, gap="small", vertical_alignment="center"):
        st.markdown(f"**{len(chosen):,} selected**")
        st.button(f"Restore {len(chosen):,}", key="library.restore-selected", type="primary",
                  icon=":material/restore_from_trash:", on_click=restore, args=(chosen,))
        st.button(f"Delete {len(chosen):,} for good…", key="library.delete-selected", icon=":material/delete_forever:",
                  on_click=ask_empty, args=("selected",))
        st.space("stretch")
        st.button("Clear selection", key="library.trash-clear", icon=":material/deselect:", type="tertiary",
                  on_click=selection.clear, args=(TRASH_SCOPE,))


def confirm_empty(total: int) -> None:
    """Deleting for good cannot be undone: say what goes, and ask."""
    what = st.session_state.get(K_CONFIRM_EMPTY)
    chosen = selection.ids(TRASH_SCOPE) if what == "selected" else None
    if not what or chosen == []:
        return
    count = total if chosen is None else len(chosen)
    which = (f"{'the' if count == 1 else 'all'} **{images(count)}** in the trash" if chosen is None
             else f"the **{images(count)}** you selected")
    st.warning(f"Delete {which} for good? Their originals and thumbnails are removed from disk; this cannot be "
               "undone.", icon=":material/delete_forever:")
    with st.container(horizontal=True, gap="small"):
        if st.button(f"Yes, delete {count:,} for good", key="library.empty-confirm", type="primary"):
            empty_trash(chosen, count)
        st.button("Cancel", key="library.empty-cancel", on_click=ask_empty, args=(None,))


def show(opened: Library) -> None:
    """The Library page's Trash view."""
    global library
    library = opened
    if not library.has_trash:
        st.info("This library was made by an older ragkit and has no trash: deleting an image there is for good. "
                "Run `python -m ragkit upgrade` to get the trash (and usage rights).", icon=":material/upgrade:")
        return
    library.expire_trash()  # a long-running app: what has been there too long goes now, not at the next start
    page, current, pages = PAGER.fetch(PER_PAGE, library.trashed_page)
    days = library.settings.trash_days
    if not page.total:
        st.info(f"The trash is empty. Images you delete wait here for {days} days, so they can be restored, "
                "before they are deleted for good.", icon=":material/delete:")
        return
    where = f" · page {current} of {pages}" if pages > 1 else ""
    st.markdown(f"**{page.total:,}** image{'s' if page.total != 1 else ''} in the trash, most recently deleted "
                f"first{where}")
    st.caption(f"Restore brings an image back as it was: tags, provenance, usage rights. Each is deleted for good "
               f"{days} days after it was deleted (`RAGKIT_TRASH_DAYS`), or when you empty the trash.")
    trash_actions([a.sha256 for a in page.assets], page.total)
    grid(page.assets, trash_cell, key="trash")
    PAGER.widget(pages)
