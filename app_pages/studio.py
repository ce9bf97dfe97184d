"""Studio: references + a brief -> Nano Banana -> new images, saved back to the library with provenance.

The screen, top to bottom: the brief (presets, model, aspect ratio, variations, Generate) beside
the reference tray (with "Suggest references", the retrieval half of the loop); the last
generation's results (Save to library, Download); the history of generated images ("use as
reference").

What survives a rerun lives in ``st.session_state``: the brief and the options (widgets with
``persist_state="session"``, so a trip to the Search page for more references keeps them), the
last generation and which of its images were saved, the last error, the suggestions. A failed
generation only replaces the error: the brief, the tray and earlier results stay.

Generate starts a background job (``ragkit.jobs.thread.Job``, kept by ``ragkit/ui/pending.py``) and the page
polls it at the very end of its run, so the page stays usable and the user can leave the Studio
while the model works; coming back picks the job up again.

Three tabs, of which only the open one runs: Generate (the above), Batch (one brief x many products,
app_pages/studio_batch.py) and Brand kits (app_pages/studio_kits.py). A kit picked for Generate adds
its style, words to avoid and references; its references count against the model's limit.
"""
import uuid
from dataclasses import dataclass, field

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ragkit.config import Settings, redact_uri
from ragkit.jobs.thread import Job
from ragkit.library import Library
from ragkit.records import Asset, SearchHit
from ragkit.rights import blocked_as_reference, now_ms
from ragkit.studio import (ASPECT_LABELS, DEFAULT_ENDPOINT, PRESET_BRIEFS, Generation, Kit, ModelInfo,
                           file_name_for, generate_from, model_info, recent_generated, save_generated_image, suggest_references, too_many_references)
from ragkit.studio.cost import CostLedger, format_usd
from ragkit.studio.drafts import KEEP_RESULTS
from ragkit.studio.kits import unusable_kit_message
from ragkit.tags import parse_tag_list
from ragkit.ui import models as models_ui
from ragkit.ui import drafts, edit_panel, pending, state, tray
from ragkit.ui.errors import error_message, guard, show_message
from ragkit.ui.grid import grid, inject_css, score_label, short_name, show_thumbnail, thumbnail_bytes
from ragkit.ui.markdown import md_escape

from app_pages import studio_batch, studio_kits

# Session-state keys (widgets and page state).
K_BRIEF = "studio.brief"
K_MODEL = "studio.model"
K_ASPECT = "studio.aspect"
K_SIZE = "studio.size"                # one widget per model: studio.size.<model id>
K_VARIATIONS = "studio.variations"
K_SAVE_TAGS = "studio.save-tags"
K_RESULT = "studio.result"            # the last successful generation (a StudioResult)
K_ERROR = "studio.error"              # the last failure's message, until the next Generate
K_SUGGESTIONS = "studio.suggestions"  # (brief, hits) from "Suggest references"
K_KIT = "studio.kit"                  # the brand kit picked for Generate
K_TAB = "studio.tab"                  # the tab widget
K_TAB_SHOWN = "studio.tab-shown"      # the tab to open when coming back to the Studio
K_EARLIER = "studio.earlier"          # the generations before the last one (StudioResults, newest first)
TABS = ("Generate", "Batch", "Brand kits")

AUTO_ASPECT = "auto"
ASPECT_CHOICES = {AUTO_ASPECT: "Auto (model decides)", **ASPECT_LABELS}
VARIATION_CHOICES = [1, 2, 3, 4]
SUGGESTIONS = 8
HISTORY = 8
POLL_S = 0.25  # how often a waiting Studio page redraws the progress (and can be left)


@dataclass
class StudioResult:
    """One Generate click's outcome, kept in the session so reruns (Save, Download) keep it."""
    generation: Generation
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # fresh widget keys per result
    saved: dict[int, str] = field(default_factory=dict)  # image index -> library sha256


# --- callbacks ---------------------------------------------------------------------------------
def use_brief(text: str) -> None:
    st.session_state[K_BRIEF] = text


