"""The Library's Duplicates view: groups of near-duplicate pictures (ragkit.search.duplicates) as rows of
thumbnails; keep one of a group and delete the others, or remove one copy, after a confirmation; or
mark a group "Not duplicates" (remembered in the data folder, so it is not shown again)."""
from __future__ import annotations

import streamlit as st

from dataclasses import replace

from ragkit.errors import StateFileError
from ragkit.lifecycle.trash import removal_done, removal_question
from ragkit.search.duplicates import (DEFAULT_THRESHOLD, DuplicateGroup, dismiss_group, find_duplicate_groups,
                                      read_dismissed, remove_copy, resolve_group, without_dismissed)
from ragkit.library import Library
from ragkit.ui import state, tray
from ragkit.ui.errors import guard
from ragkit.ui.grid import human_size, short_name, thumbnail_bytes
from ragkit.ui.markdown import md_escape

K_THRESHOLD = "library.dup-threshold"
K_FOUND = "library.dup-found"      # (threshold, library revision, groups) of the last look
K_CONFIRM = "library.dup-confirm"  # (group's keeper, the asset chosen, KEEP or DROP) awaiting a yes
KEEP, DROP = "keep", "drop"        # keep this copy and remove the others / remove only this copy
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
    groups = _not_dismissed(library, found[2])
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


def _not_dismissed(library: Library, groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    """The groups minus those a person marked "Not duplicates"; a damaged record is one line, and
    every group is shown."""
    try:
        return without_dismissed(groups, read_dismissed(library.settings.data_dir))
    except StateFileError as exc:
        st.warning(md_escape(str(exc)), icon=":material/report:")
        return groups


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
        with st.container(horizontal=True, vertical_alignment="center"):
            st.markdown(f"**Group {number}** · {len(group.assets)} pictures · lowest similarity "
                        f"{group.min_score:.4f}", width="stretch")
            st.button("Not duplicates", key=f"library.dup-dismiss.{group.keep}", on_click=_dismiss,
                      args=(library, group), type="tertiary", icon=":material/visibility_off:",
                      help="These pictures are different: don't show this group again.")
        with st.container(horizontal=True, gap="small", vertical_alignment="top"):
            for asset, score in zip(group.assets, group.scores):
                _tile(library, group, asset, score)
        confirm = st.session_state.get(K_CONFIRM)
        if confirm and confirm[0] == group.keep:
            _confirm(library, group, confirm[1], confirm[2])


def _tile(library: Library, group: DuplicateGroup, asset, score: float) -> None:
    """One copy: its picture in a fixed square (so every tile's text and buttons line up), then the
    same lines for every copy."""
    with st.container(width=THUMB_PX + 40, gap="xsmall"):
        with st.container(height=THUMB_PX, border=False, horizontal_alignment="center",
                          vertical_alignment="center", gap=None):
            data = thumbnail_bytes(library, asset.sha256)
            if data:
                st.image(data, width=_fit_width(asset.width, asset.height), alt=asset.filename)
            else:
                st.caption(":material/broken_image: no thumbnail")
        badge = (":green-badge[suggested]" if asset.sha256 == group.keep
                 else f":orange-badge[{score:.4f}]")
        st.markdown(badge, help="Suggested: the most pixels, then the biggest file. "
                                "Otherwise: similarity to the suggested one.")
        st.caption(f"{md_escape(short_name(asset.filename, 18))}  \n{asset.width}×{asset.height} · "
                   f"{human_size(asset.size_bytes)}")
        st.button("Keep this one", key=f"library.dup-keep.{group.keep}.{asset.sha256}",
                  on_click=_ask, args=(group.keep, asset.sha256, KEEP), type="tertiary",
                  icon=":material/check:", help="Keep this copy and remove the others.")
        st.button("Remove this one", key=f"library.dup-drop.{group.keep}.{asset.sha256}",
                  on_click=_ask, args=(group.keep, asset.sha256, DROP), type="tertiary",
                  icon=":material/delete:", help="Remove only this copy; the others stay.")


def _fit_width(width: int, height: int) -> int:
    """The display width that fits a picture of this shape into a THUMB_PX square."""
    if width <= 0 or height <= 0 or width >= height:
        return THUMB_PX
    return max(16, round(THUMB_PX * width / height))


def _ask(group_key: str, sha256: str, action: str) -> None:
    st.session_state[K_CONFIRM] = (group_key, sha256, action)


def _dismiss(library: Library, group: DuplicateGroup) -> None:
    with guard("remembering \"Not duplicates\""):
        dismiss_group(library.settings.data_dir, group)
        _forget(library, group)
        st.toast(f"Group of {len(group.assets)} marked as not duplicates: it won't be shown again.",
                 icon=":material/visibility_off:")


def _confirm(library: Library, group: DuplicateGroup, chosen: str, action: str) -> None:
    asset = next((a for a in group.assets if a.sha256 == chosen), None)
    if asset is None:
        st.session_state.pop(K_CONFIRM, None)
        return
    if action == DROP:
        count, question = 1, removal_question(library, md_escape(asset.filename))
        yes = "Yes, remove it"
    else:
        count = len(group.assets) - 1
        question = f"Keep **{md_escape(asset.filename)}**. " + removal_question(library, f"the other {count}")
        yes = f"Yes, remove {count}"
    st.warning(question, icon=":material/delete:" if library.has_trash else ":material/delete_forever:")
    with st.container(horizontal=True, gap="small"):
        if st.button(yes, key=f"library.dup-yes.{group.keep}", type="primary", icon=":material/delete:"):
            with guard("deleting the duplicates"):
                if action == DROP:
                    removed, gone = remove_copy(library, chosen, group), [chosen]
                else:
                    removed, gone = resolve_group(library, chosen, group), group.others(chosen)
                for sha in gone:
                    tray.remove(sha)
                state.mark_changed(library)
                _forget(library, group, gone if action == DROP else None)
                st.toast(removal_done(library, removed), icon=":material/delete:")
                st.rerun()
        st.button("Cancel", key=f"library.dup-cancel.{group.keep}",
                  on_click=lambda: st.session_state.pop(K_CONFIRM, None))


def _forget(library: Library, group: DuplicateGroup, removed: list[str] | None = None) -> None:
    """The group leaves the list (or, with `removed`, just those copies: a group still of two or more
    stays); the others stay as found (our own delete needs no new look)."""
    threshold, _, groups = st.session_state[K_FOUND]
    kept = []
    for g in groups:
        if g.keep == group.keep:
            if removed is None:
                continue
            g = _without(g, set(removed))
            if g is None:
                continue
        kept.append(g)
    st.session_state[K_FOUND] = (threshold, state.revision(library), kept)
    st.session_state.pop(K_CONFIRM, None)


def _without(group: DuplicateGroup, removed: set[str]) -> DuplicateGroup | None:
    """The group minus some copies (None under two). Its key (the first asset) stays the same
    when the suggested copy stays; scores and lowest similarity are kept as found."""
    pairs = [(a, s) for a, s in zip(group.assets, group.scores) if a.sha256 not in removed]
    if len(pairs) < 2:
        return None
    return replace(group, assets=tuple(a for a, _ in pairs), scores=tuple(s for _, s in pairs))
