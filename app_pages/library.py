"""Library: add images (drag and drop), browse them newest first, select many and act on them, open one
for details (tags, usage rights), export; the Trash view holds what was deleted until it is emptied."""
import time
from pathlib import Path

import streamlit as st

from ragkit.errors import RagkitError
from ragkit.ingest.pipeline import Upload
from ragkit.ingest.folder_import import validate_folder
from ragkit.ingest.portable import export_library
from ragkit.records import SOURCE_GENERATED, SOURCE_UPLOAD, Asset, IngestReport, last_usable_day
from ragkit.rights import blocked_as_reference, now_ms, rights_change
from ragkit.studio.edit import lineage, lineage_lines
from ragkit.tags import normalise_tags, parse_tag_list
from ragkit.lifecycle.trash import remove, removal_question
from ragkit.ui import (captions, duplicates_view, edit_panel, filter_controls, links, selection, selection_bar, state, tray,
                       uploads, viewer)
from ragkit.ui.errors import guard, show_error
from ragkit.ui.grid import (grid, human_date, human_size, name_caption, rights_badges, short_name,
                            show_thumbnail, tags_caption, thumbnail_bytes)
from ragkit.ui.markdown import md_escape
from ragkit.ui.paging import Pager

from app_pages import library_trash

SOURCES = {"All": None, "Uploaded": SOURCE_UPLOAD, "Generated": SOURCE_GENERATED}
PAGE_SIZES = [24, 48]

K_UPLOADER = "library.uploader"          # + a generation number: a new one empties the drop zone
K_UPLOAD_TAGS = "library.upload-tags"
K_IMPORT_FOLDER = "library.import-folder"  # a folder on the server's disk to import
K_REPORT = "library.report"             # the last upload's outcome (a summarize() dict)
K_UPLOAD_ERROR = "library.upload-error"  # (error, files checked, files) when an upload failed
K_TAGS = "library.tags"
K_SOURCE = "library.source"
K_PER_PAGE = "library.per-page"
K_FILTERS_SEEN = "library.filters-seen"
K_CONFIRM_DELETE = "library.confirm-delete"
K_EXPORT = "library.export-path"
K_VIEW = "library.view"                  # "library", "duplicates" or "trash"
SCOPE = "library"                        # the Library view's selection (ragkit.ui.selection)
VIEWS = ["library", "duplicates", "trash"]
PAGER = Pager("library.page", "library.paging")  # a new widget generation is how paging restarts
POLL_S = 0.25  # how often the Library redraws an upload's progress (and can be left)

library = state.library()


# --- adding images ---------------------------------------------------------------------------
def same_picture_as(report: IngestReport) -> dict[str, str]:
    """For each duplicate's id, the file it copies, by name: one of this upload, or the library's."""
    names = {asset.sha256: f"{name} (in this upload)" for name, asset in report.added}
    names.update({sha: f"{name} (in this upload, restored)" for name, sha in report.restored})
    elsewhere = [sha for _, sha in report.duplicates if sha not in names]
    try:
        names.update({asset.sha256: asset.filename for asset in library.get_many(elsewhere)} if elsewhere else {})
    except RagkitError:  # the report stands without the names
        pass
    return names


def summarize(report: IngestReport) -> dict:
    """Each file's outcome, the ones that need attention first."""
    rows = [{"File": r.path, "Result": "Rejected", "Why": r.reason} for r in report.rejected]
    names = same_picture_as(report) if report.duplicates else {}
    rows += [{"File": name, "Result": "Already in the library",
              "Why": f"same picture as {names.get(sha) or 'an image already there (id ' + sha[:12] + '…)'}"}
             for name, sha in report.duplicates]
    rows += [{"File": name, "Result": "Added", "Why": f"{a.width}×{a.height}, {human_size(a.size_bytes)}"}
             for name, a in report.added]
    rows += [{"File": name, "Result": "Restored from the trash", "Why": f"it had been deleted ({sha[:12]}…)"}
             for name, sha in report.restored]
    return {"added": len(report.added), "duplicates": len(report.duplicates), "restored": len(report.restored),
            "rejected": len(report.rejected), "seconds": report.seconds, "rows": rows}