def clear_suggestions() -> None:
    st.session_state.pop(K_SUGGESTIONS, None)


def dismiss_error() -> None:
    st.session_state.pop(K_ERROR, None)


def open_in_library(sha256: str) -> None:
    """Show this asset's details (with its provenance) on the Library page."""
    st.session_state[state.OPEN_ASSET] = sha256
    st.switch_page(state.LIBRARY_PAGE)


def keep_result(result: StudioResult) -> None:
    """A new generation becomes the Results; the one before moves to Earlier results (a few are kept,
    on the server too, so a reload or a new tab offers them back)."""
    previous = st.session_state.get(K_RESULT)
    earlier = [r for r in ([previous] if previous else []) + st.session_state.get(K_EARLIER, [])
               if len(r.saved) < len(r.generation.images)]  # only ones with something left to save
    st.session_state[K_EARLIER] = earlier[:KEEP_RESULTS - 1]
    st.session_state[K_RESULT] = result
    drafts.keep_result(state.settings(), result.generation, result.id)


def restore_draft() -> None:
    """'Restore': the brief, the tray and the kept results come back as they were."""
    draft = drafts.take_offer()
    if draft is None:
        return
    results = [StudioResult(kept.generation, id=kept.id, saved=dict(kept.saved)) for kept in draft.results]
    if results:
        st.session_state[K_RESULT] = results[0]
        st.session_state[K_EARLIER] = results[1:]


# --- sections ----------------------------------------------------------------------------------
def draft_offer(settings: Settings) -> None:
    """After a reload or in a new tab: offer back the work kept on the server."""
    problem = drafts.problem()
    if problem:
        st.warning(md_escape(problem), icon=":material/restore_page:")
    draft = drafts.offered()
    if draft is None:
        return
    parts = []
    if draft.brief.strip():
        parts.append(f"the brief “{md_escape(short_name(draft.brief, 60))}”")
    if draft.tray:
        parts.append(f"{len(draft.tray)} reference{'s' if len(draft.tray) != 1 else ''}")
    if draft.results:
        images = sum(len(r.generation.images) for r in draft.results)
        parts.append(f"{images} result{'s' if images != 1 else ''} not saved yet")
    with st.container(border=True, key="studio-draft-offer"):
        st.markdown(f":material/restore: **Your earlier work is kept:** {', '.join(parts)}.")
        st.caption(drafts.LIMITS)
        with st.container(horizontal=True, gap="small"):
            st.button("Restore", key="studio.draft-restore", on_click=restore_draft, type="primary",
                      icon=":material/restore:")
            st.button("Start fresh", key="studio.draft-discard", on_click=drafts.discard_offer, args=(settings,),
                      type="tertiary", icon=":material/delete_sweep:", help="Let the kept work go.")


def key_help() -> None:
    """Without a key: say what is missing and how to add it (the rest of the page still works)."""
    with st.container(border=True, key="studio-no-key"):
        st.markdown("#### :material/key_off: Add a Gemini API key to generate images")
        st.markdown(
            "The Studio sends your brief and references to Google's Nano Banana image model, which needs an "
            "API key. Get one at [aistudio.google.com/apikey](https://aistudio.google.com/apikey), then either "
            "set it in the environment and restart the app:")
        st.code("export GEMINI_API_KEY=your-key\nstreamlit run app.py", language="bash")
        st.markdown("or add this line to `.streamlit/secrets.toml` (never commit that file) and reload the page:")
        st.code('GEMINI_API_KEY = "your-key"', language="toml")
        st.caption("Meanwhile you can write briefs, pick and suggest references; Library and Search work as "
                   "usual. To try the Studio offline, run the bundled fake server "
                   "(`python -m devtools.fake_gemini --port 8765`) and start the app with "
                   "`RAGKIT_GEMINI_BASE_URL=http://127.0.0.1:8765 GEMINI_API_KEY=fake-key`.")


