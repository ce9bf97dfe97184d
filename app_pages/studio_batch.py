"""The Studio page's Batch tab: one brief x many products, in the background, then review.
A part of app_pages/studio.py, not a page of its own.

Top to bottom: "New batch" (the brief, the products: a tag or the tray, a brand kit, model, aspect,
variations, requests at a time, and what it will send and about cost, then Start); the job picker;
the picked job: what it makes, Stop / Resume / Retry failed / Delete, the progress (overall, ETA,
cost so far) and the results as a dense grid of product tiles (the product's shot, its variations) with Approve /
Reject / Undo (each tile reruns on its own), Approve all and a zip
of the approved ones.

The job runs in a background thread (ragkit.ui.batches) and writes its state to disk after every
request (ragkit.studio.batch); the progress part of this tab is a fragment that re-reads that
state every second while the job runs, so the rest of the page stays still and usable, and the
person can go to other pages: the job goes on, and the sidebar there says how far it got.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from ragkit.errors import RagkitError
from ragkit.ingest.images import decode_image, make_thumbnail
from ragkit.library import Library
from ragkit.studio import ASPECT_LABELS, batch, model_info
from ragkit.studio.cost import format_usd, prices_for, sum_costs
from ragkit.studio.kits import unusable_kit_message
from ragkit.ui import batches, state, tray
from ragkit.ui import models as models_ui
from ragkit.ui.errors import error_message, guard, show_error, show_message
from ragkit.ui.grid import inject_css, short_name, thumbnail_bytes
from ragkit.ui.markdown import md_escape

from app_pages.studio_kits import kit_picker

K_BRIEF = "batch.brief"
K_SOURCE = "batch.source"
K_TAG = "batch.tag"
K_WITH_TRAY = "batch.with-tray"
K_KIT = "batch.kit"
K_MODEL = "batch.model"
K_ASPECT = "batch.aspect"
K_SIZE = "batch.size"            # one widget per model: batch.size.<model id>
K_VARIATIONS = "batch.variations"
K_CONCURRENCY = "batch.concurrency"
K_WHEN = "batch.when"             # now, or half price through the Batch API
NOW, HALF_PRICE = "Now", "Half price, results within a day"
K_JOB = "batch.job"              # the job shown
K_JOB_NEXT = "batch.job-next"    # set by Start: the job to show on the next run
SOURCE_TAG = "Images with a tag"
SOURCE_TRAY = "The reference tray"
AUTO = "auto"
POLL_S = 1.0                     # how often a running job's progress is redrawn
PREVIEW_SIDE = 384
RESULT_COLUMNS = 2               # a tile's variations side by side (more wrap to the next row)
TILE_COLUMNS = 3                 # product tiles a row
PRODUCT_THUMB = 56               # the product's own shot at the top of its tile


# --- a new batch ---------------------------------------------------------------------------------
def new_batch(library: Library, store: batch.JobStore) -> None:
    settings = library.settings
    brief = st.text_area("Brief for every product", key=K_BRIEF, persist_state="session", height=100,
                         max_chars=4000, placeholder="The product on a pastel podium, soft studio light, "
                                                     "a few spring flowers, e-commerce hero shot")
    source = st.segmented_control("Products", [SOURCE_TAG, SOURCE_TRAY], default=SOURCE_TAG, required=True,
                                  key=K_SOURCE, help="Each product image is the first reference of its own requests.")
    tag, products, with_refs = None, [], []
    if source == SOURCE_TAG:
        counts = dict(library.all_tags())
        tag = st.selectbox("Tag", list(counts), index=None, placeholder="Choose the tag of the product shots",
                           format_func=lambda t: f"{t} ({counts.get(t, 0)})", key=K_TAG, width=360)
        if tray.count() and st.toggle(f"Also send the tray's {tray.count()} reference"
                                      f"{'s' if tray.count() != 1 else ''} with every product", key=K_WITH_TRAY):
            with_refs = tray.ids()
    else:
        products = tray.ids()
        st.caption(f"{len(products)} image{'s' if len(products) != 1 else ''} in the tray: each one is a product."
                   if products else "The tray is empty: pick product shots on the Search or Library page.")
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom", key="batch-options"):
        kit = kit_picker(library, K_KIT)
        model = models_ui.image_picker(settings, K_MODEL, width=200)
        ratios = [AUTO, *model_info(model).aspect_ratios]
        if st.session_state.get(K_ASPECT) not in (None, *ratios):
            st.session_state.pop(K_ASPECT)  # a ratio the model just picked doesn't offer
        aspect = st.selectbox("Aspect ratio", ratios, key=K_ASPECT, width=220,
                              format_func=lambda r: ("Auto, or the kit's" if r == AUTO else ASPECT_LABELS.get(r, r)))
        size = models_ui.size_picker(model, K_SIZE)
        variations = int(st.segmented_control("Variations per product", [1, 2, 3, 4], default=2, required=True,
                                              key=K_VARIATIONS))
        concurrency = int(st.number_input("Requests at a time", 1, batch.MAX_CONCURRENCY, batch.DEFAULT_CONCURRENCY, key=K_CONCURRENCY,
                                          width=160, help="More finishes sooner, until Gemini's rate limit "
                                                          "answers 429; then every request waits as Gemini asks."))
    when = st.segmented_control("When", [NOW, HALF_PRICE], default=NOW, required=True, key=K_WHEN,
                                help="Half price goes through Gemini's Batch API: one batch, answered within a day. "
                                     "The job waits for it even across restarts; Cancel is on the job.")
    gone = models_ui.gone_notice(settings, model, K_MODEL)
    spec, why = plan(library, brief, tag, products, with_refs, kit, variations, model, aspect, size,
                     half_price=when == HALF_PRICE)
    if spec is not None:
        refs = len(spec.references_for(spec.products[0]))
        estimate = prices_for(settings).estimate(spec.model, refs, len(spec.products) * spec.variations, spec.size)
        if spec.half_price and estimate is not None:
            estimate = estimate / 2
        skipped = f" · {len(spec.skipped)} skipped (not usable)" if spec.skipped else ""
        st.caption(f"{len(spec.products)} product{'s' if len(spec.products) != 1 else ''} × {spec.variations} = "
                   f"**{len(spec.products) * spec.variations} requests**, each with {refs} reference"
                   f"{'s' if refs != 1 else ''} (of {model_info(model).max_references}){skipped} · "
                   f"{spec.size or model_info(model).default_size} · "
                   + (f"about {format_usd(estimate)}" if estimate is not None else "price unknown"))
    elif why:
        st.warning(md_escape(why), icon=":material/info:")
    if not settings.gemini_api_key:
        why = "Add a Gemini API key first (see the top of the page)."
    if st.button("Start the batch", key="batch.start", type="primary", icon=":material/dynamic_feed:",
                 disabled=spec is None or gone or not settings.gemini_api_key, help=why):
        start(library, store, spec, concurrency)


def plan(library: Library, brief: str, tag: str | None, products: list[str], with_refs: list[str], kit,
         variations: int, model: str, aspect: str, size: str | None = None,
         half_price: bool = False) -> tuple[batch.BatchSpec | None, str | None]:
    """The job these choices make, or why there is none yet (None when the form is just not filled in)."""
    if not brief.strip() or (tag is None and not products):
        return None, None
    problem = unusable_kit_message(library, kit)
    if problem:
        return None, problem
    try:
        return batch.plan_batch(library, brief, tag=tag, ref_each=products, with_refs=with_refs, kit=kit,
                                variations=variations, model=model, aspect=None if aspect == AUTO else aspect,
                                size=size, half_price=half_price), None
    except RagkitError as exc:
        return None, error_message(exc)


def start(library: Library, store: batch.JobStore, spec: batch.BatchSpec, concurrency: int) -> None:
    with guard("starting the batch"):
        job = store.create(spec)
        if job.finished:
            st.toast("These products, brief and options made this job before: here it is. Change the brief or "
                     "the options for a new one.", icon=":material/history:")
        elif not store.is_running(job.id):
            batches.start(library, job.id, concurrency)
        st.session_state[K_JOB_NEXT] = job.id
        st.rerun()


# --- the jobs ------------------------------------------------------------------------------------
def job_label(job: batch.BatchJob) -> str:
    """'12-02 13:14 · The product on a pastel… · 6 x 2' (its progress is shown below, kept current)."""
    when = datetime.fromtimestamp(job.created_at / 1000).strftime("%m-%d %H:%M")
    return f"{when} · {short_name(job.spec.brief, 48)} · {len(job.spec.products)} × {job.spec.variations}"


def job_picker(jobs: list[batch.BatchJob]) -> str:
    ids = [job.id for job in jobs]
    if K_JOB_NEXT in st.session_state:
        st.session_state[K_JOB] = st.session_state.pop(K_JOB_NEXT)
    if st.session_state.get(K_JOB) not in ids:
        st.session_state[K_JOB] = ids[0]
    labels = {job.id: job_label(job) for job in jobs}
    return st.selectbox("Job", ids, key=K_JOB, format_func=lambda i: labels.get(i, i), width=520)


def job_section(library: Library, store: batch.JobStore, job_id: str) -> None:
    collect_outcome(job_id)
    job = store.load(job_id)
    live = store.is_running(job_id)
    spec = job.spec
    with st.container(border=True, key="batch-job-card"):
        st.markdown(f"> {md_escape(spec.brief)}")
        # Every value here was read back from the job's state file: shown literally, never as Markdown.
        kit = f" · kit {md_escape(str(spec.kit['name']))} v{md_escape(str(spec.kit['version']))}" if spec.kit else ""
        st.caption(f"Job {md_escape(job.id)} · {len(spec.products)} products × {md_escape(str(spec.variations))} · "
                   f"{md_escape(model_info(spec.model).label)} · aspect {md_escape(spec.aspect or 'auto')}{kit} · "
                   f"approved images get the tag {md_escape(job.tag)}")
        controls(library, store, job, live)
    if job.error and not live:
        show_message(f"The job stopped: {job.error} Fix it, then Resume: the images made so far are kept.")
    st.fragment(progress_and_review, run_every=POLL_S if live else None)(library, store, job_id, live)


def collect_outcome(job_id: str) -> None:
    """A run this session started that ended with an error (e.g. a reference gone): say so, once."""
    run = batches.started(job_id)
    if run is None or not run.done:
        return
    batches.forget(job_id)
    try:
        run.outcome()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message
        show_error(exc, "running the batch")


def controls(library: Library, store: batch.JobStore, job: batch.BatchJob, live: bool) -> None:
    counts = job.counts()
    here = batch.live_run(job.id)
    concurrency = int(st.session_state.get(K_CONCURRENCY, batch.DEFAULT_CONCURRENCY))
    with st.container(horizontal=True, gap="small", key="batch-controls"):
        if live and here is not None:
            st.button("Stop", key="batch.stop", on_click=batches.stop, args=(job.id,), icon=":material/stop_circle:",
                      disabled=here.stopping, help="Send no more requests; those on their way finish and are kept. "
                                                   "Resume later sends the rest.")
        elif live:
            st.caption(":material/sync: Running in another session or process.")
        if not live and counts[batch.PENDING]:
            if st.button(f"Resume ({counts[batch.PENDING]} to send)", key="batch.resume", type="primary",
                         icon=":material/play_arrow:", disabled=not library.settings.gemini_api_key):
                run_again(library, store, job.id, concurrency, retry_failed=False)
        if not live and counts[batch.FAILED]:
            if st.button(f"Retry the {counts[batch.FAILED]} failed", key="batch.retry", icon=":material/replay:",
                         disabled=not library.settings.gemini_api_key):
                run_again(library, store, job.id, concurrency, retry_failed=True)
        if job.remote_batch:
            st.caption(":material/schedule: Waiting for Gemini's half-price batch (results within a day).")
            if st.button("Cancel the half-price batch", key="batch.cancel-remote", icon=":material/cancel:"):
                with guard("cancelling the batch"):
                    batches.stop(job.id)
                    from ragkit.studio import half_price
                    half_price.cancel(store, job.id, library)
                    st.rerun()
        if not live:
            with st.popover("Delete job…", icon=":material/delete:"):
                st.caption("Delete this job and its images that were not approved? Approved images stay in the "
                           "library.")
                if st.button("Delete the job", key="batch.delete", type="primary"):
                    with guard("deleting the job"):
                        store.delete(job.id)
                        st.session_state.pop(K_JOB, None)
                        st.rerun()


def run_again(library: Library, store: batch.JobStore, job_id: str, concurrency: int, *, retry_failed: bool) -> None:
    if not store.is_running(job_id):
        batches.start(library, job_id, concurrency, retry_failed=retry_failed)
    st.rerun()


# --- progress and review (a fragment: redrawn every second while the job runs) --------------------
def progress_and_review(library: Library, store: batch.JobStore, job_id: str, was_live: bool) -> None:
    live = store.is_running(job_id)
    if was_live and not live:
        st.rerun()  # the whole app: the controls change, the polling stops
    try:
        job = store.load(job_id)
    except RagkitError as exc:
        show_error(exc)
        return
    counts = job.counts()
    finished = counts[batch.DONE] + counts[batch.FAILED]
    run = batch.live_run(job_id)
    line = batches.progress_line(job, run)
    if live:
        line = f":material/hourglass_top: {line}" + (" · stopping" if run and run.stopping else "")
    st.progress(finished / max(1, len(job.takes)), text=line)
    review_actions(library, store, job)
    inject_css()
    sending = run.sending() if run else None  # one snapshot per redraw: at most C "Drawing…"
    product_tiles(library, store, job, live, sending)


def review_actions(library: Library, store: batch.JobStore, job: batch.BatchJob) -> None:
    waiting = [t for t in job.takes if t.status == batch.DONE and not t.saved and t.review != batch.REJECTED]
    approved = [t for t in job.takes if t.review == batch.APPROVED]
    with st.container(horizontal=True, gap="small", key="batch-review-actions"):
        # No counts in these labels: a tile's Approve / Reject redraws that tile only, not this bar.
        if st.button("Approve all the rest", key="batch.approve-all", icon=":material/done_all:",
                     disabled=not waiting, help="Save every image not yet approved or rejected to the library."):
            with guard("approving the images"):
                with st.spinner("Saving the images…"):
                    saved = batch.approve_all(store, job.id, library)
                saved_changed(library, f"Saved {len(saved)} image{'s' if len(saved) != 1 else ''} with the "
                                       f"product's tags and the tag {job.tag}")
        st.download_button("Download the approved as zip", data=lambda: batch.approved_zip(store.load(job.id)),
                           file_name=f"{job.tag}.zip", mime="application/zip", key="batch.zip", on_click="ignore",
                           icon=":material/folder_zip:", help="The images approved so far, and a manifest.json.",
                           disabled=not approved and not any(t.status == batch.DONE for t in job.takes))


def product_tiles(library: Library, store: batch.JobStore, job: batch.BatchJob, live: bool,
                  sending: frozenset | None) -> None:
    """The products as a dense grid of tiles (TILE_COLUMNS a row): 10 products fit on a screen or two."""
    cells = st.grid(TILE_COLUMNS, gap="small", key="batch-tiles")
    for product, _ in job.products():
        with cells.cell():
            # A fragment per tile: Approve / Reject / Undo redraw this tile only, not the page.
            st.fragment(product_tile)(library, store, job.id, product, live, sending)


def product_tile(library: Library, store: batch.JobStore, job_id: str, product: str, live: bool,
                 sending: frozenset | None) -> None:
    """One product: a small shot, its name, state and cost, then its variations side by side."""
    try:
        job = store.load(job_id)  # re-read: this tile reruns on its own after a click
    except RagkitError as exc:
        show_error(exc)
        return
    takes = dict(job.products()).get(product, [])
    asset = next(iter(library.get_many([product])), None)
    status = batch.item_status(takes)
    badge = {"done": ":green-badge[Done]", "failed": ":red-badge[Failed]", "partial": ":orange-badge[Partly]",
             "pending": pending_badge(takes, live, sending)}[status]
    with st.container(border=True, key=f"batch-item-{product[:12]}"):
        with st.container(horizontal=True, gap="small", vertical_alignment="center"):
            data = thumbnail_bytes(library, product) if asset else None
            if data:
                st.image(data, width=PRODUCT_THUMB, alt=asset.filename)
            name = md_escape(short_name(asset.filename if asset else product[:12], 32))
            done = [t.cost_usd for t in takes if t.status == batch.DONE]
            cost = f" :small[{format_usd(sum_costs(done))}]" if done else ""
            st.markdown(f"**{name}**  \n{badge}{cost}", help=md_escape(asset.filename) if asset else None)
        with st.container(gap="small", key=f"batch-grid-{product[:12]}"):
            for first in range(0, len(takes), RESULT_COLUMNS):  # columns: they stay side by side in a tile
                for cell, take in zip(st.columns(RESULT_COLUMNS, gap="small"), takes[first:first + RESULT_COLUMNS]):
                    with cell:
                        take_cell(library, store, job, take, live, sending)


def pending_badge(takes: list[batch.Take], live: bool, sending: frozenset | None) -> str:
    """A product not finished: being drawn, queued, waiting (run elsewhere), or not sent (stopped)."""
    if not live:
        return ":gray-badge[Not sent]"
    if sending is None:
        return ":blue-badge[Waiting]"
    return ":blue-badge[Drawing…]" if any(t.key in sending for t in takes) else ":gray-badge[Queued]"


def pending_caption(take: batch.Take, live: bool, sending: frozenset | None) -> str:
    if not live:
        return "Not sent yet (Resume)"
    if sending is None:  # run by another session or process: only its state file is known here
        return ":material/hourglass_top: Waiting for the model…"
    return ":material/brush: Drawing…" if take.key in sending else ":material/schedule: Queued"


def take_cell(library: Library, store: batch.JobStore, job: batch.BatchJob, take: batch.Take, live: bool,
              sending: frozenset | None) -> None:
    key = f"{job.id}.{take.product[:12]}.{take.variation}"
    which = (library, store, job.id, take.product, take.variation)
    if take.status == batch.PENDING:
        st.caption(pending_caption(take, live, sending))
        return
    if take.status == batch.FAILED:
        st.caption(f":material/block: {md_escape(take.reason)}")
        return
    if take.review == batch.REJECTED:
        with st.container(horizontal=True, gap="xsmall", vertical_alignment="center"):
            st.caption(f":material/delete: Rejected · {format_usd(take.cost_usd)}", width="content")
            st.button("Undo", key=f"batch.restore.{key}", type="tertiary", icon=":material/undo:",
                      on_click=review_click, args=("restore", *which),
                      help="Bring it back to the review. A rejected image is kept until the job is deleted.")
        return
    preview = result_preview(library, job.image_path(take))
    if preview:
        st.image(preview, width="stretch", alt=f"Variation {take.variation + 1}")
    with st.container(horizontal=True, gap="xsmall", vertical_alignment="center"):
        if take.saved:
            st.caption(":material/check_circle: In the library", width="content")
        else:
            st.button("Approve", key=f"batch.approve.{key}", type="primary", icon=":material/check:",
                      on_click=review_click, args=("approve", *which))
            st.button("Reject", key=f"batch.reject.{key}", type="tertiary", icon=":material/close:",
                      on_click=review_click, args=("reject", *which),
                      help="Take it out of the review; Undo brings it back until the job is deleted.")
        st.caption(format_usd(take.cost_usd), width="content")


def review_click(action: str, library: Library, store: batch.JobStore, job_id: str, product: str,
                 variation: int) -> None:
    """Approve / Reject / Undo, run before the rerun of its tile (a fragment), so the tile draws the new state."""
    try:
        if action == "approve":
            batch.approve(store, job_id, product, variation, library)
            state.mark_changed(library)
            st.toast("Saved to the library", icon=":material/check:")
        elif action == "reject":
            batch.reject(store, job_id, product, variation)
        else:
            batch.restore(store, job_id, product, variation)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message, never a traceback
        st.toast(md_escape(f"{action.capitalize()} failed: {error_message(exc)}"), icon=":material/error:")


def saved_changed(library: Library, message: str) -> None:
    state.mark_changed(library)
    st.toast(md_escape(message), icon=":material/check:")
    st.rerun()  # the whole app: the sidebar's count too


@st.cache_data(max_entries=256, show_spinner=False)
def _preview(path: str, modified_ns: int, side: int, max_pixels: int) -> bytes:
    decoded = decode_image(Path(path).read_bytes(), max_pixels=max_pixels, min_long=side)
    return make_thumbnail(decoded.image, side=side, quality=85)


def result_preview(library: Library, path: Path) -> bytes | None:
    """A small JPEG of a result (redrawn every second while the job runs: never the whole PNG)."""
    try:
        return _preview(str(path), path.stat().st_mtime_ns, PREVIEW_SIDE, library.settings.max_image_pixels)
    except (OSError, RagkitError):
        return None


def damaged_job(store: batch.JobStore, broken) -> None:
    """A job whose state can't be read: what is wrong and what to do, and Delete."""
    with st.container(border=True):
        show_message(broken.message)
        if st.button("Delete this damaged job", key=f"batch.delete-damaged.{broken.id}", icon=":material/delete:"):
            with guard("deleting the job"):
                store.delete(broken.id)
                st.rerun()


# --- the tab -------------------------------------------------------------------------------------
def render(library: Library) -> None:
    store = batches.store(library)
    jobs, damaged = store.scan()
    st.caption("One brief for many products: every product shot is the first reference of its own requests, "
               "with the brand kit's references after it. The job runs in the background (go on working on "
               "other pages) and survives a restart: Resume sends only what is missing.")
    with st.expander("New batch", expanded=not jobs, icon=":material/add_circle:"):
        new_batch(library, store)
    for broken in damaged:
        damaged_job(store, broken)
    if not jobs:
        return
    job_id = job_picker(jobs)
    job_section(library, store, job_id)