def add_images(files, tags_text: str, describe: bool = False) -> None:
    """Start the upload in the background (ui/uploads.py): leaving the page no longer stops it."""
    tags = list(parse_tag_list(tags_text))
    uploads.put(uploads.start(library, [Upload(f.name, f.getvalue()) for f in files], tags,
                              then=captions.after_upload(library) if describe else None))
    for key in (K_REPORT, K_UPLOAD_ERROR):
        st.session_state.pop(key, None)
    # A new, empty drop zone: the job holds the bytes now, the old widget's files can go.
    st.session_state[K_UPLOADER] = st.session_state.get(K_UPLOADER, 0) + 1
    st.rerun()


def import_folder(path_text: str, tags_text: str) -> None:
    """Start importing a folder on the server's disk, like `python -m ragkit ingest FOLDER` (ui/uploads.py)."""
    folder = validate_folder(path_text)
    uploads.put(uploads.start_folder(library, folder, parse_tag_list(tags_text)))
    for key in (K_REPORT, K_UPLOAD_ERROR):
        st.session_state.pop(key, None)
    st.rerun()


def collect_finished_upload() -> None:
    """The report of an upload that has finished (while this page or another one was shown)."""
    pending = uploads.get()
    if pending is None or not pending.job.done:
        return
    uploads.take()
    try:
        st.session_state[K_REPORT] = summarize(pending.job.outcome())
    except Exception as exc:  # noqa: BLE001 - shown in the report's place by report_section
        st.session_state[K_UPLOAD_ERROR] = (exc, pending.done_count, pending.files)
    PAGER.restart()  # the new images are on the first page (newest first)


def wait_for_upload(slot) -> None:
    """Show the running upload's progress in `slot` until it ends; draw the page again whenever
    a batch of images has landed (the grid and the counts show them), and once it is over.

    The ingest runs in its own thread, so this loop only polls: each redraw of the bar is a point
    where Streamlit can stop this run when the user goes to another page; the upload goes on.
    """
    pending = uploads.get()
    if pending is None:
        return
    stored_when_drawn = pending.stored_count
    with slot.container(border=True, key="library-upload-progress"):
        bar = st.progress(0.0, text=uploads.progress_text(pending))
        st.caption("You can browse other pages meanwhile: the upload goes on, and its report waits here.")
        while not pending.job.wait(POLL_S) and pending.stored_count == stored_when_drawn:
            done, total = pending.job.progress
            bar.progress(done / max(total, 1), text=uploads.progress_text(pending))
    st.rerun()  # the new images, or (collect_finished_upload, at the top of the run) the report


def upload_section(empty: bool) -> None:
    limit_mb = st.get_option("server.maxUploadSize")
    with st.expander("Add images", expanded=empty, icon=":material/upload:"):
        generation = st.session_state.get(K_UPLOADER, 0)
        files = st.file_uploader(
            "Drop images here, or browse", accept_multiple_files=True, key=f"{K_UPLOADER}.{generation}",
            help="Pick or drop many files at once. Each one is checked: broken files and non-images are "
                 "rejected with a reason; the same picture twice is stored once.")
        st.caption(f"JPEG, PNG, WebP, GIF, BMP, TIFF and more · up to **{limit_mb} MB per file** "
                   "(`server.maxUploadSize` in `.streamlit/config.toml`). "
                   "For thousands of files, import a folder on the server below.")
        tags_text = st.text_input("Tags for these images (optional, comma-separated)", key=K_UPLOAD_TAGS,
                                  placeholder="summer, campaign, hero")
        describe = captions.upload_checkbox(library)
        label = f"Add {len(files)} image{'s' if len(files) != 1 else ''} to the library" if files else "Add to the library"
        busy = uploads.running()
        if st.button(label, type="primary", disabled=not files or busy, icon=":material/add_photo_alternate:",
                     key="library.add", help="An upload is running; add more once it has finished." if busy else None):
            add_images(files, tags_text, describe)
        import_folder_controls(tags_text, busy)