def presets() -> None:
    with st.container(horizontal=True, gap="small", key="studio-presets"):
        for number, preset in enumerate(PRESET_BRIEFS):
            st.button(preset.label, key=f"studio.preset.{number}", on_click=use_brief, args=(preset.text,),
                      help=preset.text, type="secondary", icon=":material/bolt:")


def options_row(library: Library, settings: Settings) -> tuple[str, str | None, Kit | None, str | None]:
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom", key="studio-options"):
        model = models_ui.image_picker(settings, K_MODEL, persist=True)
        info = model_info(model)
        ratios = [AUTO_ASPECT, *info.aspect_ratios]
        if st.session_state.get(K_ASPECT) not in (None, *ratios):
            st.session_state.pop(K_ASPECT)  # a ratio the model just picked doesn't offer
        aspect = st.selectbox("Aspect ratio", ratios, format_func=lambda r: ASPECT_CHOICES.get(r, r),
                              key=K_ASPECT, persist_state="session", width=240)
        size = models_ui.size_picker(model, K_SIZE)
        kit = studio_kits.kit_picker(library, K_KIT)
    if kit and kit.aspect and aspect == AUTO_ASPECT:
        st.caption(f"Aspect ratio: the kit's {kit.aspect}.")
    return model, (None if aspect == AUTO_ASPECT else aspect), kit, size


def brief_section(library: Library, settings: Settings,
                  tray_count: int) -> tuple[str, str, str | None, int, Kit | None, bool]:
    """Presets, the brief, the options and Generate; returns (brief, model, aspect, variations, kit, clicked, size)."""
    st.subheader("Brief")
    presets()
    brief = st.text_area("What should the new image show?", key=K_BRIEF, persist_state="session", height=130,
                         placeholder="A model wearing these sneakers on a sunny beach, golden hour, editorial "
                                     "photo", max_chars=4000)
    model, aspect, kit, size = options_row(library, settings)
    gone = models_ui.gone_notice(settings, model, K_MODEL)
    info = model_info(model)
    kit_refs = len(kit.reference_ids) if kit else 0
    warning = too_many_references(tray_count + kit_refs, info)
    if warning:
        with_kit = f"With the kit's {kit_refs} reference{'s' if kit_refs != 1 else ''}: " if kit_refs else ""
        st.warning(md_escape(with_kit + warning), icon=":material/filter_9_plus:")
    kit_problem = unusable_kit_message(library, kit)
    if kit_problem:
        st.warning(md_escape(kit_problem), icon=":material/warning:")
    has_key = bool(settings.gemini_api_key)
    why = None
    if not has_key:
        why = "Add a Gemini API key first (see above)."
    elif gone:
        why = "This model is no longer offered: switch to a live one (see above)."
    elif warning:
        why = "Too many references for this model (see above)."
    elif kit_problem:
        why = "The brand kit can't be used (see above)."
    elif pending.running():
        why = "Images are on their way (see below). Generate again once they are here."
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom", key="studio-generate-row"):
        variations = int(st.segmented_control(
            "Variations", VARIATION_CHOICES, default=1, required=True, key=K_VARIATIONS, persist_state="session",
            help="How many images to ask for (one request each, in parallel)."))
        clicked = st.button(f"Generate {variations} image{'s' if variations != 1 else ''}", key="studio.generate",
                            type="primary", icon=":material/auto_awesome:", disabled=why is not None, help=why)
    endpoint = redact_uri(settings.gemini_base_url) if settings.gemini_base_url else None
    if endpoint and endpoint != DEFAULT_ENDPOINT:
        st.caption(f":material/dns: Endpoint `{endpoint}` (RAGKIT_GEMINI_BASE_URL)")
    size_note = f" at {size}" if size else ""
    st.caption(f":material/payments: {info.label}{size_note}: "
               f"{models_ui.per_image_price(settings, model, tray_count + kit_refs, size)}")
    return brief, model, aspect, variations, kit, clicked, size


