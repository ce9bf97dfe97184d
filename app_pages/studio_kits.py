"""The Studio page's Brand kits tab: create and edit kits (style, fixed references, words to avoid,
default aspect ratio). A part of app_pages/studio.py, not a page of its own.

The editor opens a kit at its version (kept in the session); Save stores the next version only if
nobody saved it since (ragkit.studio.kits: optimistic concurrency), otherwise it says so and keeps the
edits on screen, and Reload shows the other version. The widgets are keyed by the kit's name and the
version opened, so a saved (or reloaded) kit shows its new values.
"""
from __future__ import annotations

from datetime import datetime

import streamlit as st

from ragkit.errors import RagkitError
from ragkit.library import Library
from ragkit.studio import ASPECT_LABELS, kits
from ragkit.ui import tray
from ragkit.ui.errors import error_message, show_message
from ragkit.ui.grid import inject_css, short_name, thumbnail_bytes
from ragkit.ui.markdown import md_escape

K_OPEN = "kits.open"            # the kit picked in the select box (its name), or NEW_KIT
K_OPEN_NEXT = "kits.open-next"  # set by Save/Delete: what the picker shows on the next run
K_OPENED = "kits.opened"        # the Kit as it was when opened: the version a Save expects to replace
NEW_KIT = "+ New kit"  # plain text (a select box's option): the ➕ emoji has no font on many servers (⊠)
AUTO = "auto"


def render(library: Library) -> None:
    store = kits.kit_store(library.settings)
    all_kits, damaged = store.scan()
    for entry in damaged:  # listed, never hidden: `brand-kit delete FILE` removes one
        st.warning(md_escape(entry.describe()), icon=":material/report:")
    if K_OPEN_NEXT in st.session_state:
        st.session_state[K_OPEN] = st.session_state.pop(K_OPEN_NEXT)
    names = [kit.name for kit in all_kits]
    if st.session_state.get(K_OPEN) not in [NEW_KIT, *names]:
        st.session_state[K_OPEN] = names[0] if names else NEW_KIT
    st.caption("A brand kit is added to every brief that uses it: its style text, its reference images (logo, "
               "palette, mascot: sent after the brief's own references) and the words to avoid. Kits are kept "
               "with the library, so everyone on it sees the same ones.")
    choice = st.selectbox("Kit", [NEW_KIT, *names], key=K_OPEN, width=360, on_change=forget_opened)
    current = next((k for k in all_kits if k.name == choice), None)
    opened: kits.Kit | None = st.session_state.get(K_OPENED)
    if opened is None or opened.name != choice:
        opened = current
        st.session_state[K_OPENED] = opened
    if current and opened and current.version != opened.version:
        with st.container(horizontal=True, vertical_alignment="center", key="kits-newer"):
            st.info(f"Someone else saved this kit since you opened it (now version {current.version}, yours is "
                    f"version {opened.version}). Reload to see their changes.", icon=":material/sync_problem:")
            st.button("Reload", key="kits.reload", on_click=forget_opened, icon=":material/refresh:")
    editor(library, store, opened)


def forget_opened() -> None:
    """Open the picked kit afresh, at its latest version."""
    st.session_state.pop(K_OPENED, None)


def editor(library: Library, store: kits.KitStore, kit: kits.Kit | None) -> None:
    version = kit.version if kit else 0
    form = f"{kit.name if kit else '_new'}.{version}"  # a saved version gets fresh widgets
    if kit:
        saved = datetime.fromtimestamp(kit.updated_at / 1000).strftime("%Y-%m-%d %H:%M") if kit.updated_at else "?"
        st.caption(f"Version {kit.version} · saved {saved}")
        for problem in kits.reference_problems(library, kit):
            st.warning(f"This kit can't be used until you fix it: {md_escape(problem)}.", icon=":material/warning:")
    with st.container(border=True, key="kits-editor"):
        name = st.text_input("Name", value=kit.name if kit else "", key=f"kits.name.{form}", max_chars=60,
                             disabled=kit is not None, placeholder="Acme summer")
        style = st.text_area("Style, added to every brief", value=kit.style if kit else "", key=f"kits.style.{form}",
                             max_chars=kits.MAX_STYLE_CHARS, height=90,
                             placeholder="Pastel colours, soft daylight, lots of white space, playful")
        avoid = st.text_input("Words to avoid (comma-separated)", value=", ".join(kit.avoid) if kit else "",
                              key=f"kits.avoid.{form}", placeholder="text, logos of other brands, people")
        ratios = [AUTO, *ASPECT_LABELS]
        aspect = st.selectbox("Default aspect ratio", ratios, index=ratios.index(kit.aspect or AUTO) if kit else 0,
                              format_func=lambda r: "Auto (model decides)" if r == AUTO else ASPECT_LABELS[r],
                              key=f"kits.aspect.{form}", width=260)
        references = reference_editor(library, kit, form)
        with st.container(horizontal=True, gap="small", key="kits-actions"):
            if st.button("Save kit", key=f"kits.save.{form}", type="primary", icon=":material/save:"):
                save(store, library, kit, name, style, avoid, None if aspect == AUTO else aspect, references)
            if kit:
                with st.popover("Delete…", icon=":material/delete:"):
                    st.caption(f"Delete the kit {md_escape(kit.name)}? Images made with it keep its name.")
                    if st.button("Delete the kit", key=f"kits.delete.{form}", type="primary"):
                        delete(store, kit)


