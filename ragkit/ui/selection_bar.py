"""The selection bar: how many assets are selected, and what can be done to all of them at once
(tags, usage rights, the reference tray, a zip, the trash). The Library and Search pages show it
above their grids; each action is one call of the core (batched there) and one redraw."""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from ragkit.library import Library
from ragkit.ingest.portable import export_library
from ragkit.lifecycle.trash import remove, removal_done, removal_question
from ragkit.rights import blocked_as_reference, now_ms, rights_change
from ragkit.tags import normalise_tags
from ragkit.ui import selection, state, tray
from ragkit.ui.errors import guard
from ragkit.ui.markdown import md_escape

REFERENCE_CHOICES = {"keep": "Keep as it is", "allow": "Allowed", "forbid": "Not as a reference"}


def _key(scope: str, name: str) -> str:
    return f"{scope}.selection.{name}"


def _ask(scope: str, what: str | None) -> None:
    """Which confirmation the bar shows ("delete", "tray"), or none."""
    st.session_state[_key(scope, "ask")] = what


def _asking(scope: str) -> str | None:
    return st.session_state.get(_key(scope, "ask"))


def render(library: Library, scope: str, *, noun: str = "images") -> None:
    """The bar, when something is selected."""
    chosen = selection.ids(scope)
    if not chosen:
        return
    with st.container(border=True, key=f"selection-bar-{scope}"):
        with st.container(horizontal=True, gap="small", vertical_alignment="center"):
            st.markdown(f"**{len(chosen):,} selected**")
            tags_popover(library, scope, chosen)
            rights_popover(library, scope, chosen)
            st.button("Add to references", key=_key(scope, "tray"), icon=":material/add_photo_alternate:",
                      on_click=_ask, args=(scope, "tray"))
            zip_button(library, scope, chosen)
            st.button("Delete…", key=_key(scope, "delete"), icon=":material/delete:", on_click=_ask,
                      args=(scope, "delete"))
            st.space("stretch")
            st.button("Clear selection", key=_key(scope, "clear"), icon=":material/deselect:", type="tertiary",
                      on_click=_clear, args=(scope,))
        if _asking(scope) == "delete":
            confirm_delete(library, scope, chosen, noun)
        elif _asking(scope) == "tray":
            add_to_tray(library, scope, chosen)
        download_zip(scope)


def _clear(scope: str) -> None:
    selection.clear(scope)
    _ask(scope, None)


def _done(library: Library, message: str, icon: str) -> None:
    state.mark_changed(library)
    state.flash(message, icon)
    st.rerun()


def _left_out(result) -> str:
    parts = []
    if result.skipped:
        parts.append(f"{len(result.skipped):,} in the trash")
    if result.missing:
        parts.append(f"{len(result.missing):,} no longer in the library")
    return f" ({', '.join(parts)}: left as they are)" if parts else ""


# --- tags and rights ---------------------------------------------------------------------------
def tags_popover(library: Library, scope: str, chosen: list[str]) -> None:
    known = [tag for tag, _ in state.all_tags(library)]
    # A form: the fields are sent with the click on Apply, not one rerun each (a rerun started by the
    # field losing focus would swallow the click).
    with st.popover("Tags", icon=":material/sell:", key=_key(scope, "tags-popover")), \
            st.form(_key(scope, "tags-form"), border=False, clear_on_submit=True):
        add = st.multiselect("Add tags", known, key=_key(scope, "add-tags"), accept_new_options=True,
                             placeholder="Type a tag…")
        remove = st.multiselect("Remove tags", known, key=_key(scope, "remove-tags"), placeholder="Pick a tag…")
        if st.form_submit_button(f"Apply to {len(chosen):,}", key=_key(scope, "apply-tags"), type="primary"):
            if not normalise_tags(add) and not normalise_tags(remove):
                st.warning("Nothing to change: pick tags to add or to remove.")
                return
            with guard("changing the tags"), st.spinner(f"Changing the tags of {len(chosen):,} images…"):
                result = library.update_tags_many(chosen, add=add, remove=remove)
                _done(library, f"Tags changed on {len(result.done):,} images{_left_out(result)}", ":material/sell:")


def rights_popover(library: Library, scope: str, chosen: list[str]) -> None:
    with st.popover("Usage rights", icon=":material/verified_user:", key=_key(scope, "rights-popover")):
        if not library.has_rights:
            st.info("This library was made by an older ragkit: run `python -m ragkit upgrade` to record usage "
                    "rights.", icon=":material/upgrade:")
            return
        with st.form(_key(scope, "rights-form"), border=False, clear_on_submit=True):
            rights_form(library, scope, chosen)