def start_generation(library: Library, settings: Settings, brief: str, model: str, aspect: str | None,
                     variations: int, kit: Kit | None, size: str | None = None) -> None:
    """Send the brief and the tray to the model in a background job (see ragkit.jobs.thread), then redraw."""
    if pending.running():  # a second click while one runs: never pay twice
        return
    st.session_state.pop(K_ERROR, None)
    try:
        generator = state.generator(settings)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message
        st.session_state[K_ERROR] = error_message(exc, "generating")
        return
    picked = tray.ids()

    def work(progress):  # reading and shrinking the references is part of the wait, not of the click
        return generate_from(library, generator, brief, picked, model=model, aspect_ratio=aspect,
                             variations=variations, on_progress=progress, kit=kit, size=size)

    job = Job.start(work, name="nano-banana-job")
    pending.put(pending.PendingGeneration(job, model_info(model).label, variations, len(picked)))
    st.rerun()  # draw the page again with Generate disabled and the progress below it


def stop_waiting() -> None:
    """'Stop waiting': forget the job (its requests may still finish on Google's side)."""
    if pending.take() is not None:
        st.toast("Stopped waiting. Requests already sent may still finish and count against your quota.",
                 icon=":material/hourglass_disabled:")


def wait_for_generation(slot: DeltaGenerator) -> None:
    """Show the running generation's progress in `slot` until it ends; its outcome goes to session state.

    The work runs in its own thread, so this loop only polls: every poll draws the bar, which is
    a point where Streamlit can stop this run when the user goes to another page. The job keeps
    running meanwhile, and coming back to the Studio picks it up again.
    """
    job_in_flight = pending.get()
    if job_in_flight is None:
        return
    job = job_in_flight.job
    count = job_in_flight.references
    sources = f"the brief and {count} reference{'s' if count != 1 else ''}" if count else "the brief alone"
    # A line saying what is happening, and a bar counting finished variations with a clock (not a
    # spinner: it shows only after a delay, and coming back to the page restarts its clock).
    with slot.container(border=True, key="studio-progress"):
        st.markdown(f":material/hourglass_top: **Generating {job_in_flight.noun} with "
                    f"{md_escape(job_in_flight.model_label)}** from {sources}. You can browse other pages "
                    "meanwhile: the results wait here.")
        bar = st.progress(0.0)
        st.button("Stop waiting", key="studio.stop-waiting", on_click=stop_waiting, type="tertiary",
                  icon=":material/close:", help="Forget this generation and get the Generate button back. "
                  "Requests already sent may still finish on Google's side and count against your quota.")
        while not job.wait(POLL_S):
            done, total = job.progress
            total = total or job_in_flight.variations
            bar.progress(done / total, text=f"{done} of {total} finished · {job.elapsed:.0f} s")
    if pending.take() is not job_in_flight:  # "Stop waiting" won the race
        return
    try:
        keep_result(StudioResult(job.outcome()))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message; the brief and tray stay
        st.session_state[K_ERROR] = error_message(exc, "generating")
    st.rerun()  # Generate was drawn disabled above this: draw the page again with the outcome


def suggest_section(library: Library, brief: str) -> None:
    """The retrieval half of the loop: library images that match the brief itself."""
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key="studio-suggest-row"):
        if st.button("Suggest references", key="studio.suggest", icon=":material/manage_search:",
                     help="Search the library for images that match the brief, to add them to the tray."):
            if not brief.strip():
                st.session_state[K_SUGGESTIONS] = ("", [])
            else:
                with guard("suggesting references"):
                    with st.spinner("Searching the library…"):
                        hits = suggest_references(library, brief.strip(), k=SUGGESTIONS, exclude=tray.ids())
                    st.session_state[K_SUGGESTIONS] = (brief.strip(), hits)
        if K_SUGGESTIONS in st.session_state:
            st.button("Hide", key="studio.suggest-hide", on_click=clear_suggestions, type="tertiary",
                      icon=":material/close:")
    remembered = st.session_state.get(K_SUGGESTIONS)
    if not remembered:
        return
    for_brief, hits = remembered
    if not for_brief:
        st.info("Write a brief first: the suggestions are the library images that match it.",
                icon=":material/edit_note:")
        return
    if not hits:
        st.info("No library images to suggest. Add images on the Library page.", icon=":material/photo_library:")
        return
    st.caption(f"Library images that match “{md_escape(short_name(for_brief, 60))}”: switch on the ones to use.")

    def cell(hit: SearchHit) -> None:
        show_thumbnail(library, hit.asset)
        st.caption(f":orange-badge[{score_label(hit.score)}] {md_escape(short_name(hit.asset.filename, 18))}")
        tray.pick_toggle(hit.asset.sha256, key_prefix="studio.suggest")

    grid(hits, cell, key="studio-suggest", min_column_width=120)