def import_folder_controls(tags_text: str, busy: bool) -> None:
    """Import a folder: a path on the server's disk (where the app runs), ingested in the background
    with the CLI's checks and limits; run again after a stop, it skips what is already stored."""
    st.markdown("**Import a folder** on the server")
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        path_text = st.text_input("Folder on the server", key=K_IMPORT_FOLDER, placeholder="/srv/photos/2024",
                                  help="A folder on the disk of the machine the app runs on, read with its "
                                       "subfolders (hidden ones skipped). The same as `python -m ragkit ingest "
                                       "FOLDER`, without stopping the app. Stopped halfway? Import it again: "
                                       "images already stored are skipped.")
        clicked = st.button("Import", key="library.import", disabled=busy, icon=":material/drive_folder_upload:",
                            help="An upload is running; import once it has finished." if busy else None)
    if clicked:
        with guard("importing the folder"):
            import_folder(path_text, tags_text)


def dismiss_report() -> None:
    for key in (K_REPORT, K_UPLOAD_ERROR):
        st.session_state.pop(key, None)


def report_section() -> None:
    failed = st.session_state.get(K_UPLOAD_ERROR)
    if failed:
        error, checked, files = failed
        with st.container(border=True, key="library-report"):
            st.warning(f"**The upload stopped** after {checked} of {files} files had been checked. The images "
                       "stored before that are in the library; add the files again once the cause below is "
                       "fixed (those already stored are recognised and skipped).", icon=":material/report:")
            show_error(error, "adding images")
            st.button("Dismiss", key="library.dismiss-report", type="tertiary", icon=":material/close:",
                      on_click=dismiss_report)
        return
    report = st.session_state.get(K_REPORT)
    if not report:
        return
    with st.container(border=True, key="library-report"):
        restored = f"**{report['restored']} restored from the trash** · " if report.get("restored") else ""
        summary = (f"{restored}**{report['added']} added** · {report['duplicates']} already in the library · "
                   f"{report['rejected']} rejected · {report['seconds']:.1f} s")
        if report["rejected"]:
            st.warning(summary, icon=":material/report:")
        else:
            st.success(summary, icon=":material/check_circle:")
        st.dataframe(report["rows"], hide_index=True, width="stretch",
                     height="auto" if len(report["rows"]) <= 10 else 390,
                     column_config={"File": st.column_config.TextColumn(width="medium"),
                                    "Result": st.column_config.TextColumn(width="small"),
                                    "Why": st.column_config.TextColumn(width="large")})
        st.button("Dismiss", key="library.dismiss-report", type="tertiary", icon=":material/close:",
                  on_click=dismiss_report)


def empty_state() -> None:
    with st.container(border=True, key="library-empty"):
        st.subheader(":material/waving_hand: Your library is empty")
        st.markdown("Add your product shots, renders and campaign images: drop them into **Add images** "
                    "below. To import a whole folder, use the command line:")
        st.code("python -m ragkit ingest ~/shoots/2024 --tag summer", language="bash")
        if library.settings.is_embedded_db:
            st.caption("The embedded database serves one process at a time: stop this app while the "
                       "command runs, or share a Milvus server (README › Team mode).")
        with guard("looking for other libraries"):
            for other in library.other_collections():
                if other.count:
                    st.info(f"{other.count:,} images are indexed with another model ({md_escape(other.model_id)}). "
                            "Set RAGKIT_CLIP_MODEL / RAGKIT_CLIP_PRETRAINED back to use them, or add them "
                            "again under this model.", icon=":material/swap_horiz:")


# --- details -----------------------------------------------------------------------------------
def open_details(sha256: str) -> None:
    st.session_state[state.OPEN_ASSET] = sha256


def close_details() -> None:
    st.session_state.pop(state.OPEN_ASSET, None)
    st.session_state.pop(K_CONFIRM_DELETE, None)


