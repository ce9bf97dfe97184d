"""Library: add images (drag and drop), browse them newest first, open one for details, export."""
import math
import time
from pathlib import Path

import streamlit as st

from ragkit.ingest import Upload
from ragkit.portable import export_library
from ragkit.records import SOURCE_GENERATED, SOURCE_UPLOAD, Asset, IngestReport
from ragkit.tags import normalise_tags
from ragkit.ui import duplicates_view, filter_controls, links, state, tray, uploads
from ragkit.ui.errors import guard, show_error
from ragkit.ui.grid import (grid, human_date, human_size, preview_bytes, short_name, show_thumbnail,
                            thumbnail_bytes)
from ragkit.ui.markdown import md_escape

SOURCES = {"All": None, "Uploaded": SOURCE_UPLOAD, "Generated": SOURCE_GENERATED}
PAGE_SIZES = [24, 48]

K_UPLOADER = "library.uploader"          # + a generation number: a new one empties the drop zone
K_UPLOAD_TAGS = "library.upload-tags"
K_REPORT = "library.report"             # the last upload's outcome (a summarize() dict)
K_UPLOAD_ERROR = "library.upload-error"  # (error, files checked, files) when an upload failed
K_TAGS = "library.tags"
K_SOURCE = "library.source"
K_PER_PAGE = "library.per-page"
K_PAGE = "library.page"                  # + a generation number: a new widget is how paging restarts
K_PAGING = "library.paging"              # (generation, the page that widget starts at)
K_FILTERS_SEEN = "library.filters-seen"
K_CONFIRM_DELETE = "library.confirm-delete"
K_EXPORT = "library.export-path"
POLL_S = 0.25  # how often the Library redraws an upload's progress (and can be left)

library = state.library()


# --- paging ----------------------------------------------------------------------------------
# st.pagination always has a default (page 1 when not given), and Streamlit logs "The widget with key
# ... was created with a default value but also had its value set via the Session State API" whenever
# its value is written through st.session_state, in a callback too. So the widget owns its value and
# this page only reads it; going back to page 1 (new filters, new images) or to the last page (the
# last one emptied) is a fresh widget: a new key, starting at its `default`.
def paging() -> tuple[str, int]:
    """The pagination widget's key and the page it starts at."""
    generation, start = st.session_state.get(K_PAGING, (0, 1))
    return f"{K_PAGE}.{generation}", start


def restart_paging(at_page: int = 1) -> None:
    """Show `at_page` next, in a new pagination widget."""
    generation, _ = st.session_state.get(K_PAGING, (0, 1))
    st.session_state.pop(f"{K_PAGE}.{generation}", None)  # the old widget's page is not needed again
    st.session_state[K_PAGING] = (generation + 1, at_page)


# --- adding images ---------------------------------------------------------------------------
def summarize(report: IngestReport) -> dict:
    """Each file's outcome, the ones that need attention first."""
    rows = [{"File": r.path, "Result": "Rejected", "Why": r.reason} for r in report.rejected]
    rows += [{"File": name, "Result": "Already in the library", "Why": f"same picture as {sha[:12]}…"}
             for name, sha in report.duplicates]
    rows += [{"File": name, "Result": "Added", "Why": f"{a.width}×{a.height}, {human_size(a.size_bytes)}"}
             for name, a in report.added]
    return {"added": len(report.added), "duplicates": len(report.duplicates),
            "rejected": len(report.rejected), "seconds": report.seconds, "rows": rows}


