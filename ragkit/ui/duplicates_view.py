"""The Library's Duplicates view: groups of near-duplicate pictures (ragkit.search.duplicates) as rows of
thumbnails; keep one of a group and delete the others, after a confirmation."""
from __future__ import annotations

import streamlit as st

from ragkit.lifecycle.trash import removal_question
from ragkit.search.duplicates import DEFAULT_THRESHOLD, DuplicateGroup, find_duplicate_groups, resolve_group
from ragkit.library import Library
from ragkit.ui import state, tray
from ragkit.ui.errors import guard
from ragkit.ui.grid import human_size, short_name, thumbnail_bytes
from ragkit.ui.markdown import md_escape

K_THRESHOLD = "library.dup-threshold"
K_FOUND = "library.dup-found"      # (threshold, library revision, groups) of the last look
K_CONFIRM = "library.dup-confirm"  # (group's keeper, the asset chosen to keep) awaiting a yes
MIN_THRESHOLD = 0.5
MAX_GROUPS_SHOWN = 50              # a page of rows; resolving some shows the next ones
THUMB_PX = 132


def show(library: Library) -> None:
    st.session_state.setdefault(K_THRESHOLD, DEFAULT_THRESHOLD)
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom", key="library-dup-controls"):
        threshold = st.number_input("Similarity at least", MIN_THRESHOLD, 1.0, key=K_THRESHOLD, step=0.005,
                                    format="%.4f", width=200, persist_state="session",
                                          help=f"Cosine similarity of the pictures' CLIP vectors. {DEFAULT_THRESHOLD} "
                                         "(the default) groups resized, re-encoded and slightly cropped copies; "
                                         "0.99 only near-identical ones.")
        look = st.button("Find duplicates", key="library.dup-find", icon=":material/content_copy:", type="primary")
    if library.random_weights:
        st.warning("The model has **random weights**: unrelated pictures score as near-duplicates, so these "
                   "groups mean nothing. Use real CLIP weights before deleting anything.", icon=":material/casino:")
    found = st.session_state.get(K_FOUND)
    if look or (found and found[0] != threshold):
        found = _look(library, threshold)
    if not found:
        st.caption("Looks for pictures stored more than once: resized, re-encoded, cropped or rotated copies. "
                   "Nothing is deleted until you choose which copy to keep.")
        return
    if found[1] != state.revision(library):  # the library changed since: the groups may be stale
        st.info("The library has changed since these groups were found; look again to refresh them.",
                icon=":material/refresh:")
    groups = found[2]
    if not groups:
        st.success(f"No near-duplicates at similarity ≥ {threshold:.4f}.", icon=":material/check_circle:")
        return
    spare = sum(len(g.assets) - 1 for g in groups)
    st.markdown(f"**{len(groups):,}** group{'s' if len(groups) != 1 else ''} of near-duplicates · keeping one "
                f"of each would remove **{spare:,}** image{'s' if spare != 1 else ''}")
    for number, group in enumerate(groups[:MAX_GROUPS_SHOWN], 1):
        group_row(library, number, group)
    if len(groups) > MAX_GROUPS_SHOWN:
        st.caption(f"{len(groups) - MAX_GROUPS_SHOWN:,} more groups: resolve these to see them.")


def _look(library: Library, threshold: float):
    bar = st.progress(0.0, text="Comparing pictures…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Comparing pictures… {done:,} of {total:,}")
    with guard("looking for duplicates"):
        groups = find_duplicate_groups(library, threshold, on_progress=progress)
        st.session_state[K_FOUND] = (threshold, state.revision(library), groups)
        st.session_state.pop(K_CONFIRM, None)
    bar.empty()
    return st.session_state.get(K_FOUND)


def group_row(library: Library, number: int, group: DuplicateGroup) -> None:
    with st.container(border=True, key=f"library-dup-group-{group.keep}"):
        st.markdown(f"**Group {number}** · {len(group.assets)} pictures · lowest similarity "
                    f"{group.min_score:.4f}")
        with st.container(horizontal=True, gap="small"):
            for asset, score in zip(group.assets, group.scores):
                with st.container(width=THUMB_PX + 40, gap="xsmall"):
                    data = thumbnail_bytes(library, asset.sha256)
                    if data:
                        st.image(data, width=THUMB_PX)
                    badge = (":green-badge[suggested]" if asset.sha256 == group.keep
                             else f":orange-badge[{score:.4f}]")
                    st.markdown(badge, help="Suggested: the most pixels, then the biggest file. "
                                            "Otherwise: similarity to the suggested one.")
                    st.caption(f"{md_escape(short_name(asset.filename, 18))}  \n{asset.width}×{asset.height} · "
                               f"{human_size(asset.size_bytes)}")
                    st.button("Keep this one", key=f"library.dup-keep.{group.keep}.{asset.sha256}",
                              on_click=_ask, args=(group.keep, asset.sha256), type="tertiary",
                              icon=":material/check:")
        confirm = st.session_state.get(K_CONFIRM)
        if confirm and confirm[0] == group.keep:
            _confirm(library, group, confirm[1])


def _ask(group_key: str, keep: str) -> None:
    st.session_state[K_CONFIRM] = (group_key, keep)


def _confirm(library: Library, group: DuplicateGroup, keep: str) -> None:
    kept = next(a for a in group.assets if a.sha256 == keep)
    others = len(group.assets) - 1
    st.warning(f"Keep **{md_escape(kept.filename)}**. " + removal_question(library, f"the other {others}"),
               icon=":material/delete:" if library.has_trash else ":material/delete_forever:")
    with st.container(horizontal=True, gap="small"):
        if st.button(f"Yes, remove {others}", key=f"library.dup-yes.{group.keep}", type="primary",
                     icon=":material/delete:"):
            with guard("deleting the duplicates"):
                deleted = resolve_group(library, keep, group)
                for sha in group.others(keep):
                    tray.remove(sha)
                state.mark_changed(library)
                _forget(library, group)
                where = "moved to the trash" if library.has_trash else "deleted"
                st.toast(f"Kept {md_escape(kept.filename)}, {where} {deleted}", icon=":material/delete:")
                st.rerun()
        st.button("Cancel", key=f"library.dup-cancel.{group.keep}",
                  on_click=lambda: st.session_state.pop(K_CONFIRM, None))


def _forget(library: Library, group: DuplicateGroup) -> None:
    """The resolved group leaves the list; the others stay as found (our own delete needs no new look)."""
    threshold, _, groups = st.session_state[K_FOUND]
    st.session_state[K_FOUND] = (threshold, state.revision(library), [g for g in groups if g.keep != group.keep])
    st.session_state.pop(K_CONFIRM, None)