def references_section(library: Library, info: ModelInfo, brief: str, kit: Kit | None) -> None:
    picked = tray.assets(library)
    kit_refs = len(kit.reference_ids) if kit else 0
    used = len(picked) + kit_refs
    over = used > info.max_references
    count = f":red[{len(picked)}]" if over else f"{len(picked)}"
    from_kit = f" + {kit_refs} from the kit" if kit_refs else ""
    with st.container(horizontal=True, vertical_alignment="bottom", key="studio-refs-header"):
        st.subheader(f"References · {count}{from_kit} of {info.max_references}")
        st.space("stretch")
        if picked:
            st.button("Clear all", key="studio.clear", on_click=tray.clear, icon=":material/clear_all:",
                      type="tertiary")
    left = info.max_references - used
    st.caption(f"{left} slot{'s' if left != 1 else ''} left for references" if left > 0 else
               "No slot left for references" if left == 0 else
               f"{-left} reference{'s' if left != -1 else ''} too many for {md_escape(info.label)}")
    if picked:
        tray.render_grid(library, key="studio")
    else:
        st.caption("No references: the model works from the brief alone. Pick images on the Search page, "
                   "let the Studio suggest some for your brief, or use an earlier result (History, below).")
        st.page_link(state.SEARCH_PAGE, label="Find references on the Search page", icon=":material/image_search:")
    suggest_section(library, brief)


def error_section() -> None:
    message = st.session_state.get(K_ERROR)
    if message is None:
        return
    with st.container(key="studio-error"):
        show_message(message)
        st.button("Dismiss", key="studio.dismiss-error", on_click=dismiss_error, type="tertiary",
                  icon=":material/close:")


def reference_strip(library: Library, sha256s, *, key: str, columns: int = 8, width: int = 44) -> None:
    """Small thumbnails of the references an image was made from."""
    refs = library.get_many(list(sha256s)) if sha256s else []
    if not refs:
        return
    inject_css()
    with st.container(horizontal=True, gap="xsmall", key=f"ragkit-tray-{key}"):
        for ref in refs[:columns]:
            data = thumbnail_bytes(library, ref.sha256)
            if data:
                st.image(data, width=width, alt=ref.filename)
    missing = len(sha256s) - len(refs)
    if missing:
        st.caption(f"{missing} reference{'s' if missing != 1 else ''} since deleted")


def save_result(library: Library, result: StudioResult, index: int, tags: list[str]) -> None:
    generation = result.generation
    image = generation.images[index]
    with guard("saving the image"):
        with st.spinner("Saving…"):
            asset = save_generated_image(library, generation, image, tags=tags,
                                         name=file_name_for(generation.prompt, index, image.mime))
        result.saved[index] = asset.sha256
        drafts.mark_saved(library.settings, result.id, index, asset.sha256)
        state.mark_changed(library)
        st.toast(f"Saved {md_escape(asset.filename)} to the library", icon=":material/check:")
        st.rerun()


def results_section(library: Library) -> None:
    result: StudioResult | None = st.session_state.get(K_RESULT)
    if result is None:
        return
    st.divider()
    st.subheader("Results")
    tags_text = st.text_input("Tags for saved images (optional, comma-separated)", key=K_SAVE_TAGS,
                              persist_state="session", placeholder="summer, campaign", width=420)
    tags = parse_tag_list(tags_text)
    result_block(library, result, tags)
    earlier: list[StudioResult] = st.session_state.get(K_EARLIER, [])
    if earlier:
        with st.expander(f"Earlier results ({len(earlier)}), not all saved", icon=":material/history:"):
            st.caption("The generations before the last one. " + (drafts.LIMITS if drafts.kept_here() else
                       "They are kept while this tab is open."))
            for older in earlier:
                result_block(library, older, tags)