def add_images(files, tags_text: str) -> None:
    """Start the upload in the background (ui/uploads.py): leaving the page no longer stops it."""
    tags = [t for t in tags_text.split(",") if t.strip()]
    uploads.put(uploads.start(library, [Upload(f.name, f.getvalue()) for f in files], tags))
    for key in (K_REPORT, K_UPLOAD_ERROR):
        st.session_state.pop(key, None)
    # A new, empty drop zone: the job holds the bytes now, the old widget's files can go.
    st.session_state[K_UPLOADER] = st.session_state.get(K_UPLOADER, 0) + 1
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
    restart_paging()  # the new images are on the first page (newest first)


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
                   "For thousands of files use `python -m ragkit ingest FOLDER`.")
        tags_text = st.text_input("Tags for these images (optional, comma-separated)", key=K_UPLOAD_TAGS,
                                  placeholder="summer, campaign, hero")
        label = f"Add {len(files)} image{'s' if len(files) != 1 else ''} to the library" if files else "Add to the library"
        busy = uploads.running()
        if st.button(label, type="primary", disabled=not files or busy, icon=":material/add_photo_alternate:",
                     key="library.add", help="An upload is running; add more once it has finished." if busy else None):
            add_images(files, tags_text)


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
        summary = (f"**{report['added']} added** · {report['duplicates']} already in the library · "
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
            for other in library.store.other_collections():
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


def delete_controls(asset: Asset) -> None:
    if st.session_state.get(K_CONFIRM_DELETE) != asset.sha256:
        st.button("Delete…", key="library.delete", icon=":material/delete:",
                  on_click=lambda: st.session_state.__setitem__(K_CONFIRM_DELETE, asset.sha256))
        return
    st.warning(f"Delete **{md_escape(asset.filename)}** for good? Its original and thumbnail are removed "
               "from disk.", icon=":material/delete_forever:")
    yes, no = st.columns(2)
    if yes.button("Yes, delete", key="library.delete-confirm", type="primary", width="stretch"):
        with guard("deleting the image"):
            library.delete([asset.sha256])
            tray.remove(asset.sha256)
            state.mark_changed(library)
            close_details()
            st.toast(f"Deleted {md_escape(asset.filename)}", icon=":material/delete:")
            st.rerun()
    no.button("Cancel", key="library.delete-cancel", width="stretch",
              on_click=lambda: st.session_state.pop(K_CONFIRM_DELETE, None))


@st.dialog("Image details", width="large", on_dismiss=close_details)
def details(sha256: str) -> None:
    with guard("showing the image"):
        asset = library.get(sha256)
        picture, info = st.columns([3, 2], gap="medium")
        with picture:
            data = preview_bytes(library, sha256)
            if data:
                st.image(data, width="stretch", alt=asset.filename)
        with info:
            st.markdown(f"### {md_escape(asset.filename)}")
            asset_facts(asset)
            tag_editor(asset)
            if asset.is_generated:
                provenance(asset)
            tray.pick_toggle(asset.sha256, key_prefix="library.details", label="Use as a reference")
            has_original = library.blobs.original_path(sha256).is_file()
            with st.container(horizontal=True, gap="small"):
                if has_original:
                    st.download_button("Download original", data=lambda: library.original_bytes(sha256),
                                       file_name=asset.filename, mime=asset.mime or None, on_click="ignore",
                                       icon=":material/download:", key="library.download")
                if st.button("Find similar", key="library.find-similar", icon=":material/image_search:"):
                    state.find_similar(sha256)
            if not has_original:
                st.caption("The original file is missing; run `python -m ragkit doctor`.")
            delete_controls(asset)


# --- browsing ----------------------------------------------------------------------------------
def cell(asset: Asset) -> None:
    show_thumbnail(library, asset)
    badge = ":material/auto_awesome: " if asset.is_generated else ""
    st.caption(badge + md_escape(short_name(asset.filename)))
    st.button("Details", key=f"library.open.{asset.sha256}", on_click=open_details, args=(asset.sha256,),
              icon=":material/open_in_full:", type="tertiary")


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
        restart_paging()
    page_key, start = paging()
    current = st.session_state.get(page_key, start)  # the widget's page (from the last run), read only
    current = current if isinstance(current, int) and current >= 1 else start
    page = library.page((current - 1) * per_page, per_page, **filters)
    pages = max(1, math.ceil(page.total / per_page))
    if current > pages:  # e.g. the last image of the last page was deleted
        current = pages
        restart_paging(current)
        page_key, start = paging()
        page = library.page((current - 1) * per_page, per_page, **filters)

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
    grid(page.assets, cell, key="library")
    if pages > 1:
        st.pagination(pages, default=min(start, pages), key=page_key, persist_state="session",
                      max_visible_pages=9)
    export_section(filters, page.total, filtered)


# --- the page ----------------------------------------------------------------------------------
st.title("Library")
with guard("loading the library"):
    collect_finished_upload()
    links.apply_asset_link(library)
    total = library.count()
    if total == 0:
        empty_state()
    upload_section(empty=total == 0)
    progress_slot = st.empty()
    report_section()
    if total and duplicates_view.chosen():
        duplicates_view.show(library)
    elif total:
        browse(total)
    if st.session_state.get(state.OPEN_ASSET):
        details(st.session_state[state.OPEN_ASSET])
    links.write_asset_link()
    # Last, so the whole page is drawn and usable while it waits: a click anywhere interrupts the
    # wait, does its thing, and the next run waits again.
    wait_for_upload(progress_slot)