def reference_editor(library: Library, kit: kits.Kit | None, form: str) -> list[str]:
    """The kit's references being edited (kept in the session until saved): thumbnails with Remove,
    and "Add the tray's images"."""
    key = f"kits.refs.{form}"
    if key not in st.session_state:
        st.session_state[key] = list(kit.reference_ids) if kit else []
    refs: list[str] = st.session_state[key]
    st.markdown(f"**References** · {len(refs)} of {kits.MAX_KIT_REFERENCES}")
    found = {a.sha256: a for a in library.get_many(refs)}
    if refs:
        inject_css()
        cells = st.grid("auto", min_column_width=110, border=True, gap="small", key=f"ragkit-grid-kit-refs-{form}")
        for sha in list(refs):
            with cells.cell():
                asset = found.get(sha)
                data = thumbnail_bytes(library, sha) if asset else None
                if data:
                    st.image(data, width="stretch", alt=asset.filename)
                st.caption(md_escape(short_name(asset.filename, 16)) if asset else ":red[deleted]")
                st.button("Remove", key=f"kits.remove.{form}.{sha}", on_click=refs.remove, args=(sha,),
                          icon=":material/close:", type="tertiary")
    else:
        st.caption("No references: the kit adds only text. Put the logo, palette or mascot in the tray "
                   "(Search or Library › Use as a reference), then add them here.")
    picked = [sha for sha in tray.ids() if sha not in refs]
    room = kits.MAX_KIT_REFERENCES - len(refs)
    if picked and room > 0:
        adding = picked[:room]
        st.button(f"Add the tray's {len(adding)} image{'s' if len(adding) != 1 else ''}", key=f"kits.add-tray.{form}",
                  on_click=refs.extend, args=(adding,), icon=":material/add_photo_alternate:")
    return refs


def save(store: kits.KitStore, library: Library, kit: kits.Kit | None, name: str, style: str, avoid: str,
         aspect: str | None, references: list[str]) -> None:
    try:
        edited = kits.make_kit(kit.name if kit else name, style, references, [avoid], aspect)
        kits.check_usable(library, edited, saving=True)
        saved = store.save(edited, expected_version=kit.version if kit else 0)
    except RagkitError as exc:  # a conflict too: the edits stay on screen, Reload shows the other version
        show_message(error_message(exc, "saving the kit"))
        return
    st.session_state[K_OPEN_NEXT] = saved.name
    st.session_state[K_OPENED] = saved
    st.toast(f"Saved {md_escape(saved.name)}, version {saved.version}", icon=":material/check:")
    st.rerun()


def delete(store: kits.KitStore, kit: kits.Kit) -> None:
    try:
        store.delete(kit.name, expected_version=kit.version)
    except RagkitError as exc:
        show_message(error_message(exc, "deleting the kit"))
        return
    st.session_state[K_OPEN_NEXT] = NEW_KIT
    forget_opened()
    st.rerun()


def kit_picker(library: Library, key: str) -> kits.Kit | None:
    """A "Brand kit" select box (None: no kit), for the Generate and Batch tabs."""
    names = [kit.name for kit in kits.kit_store(library.settings).list()]
    none = "None"
    if st.session_state.get(key, none) not in [none, *names]:  # deleted meanwhile (here or by someone else)
        st.session_state[key] = none
    choice = st.selectbox("Brand kit", [none, *names], key=key, width=220,
                          help="Adds the kit's style, references and words to avoid to every request. "
                               "Create kits on the Brand kits tab.")
    return kits.kit_store(library.settings).find(choice) if choice != none else None