def rights_form(library: Library, scope: str, chosen: list[str]) -> None:
    """Date, note and reference choice for the selection; what is left empty is kept."""
    st.caption("Fields left empty keep what each image has.")
    until = st.date_input("Usable until (the last day, UTC)", value=None, key=_key(scope, "until"))
    no_until = st.checkbox("Remove the usable-until date", key=_key(scope, "no-until"))
    note = st.text_input("Licence or usage note", key=_key(scope, "note"), max_chars=1024,
                         placeholder="e.g. Getty #12345, web and social until June")
    no_note = st.checkbox("Remove the note", key=_key(scope, "no-note"))
    reference = st.segmented_control("As a reference", list(REFERENCE_CHOICES), default="keep", required=True,
                                     format_func=REFERENCE_CHOICES.get, key=_key(scope, "reference"))
    if st.form_submit_button(f"Apply to {len(chosen):,}", key=_key(scope, "apply-rights"), type="primary"):
        with guard("setting the usage rights"):
            change = rights_change(until=until, no_until=no_until, note="" if no_note else (note or None),
                                   no_reference={"allow": False, "forbid": True}.get(reference))
            if change.empty:
                st.warning("Nothing to change: set a date, a note or the reference choice.")
                return
            with st.spinner(f"Setting the usage rights of {len(chosen):,} images…"):
                result = library.set_rights(chosen, change)
            _done(library, f"Usage rights set on {len(result.done):,} images{_left_out(result)}",
                  ":material/verified_user:")


# --- the reference tray --------------------------------------------------------------------------
def add_to_tray(library: Library, scope: str, chosen: list[str]) -> None:
    """Add the selection to the tray up to the Studio model's limit; ask about expired or
    not-as-reference assets first."""
    with guard("adding references"):
        now = now_ms()
        assets = [a for a in library.get_many(chosen) if not a.trashed]
        blocked = [a for a in assets if blocked_as_reference(a, now) and not tray.contains(a.sha256)]
        if blocked:
            st.warning(f"{len(blocked):,} of the selected images should not be used as references: "
                       + "; ".join(f"{md_escape(a.filename[:60])}: {md_escape(blocked_as_reference(a, now))}"
                                   for a in blocked[:3]) + ("; …" if len(blocked) > 3 else "") + ".",
                       icon=":material/gpp_maybe:")
            with st.container(horizontal=True, gap="small"):
                if st.button("Add them too", key=_key(scope, "tray-all"), type="primary"):
                    _tray_add(library, scope, [a.sha256 for a in assets])
                if st.button("Only the others", key=_key(scope, "tray-others")):
                    skip = {a.sha256 for a in blocked}
                    _tray_add(library, scope, [a.sha256 for a in assets if a.sha256 not in skip])
                st.button("Cancel", key=_key(scope, "tray-cancel"), on_click=_ask, args=(scope, None))
            return
        _tray_add(library, scope, [a.sha256 for a in assets])


def _tray_add(library: Library, scope: str, sha256s: list[str]) -> None:
    label, limit, _ = tray.room(library.settings)
    added, left_out = tray.add_many(sha256s, library.settings)
    _ask(scope, None)
    note = (f"; {label} takes at most {limit} references, so {len(left_out):,} were left out" if left_out else "")
    state.flash(f"Added {len(added):,} to the references{note}.", ":material/add_photo_alternate:")
    st.rerun()


# --- zip and trash -------------------------------------------------------------------------------
def zip_button(library: Library, scope: str, chosen: list[str]) -> None:
    if st.button("Download zip", key=_key(scope, "zip"), icon=":material/folder_zip:",
                 help="The originals plus metadata.json (tags, dates, provenance, rights): the export format, "
                      "which `python -m ragkit import` reads."):
        with guard("packing the zip"), st.spinner(f"Packing {len(chosen):,} originals…"):
            out = library.settings.data_dir / "exports" / f"ragkit-selection-{time.strftime('%Y%m%d-%H%M%S')}.zip"
            report = export_library(library, out, ids=chosen)
            st.session_state[_key(scope, "zip-path")] = report.path
            if report.missing:
                st.warning(f"{len(report.missing)} image(s) had no original file and were left out; "
                           "run `python -m ragkit doctor --repair`.")


def download_zip(scope: str) -> None:
    path = st.session_state.get(_key(scope, "zip-path"))
    if path and Path(path).is_file():
        archive = Path(path)
        # Read when clicked, not on every rerun: a zip of many originals can be gigabytes.
        st.download_button(f"Save {archive.name} ({archive.stat().st_size / 2**20:,.1f} MB)", data=archive.read_bytes,
                           file_name=archive.name, mime="application/zip", key=_key(scope, "zip-download"),
                           icon=":material/download:", type="primary")


def confirm_delete(library: Library, scope: str, chosen: list[str], noun: str) -> None:
    st.warning(removal_question(library, f"{len(chosen):,} {noun}"),
               icon=":material/delete:" if library.has_trash else ":material/delete_forever:")
    with st.container(horizontal=True, gap="small"):
        if st.button("Yes, move to the trash" if library.has_trash else "Yes, delete for good",
                     key=_key(scope, "delete-confirm"), type="primary"):
            with guard("deleting the images"), st.spinner(f"Moving {len(chosen):,} images…"):
                moved = len(remove(library, chosen).done)
                for sha in chosen:
                    tray.remove(sha)
                selection.forget(chosen)
                _ask(scope, None)
                _done(library, removal_done(library, moved), ":material/delete:")
        st.button("Cancel", key=_key(scope, "delete-cancel"), on_click=_ask, args=(scope, None))