def asset_facts(asset: Asset) -> None:
    kind = md_escape(asset.mime.split("/")[-1].upper()) if asset.mime else "?"
    origin = ":material/auto_awesome: Generated" if asset.is_generated else ":material/upload: Uploaded"
    st.markdown(f"{asset.width} × {asset.height} px · {human_size(asset.size_bytes)} · {kind}  \n"
                f"{origin} {human_date(asset)}")
    st.caption(f"id `{asset.sha256}`")


def tag_editor(asset: Asset) -> None:
    known = [t for t, _ in state.all_tags(library)]
    key = f"library.edit-tags.{asset.sha256}"
    chosen = st.multiselect("Tags", options=sorted(set(known) | set(asset.tags)), default=list(asset.tags),
                            key=key, accept_new_options=True, placeholder="Add a tag…")
    wanted = normalise_tags(chosen)
    if st.button("Save tags", key=f"library.save-tags.{asset.sha256}", icon=":material/sell:",
                 disabled=set(wanted) == set(asset.tags)):
        with guard("saving the tags"):
            library.update_tags(asset.sha256, add=[t for t in wanted if t not in asset.tags],
                                remove=[t for t in asset.tags if t not in wanted])
            state.mark_changed(library)
            st.toast("Tags saved", icon=":material/check:")
            st.rerun()


def provenance(asset: Asset) -> None:
    st.markdown("**How it was made**")
    st.markdown(f"Model: {md_escape(asset.model or '?')}")
    if asset.prompt:
        st.markdown(f"> {md_escape(asset.prompt)}")
    for line in lineage_lines(lineage(library, asset)):  # "edited from …", back to the original
        st.markdown(f":material/history_edu: {md_escape(line)}")
    if asset.reference_ids:
        refs = library.get_many(asset.reference_ids)
        st.caption(f"{len(asset.reference_ids)} reference image(s)"
                   + (f", {len(asset.reference_ids) - len(refs)} since deleted" if len(refs) < len(asset.reference_ids) else ""))
        if refs:
            cells = st.grid(4, min_column_width=60, gap="xsmall", key=f"ragkit-tray-refs-{asset.sha256}")
            for ref in refs:
                with cells.cell():
                    data = thumbnail_bytes(library, ref.sha256)
                    if data:
                        st.image(data, width="stretch", caption=md_escape(short_name(ref.filename, 16)))


def rights_editor(asset: Asset) -> None:
    """Usage rights: a licence or usage note, the last day it may be used, "not as a reference"."""
    st.markdown("**Usage rights**")
    if not library.has_rights:
        st.caption("This library was made by an older ragkit: run `python -m ragkit upgrade` to record usage rights.")
        return
    why = blocked_as_reference(asset, now_ms())
    if why:
        st.caption(f":material/gpp_maybe: Not for the Studio: {md_escape(why)}.")
    key = f"library.rights.{asset.sha256}"
    note = st.text_input("Licence or usage note", value=asset.licence, key=f"{key}.note", max_chars=1024,
                         placeholder="e.g. Getty #12345, web and social")
    until = st.date_input("Usable until (the last day, UTC; empty = no limit)",
                          value=last_usable_day(asset.usable_until), key=f"{key}.until")
    no_reference = st.checkbox("Do not use as a reference", value=asset.no_reference, key=f"{key}.no-reference")
    changed = (" ".join(note.split()) != asset.licence or until != last_usable_day(asset.usable_until)
               or no_reference != asset.no_reference)
    if st.button("Save rights", key=f"{key}.save", icon=":material/verified_user:", disabled=not changed):
        with guard("saving the usage rights"):
            library.set_rights([asset.sha256], rights_change(until=until, no_until=until is None, note=note,
                                                             no_reference=no_reference))
            state.mark_changed(library)
            state.flash("Usage rights saved", ":material/check:")
            st.rerun()