def result_block(library: Library, result: StudioResult, tags: list[str]) -> None:
    """One generation's facts, brief, notes and images (Save, Edit, Download on each)."""
    generation = result.generation
    info = model_info(generation.model)
    count = len(generation.images)
    aspect = generation.aspect_ratio or "auto"
    tokens = generation.usage.get("total_tokens", 0)
    cost = generation.details.get("cost_usd")
    each = f" (about {format_usd(cost / count)} each)" if cost is not None and count > 1 else ""
    kit = (f" · kit {md_escape(generation.details['kit'])} v{generation.details['kit_version']}"
           if "kit" in generation.details else "")
    size = f" · {generation.size}" if generation.size else ""
    st.caption(f"{count} image{'s' if count != 1 else ''} · {md_escape(info.label)} · aspect {aspect}{size} · "
               f"{generation.seconds:.1f} s" + (f" · {tokens:,} tokens" if tokens else "")
               + (f" · cost {format_usd(cost)}{each}" if "cost_usd" in generation.details else "") + kit)
    latest = result is st.session_state.get(K_RESULT)
    with st.container(border=True, key="studio-result-brief" if latest else f"studio-result-brief-{result.id}"):
        st.markdown(f"> {md_escape(generation.prompt)}")
        if generation.reference_ids:
            st.caption(f"Made from {len(generation.reference_ids)} reference"
                       f"{'s' if len(generation.reference_ids) != 1 else ''}:")
            reference_strip(library, generation.reference_ids, key=f"result-refs-{result.id}")
    for note in generation.warnings:  # they can quote the server
        st.warning(md_escape(note), icon=":material/warning:")
    if generation.text:
        with st.expander("The model's note", icon=":material/chat:"):
            st.markdown(md_escape(generation.text))

    def cell(index: int) -> None:
        image = generation.images[index]
        name = file_name_for(generation.prompt, index, image.mime)
        st.image(image.data, width="stretch", alt=f"Generated image {index + 1}")
        with st.container(horizontal=True, gap="small", key=f"studio-result-actions-{result.id}-{index}"):
            saved = result.saved.get(index)
            if saved:
                if st.button("In the library", key=f"studio.open.{result.id}.{index}", icon=":material/check_circle:",
                             help="Saved with its brief, model and references. Click to open it in the Library."):
                    open_in_library(saved)
            elif st.button("Save to library", key=f"studio.save.{result.id}.{index}", type="primary",
                           icon=":material/library_add:"):
                save_result(library, result, index, tags)
            st.button("Edit", key=f"studio.edit.{result.id}.{index}", icon=":material/edit:",
                      on_click=edit_panel.open_result, args=(image, generation.model, generation.prompt, saved),
                      help="Change this image in a conversation with the model: “make the background blue”.")
            st.download_button("Download", data=image.data, file_name=name, mime=image.mime, on_click="ignore",
                               key=f"studio.download.{result.id}.{index}", icon=":material/download:")

    # Not the thumbnail grid (square tiles): results keep their aspect ratio, two or three a row.
    cells = st.grid(3 if count == 3 else 2, min_column_width=280, border=True, gap="small",
                    key=f"studio-results-{result.id}")
    for index in range(count):
        with cells.cell():
            cell(index)