def delete_controls(asset: Asset) -> None:
    if st.session_state.get(K_CONFIRM_DELETE) != asset.sha256:
        st.button("Delete…", key="library.delete", icon=":material/delete:",
                  on_click=lambda: st.session_state.__setitem__(K_CONFIRM_DELETE, asset.sha256))
        return
    st.warning(removal_question(library, md_escape(asset.filename)),
               icon=":material/delete:" if library.has_trash else ":material/delete_forever:")
    yes, no = st.columns(2)
    if yes.button("Yes, delete", key="library.delete-confirm", type="primary", width="stretch"):
        with guard("deleting the image"):
            remove(library, [asset.sha256])
            tray.remove(asset.sha256)
            selection.forget([asset.sha256])
            state.mark_changed(library)
            close_details()
            where = "Moved to the trash" if library.has_trash else "Deleted"
            state.flash(f"{where}: {md_escape(asset.filename)}", ":material/delete:")
            st.rerun()
    no.button("Cancel", key="library.delete-cancel", width="stretch",
              on_click=lambda: st.session_state.pop(K_CONFIRM_DELETE, None))


@st.dialog("Image details", width="large", on_dismiss=close_details)
def details(sha256: str) -> None:
    with guard("showing the image"):
        viewer.show(library, sha256, scope="library", on_move=open_details, details=details_panel)


def details_panel(asset: Asset) -> None:
    """Beside the picture in the viewer: what it is, and what can be done with it."""
    sha256 = asset.sha256
    st.markdown(f"### {md_escape(asset.filename)}")
    asset_facts(asset)
    tag_editor(asset)
    captions.details_section(library, asset)
    if asset.is_generated:
        provenance(asset)
    rights_editor(asset)
    tray.pick_toggle(asset.sha256, key_prefix="library.details", label="Use as a reference",
                     blocked=blocked_as_reference(asset, now_ms()))
    has_original = library.has_original(sha256)
    with st.container(horizontal=True, gap="small"):
        if has_original:
            st.download_button("Download original", data=lambda: library.original_bytes(sha256),
                               file_name=asset.filename, mime=asset.mime or None, on_click="ignore",
                               icon=":material/download:", key="library.download")
        if st.button("Find similar", key="library.find-similar", icon=":material/image_search:"):
            state.find_similar(sha256)
        if st.button("Edit", key="library.edit", icon=":material/edit:",
                     help="Change this image in a conversation with the model, on the Studio page."):
            close_details()
            edit_panel.open_asset(library, state.settings(), sha256)
    if not has_original:
        st.caption("The original file is missing; run `python -m ragkit doctor`.")
    delete_controls(asset)


# --- browsing ----------------------------------------------------------------------------------
def cell(asset: Asset) -> None:
    selection.checkbox(SCOPE, asset.sha256)
    show_thumbnail(library, asset)
    name_caption(asset, prefix=":material/auto_awesome: " if asset.is_generated else "")
    tags_caption(asset)
    rights_badges(asset, now_ms())
    st.button("Details", key=f"library.open.{asset.sha256}", on_click=open_details, args=(asset.sha256,),
              icon=":material/open_in_full:", type="tertiary")


def select_row(page_ids: list[str], total: int, filters: dict) -> None:
    """Select all on this page / all matching the filters; the bar (when something is selected)."""
    with st.container(horizontal=True, gap="small", key="library-select-row"):
        selection.page_buttons(SCOPE, page_ids, total, lambda: library.matching_ids(**filters),
                               key="library.select", every_label=f"Select all {total:,} matching")
    selection_bar.render(library, SCOPE)


def export_section(filters: dict, matching: int, filtered: bool) -> None:
    """Take the data away: originals + metadata.json in a zip (python -m ragkit import brings it back)."""
    with st.expander("Export", icon=":material/archive:"):
        what = "the images matching the filters above" if filtered else "the whole library"
        st.caption(f"A zip of {what}: the original files plus metadata.json with tags, dates and the "
                   "provenance of generated images. `python -m ragkit import FILE.zip` brings it back.")
        if st.button(f"Prepare a zip of {matching:,} images", key="library.export", icon=":material/archive:"):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = library.settings.data_dir / "exports" / f"ragkit-export-{stamp}.zip"
            with st.spinner("Packing the originals…"):
                report = export_library(library, out, filters=filters["filters"])
            st.session_state[K_EXPORT] = report.path
            if report.missing:
                st.warning(f"{len(report.missing)} image(s) had no original file and were left out; "
                           "run `python -m ragkit doctor --repair`.")
        path = st.session_state.get(K_EXPORT)
        if path and Path(path).is_file():
            archive = Path(path)
            # Read when clicked, not on every rerun: a whole-library zip can be gigabytes.
            st.download_button(f"Download {archive.name} ({archive.stat().st_size / 2**20:,.1f} MB)",
                               data=archive.read_bytes, file_name=archive.name,
                               mime="application/zip", key="library.export-download",
                               icon=":material/download:", type="primary")


def browse(total: int) -> None:
    tag_counts = dict(state.all_tags(library))
    # A tag can vanish (its last image deleted); keep the filter to tags that exist.
    if K_TAGS in st.session_state:
        st.session_state[K_TAGS] = [t for t in st.session_state[K_TAGS] if t in tag_counts]
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom", key="library-filters"):
        tags = st.multiselect("Tags", options=list(tag_counts), key=K_TAGS, persist_state="session", width=360,
                              format_func=lambda t: f"{t} ({tag_counts.get(t, 0):,})",
                              placeholder="Any tag" if tag_counts else "No tags yet")
        source_name = st.segmented_control("Source", list(SOURCES), default="All", required=True,
                                           key=K_SOURCE, persist_state="session")
        more = filter_controls.more_filters("library")
        per_page = st.selectbox("Per page", PAGE_SIZES, key=K_PER_PAGE, persist_state="session", width=110)
    filters = {"filters": filter_controls.combined(tags, SOURCES[source_name], more)}

    seen = repr((filters, per_page))
    if st.session_state.get(K_FILTERS_SEEN) != seen:  # new filters start at page 1
        st.session_state[K_FILTERS_SEEN] = seen
        PAGER.restart()
    page, current, pages = PAGER.fetch(per_page, lambda offset, limit: library.page(offset, limit, **filters))

    filtered = bool(filters["filters"])
    where = f" · page {current} of {pages}" if pages > 1 else ""
    if filtered:
        st.markdown(f"**{page.total:,}** of {total:,} images match{where}")
    else:
        st.markdown(f"**{total:,}** images, newest first{where}")
    if not page.assets:
        st.info("No images match these filters. Clear a tag, pick another source or loosen **More filters**.",
                icon=":material/filter_alt_off:")
        return
    select_row([a.sha256 for a in page.assets], page.total, filters)
    viewer.remember_order("library", [a.sha256 for a in page.assets])
    grid(page.assets, cell, key="library")
    PAGER.widget(pages)
    export_section(filters, page.total, filtered)


# --- the view switch ------------------------------------------------------------------------------
def view_switch(total: int) -> str:
    """Library (N) | Duplicates | Trash (N): shown once there is something in the library or the trash."""
    in_trash = library.trash_count()
    if not total and not in_trash:
        return "library"
    labels = {"library": f"Library ({total:,})", "duplicates": "Duplicates", "trash": f"Trash ({in_trash:,})"}
    return st.segmented_control("View", VIEWS, default="library", required=True, key=K_VIEW,
                                persist_state="session", format_func=labels.get, label_visibility="collapsed")


# --- the page ----------------------------------------------------------------------------------
st.title("Library")
with guard("loading the library"):
    collect_finished_upload()
    links.apply_asset_link(library)
    total = library.count()
    view = view_switch(total)
    if view == "trash":
        progress_slot = st.empty()
        library_trash.show(library)
    else:
        if total == 0:
            empty_state()
        upload_section(empty=total == 0)
        progress_slot = st.empty()
        report_section()
        if total and view == "duplicates":
            duplicates_view.show(library)
        elif total:
            captions.library_panel(library)
            browse(total)
    if st.session_state.get(state.OPEN_ASSET):
        details(st.session_state[state.OPEN_ASSET])
    links.write_asset_link()
    # Last, so the whole page is drawn and usable while it waits: a click anywhere interrupts the
    # wait, does its thing, and the next run waits again.
    wait_for_upload(progress_slot)