def history_section(library: Library) -> None:
    st.divider()
    st.subheader("History")
    recent = recent_generated(library, limit=HISTORY)
    if not recent:
        st.caption("Images you save from the Studio appear here, with their brief, model and references.")
        return
    st.caption("The latest generated images in the library. Switch one on to use it as a reference.")

    def cell(asset: Asset) -> None:
        show_thumbnail(library, asset)
        # Markdown, not a caption: the grid's captions are cut to one line, and the brief matters here.
        model = model_info(asset.model).label if asset.model else "?"
        st.markdown(f":violet-badge[{md_escape(model)}] "
                    f":small[{md_escape(short_name(asset.prompt or asset.filename, 120))}]",
                    help=md_escape(asset.prompt) if len(asset.prompt) > 120 else None)
        reference_strip(library, asset.reference_ids, key=f"history-refs-{asset.sha256}", columns=6, width=32)
        tray.pick_toggle(asset.sha256, key_prefix="studio.history", label="Use as reference",
                         blocked=blocked_as_reference(asset, now_ms()))
        with st.container(horizontal=True, gap="small"):
            if asset.prompt:
                st.button("Reuse brief", key=f"studio.reuse.{asset.sha256}", on_click=use_brief,
                          args=(asset.prompt,), type="tertiary", icon=":material/edit_note:")
            if st.button("Details", key=f"studio.details.{asset.sha256}", type="tertiary",
                         icon=":material/open_in_full:"):
                open_in_library(asset.sha256)
            if st.button("Edit", key=f"studio.history-edit.{asset.sha256}", type="tertiary", icon=":material/edit:"):
                with guard("opening the edit"):
                    edit_panel.open_asset(library, library.settings, asset.sha256, from_studio=True)

    grid(recent, cell, key="studio-history", min_column_width=200)


def spent_caption(library: Library) -> None:
    """What this library's generations cost so far (every process's, from the ledger)."""
    spent = CostLedger(library.settings.data_dir).totals()
    if spent.generations or spent.damaged or spent.problem:
        st.caption(f":material/payments: {format_usd(spent.known_cost)}{md_escape(spent.summary())} spent on {spent.generations:,} "
                   f"generation{'s' if spent.generations != 1 else ''} in this library so far, kept or not "
                   "(Google's list prices).")


def generate_tab(library: Library, settings: Settings) -> None:
    draft_offer(settings)
    with guard("showing the edit"):
        edit_panel.render(library, settings)
    left, right = st.columns([3, 2], gap="large")
    with left:  # (the sidebar, drawn before the page, has already dropped references deleted meanwhile)
        brief, model, aspect, variations, kit, clicked, size = brief_section(library, settings, tray.count())
    with right:
        with guard("showing the references"):
            references_section(library, model_info(model), brief, kit)
        progress_slot = st.empty()
    if clicked:
        start_generation(library, settings, brief, model, aspect, variations, kit, size)
    error_section()
    with guard("showing the results"):
        results_section(library)
    with guard("showing the history"):
        history_section(library)
    # Last, so the whole tab (earlier results, history, tray) is drawn and usable while it waits:
    # a click anywhere interrupts the wait, does its thing, and the next run waits again.
    wait_for_generation(progress_slot)


# --- the page ----------------------------------------------------------------------------------
library = state.library()
settings = state.settings()
st.title("Studio")
st.caption("Pick references, write a brief, and let Google's Nano Banana make new images from them. "
           "Keep the good ones: they go into the library with their brief, model and references.")
with guard("reading what generations cost"):
    spent_caption(library)
if not settings.gemini_api_key:
    key_help()
# Only the open tab runs (on_change): a Batch tab's progress doesn't cost the Generate tab anything.
asked = {"generate": TABS[0], "batch": TABS[1], "kits": TABS[2]}.get(st.query_params.get("tab", ""))  # a link's
generate, batch_tab, kits_tab = st.tabs(TABS, key=K_TAB, default=asked or st.session_state.get(K_TAB_SHOWN, TABS[0]),
                                        on_change="rerun")
st.session_state[K_TAB_SHOWN] = st.session_state[K_TAB]  # coming back to the Studio opens the same tab
if generate.open:
    with generate:
        generate_tab(library, settings)
if batch_tab.open:
    with batch_tab, guard("showing the batch jobs"):
        studio_batch.render(library)
if kits_tab.open:
    with kits_tab, guard("showing the brand kits"):
        studio_kits.render(library)
