"""Search: by words, by an example image, or "more like this"; pick hits as references."""
import hashlib
from functools import partial

import streamlit as st

from ragkit.records import SOURCE_GENERATED, SOURCE_UPLOAD, Asset, SearchHit
from ragkit.rights import blocked_as_reference, now_ms
from ragkit.ui import filter_controls, links, search_extras, selection, selection_bar, state, tray, uploads, viewer
from ragkit.ui.errors import guard
from ragkit.ui.grid import (example_preview, grid, human_date, human_size, name_caption, rights_badges, score_label,
                            show_thumbnail, tags_caption, thumbnail_bytes)
from ragkit.ui.markdown import md_escape

SOURCES = {"All": None, "Uploaded": SOURCE_UPLOAD, "Generated": SOURCE_GENERATED}
SORTS = ["Best match", "Newest"]
DEFAULT_K = 6
MAX_K = 50

K_TEXT = "search.text"
K_EXAMPLE = "search.example"
K_K = "search.k"
K_TAGS, K_SOURCE, K_MIN_SCORE = search_extras.K_TAGS, search_extras.K_SOURCE, search_extras.K_MIN_SCORE
K_SORT = "search.sort"
K_RESULTS = "search.results"
SCOPE = "search"  # the selection of this page (ragkit.ui.selection)
LINK = links.SearchPage(text=K_TEXT, k=K_K, tags=K_TAGS, source=K_SOURCE, sources=SOURCES,
                        default_k=DEFAULT_K, max_k=MAX_K)  # what the URL sets (ragkit.ui.links)

library = state.library()


def more_like(sha256: str) -> None:
    search_extras.start_fresh(keep_filters=True)  # the filters were set on this search; the words were not
    st.session_state[state.SIMILAR_TO] = sha256
    st.session_state[state.SEARCH_MODE] = state.MODE_SIMILAR


def clear_similar() -> None:
    st.session_state.pop(state.SIMILAR_TO, None)
    st.session_state[state.SEARCH_MODE] = state.MODE_TEXT


def query_section():
    """The query as (kind, value, description, how), or None when there is nothing to search for yet;
    `how`: words too (text), or the words that move the example (image, similar)."""
    # The mode is also set from other pages ("Find similar"), so it lives in session state.
    st.session_state.setdefault(state.SEARCH_MODE, state.MODE_TEXT)
    mode = st.segmented_control("Search by", [state.MODE_TEXT, state.MODE_IMAGE, state.MODE_SIMILAR],
                                required=True, key=state.SEARCH_MODE, persist_state="session")
    if mode == state.MODE_TEXT:
        text = st.text_input("Describe what you are looking for", key=K_TEXT, persist_state="session",
                             placeholder="red silk cape or SKU-4471", icon=":material/search:")
        words_too = search_extras.words_too_toggle(library)
        return ("text", text.strip(), f"“{text.strip()}”", {"keywords": words_too}) if text.strip() else None
    if mode == state.MODE_IMAGE:
        example = st.file_uploader("Drop an example image", key=K_EXAMPLE,
                                   help="Find library images that look like this one. It is not added to the library.")
        if example is None:
            return None
        data = example.getvalue()
        st.image(example_preview(library, data), width=160, caption="Your example")
        compose = search_extras.composed_inputs()
        return ("image", data, search_extras.composed_description(f"images like {example.name}", compose), compose)
    sha = st.session_state.get(state.SIMILAR_TO)
    if not sha:
        st.info("Open an image in the **Library** and choose **Find similar**, or click **More like this** "
                "under any result.", icon=":material/image_search:")
        return None
    asset = library.get(sha)
    with st.container(border=True, horizontal=True, vertical_alignment="center", key="search-similar-card"):
        data = thumbnail_bytes(library, sha)
        if data:
            st.image(data, width=96)
        st.markdown(f"More like **{md_escape(asset.filename)}**")
        st.button("Clear", key="search.clear-similar", on_click=clear_similar, icon=":material/close:",
                  type="tertiary")
    compose = search_extras.composed_inputs()
    return ("similar", sha, search_extras.composed_description(f"images like {asset.filename}", compose), compose)


def options_section() -> dict:
    tag_counts = dict(state.all_tags(library))
    if K_TAGS in st.session_state:
        st.session_state[K_TAGS] = [t for t in st.session_state[K_TAGS] if t in tag_counts]
    # Defaults in session state, not in the widgets: a link (ragkit.ui.links) may have set these.
    st.session_state.setdefault(K_K, DEFAULT_K)
    st.session_state.setdefault(K_SOURCE, "All")
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom", key="search-options"):
        k = st.slider("Results", 1, MAX_K, key=K_K, persist_state="session", width=180)
        min_score = st.slider("Minimum similarity", 0.0, 1.0, 0.0, 0.01, key=K_MIN_SCORE, width=180,
                              persist_state="session", format="%.2f",
                              help="0 shows everything. Cosine similarity: with real CLIP weights, "
                                   "text matches score about 0.2–0.35 and near-duplicate images 0.9+.")
        tags = st.multiselect("Only with tags", options=list(tag_counts), key=K_TAGS, persist_state="session",
                              format_func=lambda t: f"{t} ({tag_counts.get(t, 0):,})", width=260,
                              placeholder="Any tag" if tag_counts else "No tags yet")
        source = st.segmented_control("Source", list(SOURCES), required=True, key=K_SOURCE, persist_state="session")
        more = filter_controls.more_filters("search")
    return {"k": k, "filters": filter_controls.combined(tags, SOURCES[source], more), "min_score": min_score or None}


def run_search(query, options, total) -> list[SearchHit]:
    """Hits for this query, remembered in the session: a toggle click doesn't search again."""
    kind, value, _, how = query
    fingerprint = hashlib.sha256(value).hexdigest() if isinstance(value, bytes) else value
    filters = {"filters": options["filters"], "min_score": options["min_score"]}
    key = (kind, fingerprint, repr(how), options["k"], repr(filters), state.revision(library), total)
    remembered = st.session_state.get(K_RESULTS)
    if remembered and remembered[0] == key:
        return remembered[1]
    with st.spinner("Searching…"):
        if kind == "text":
            hits = library.search_text(value, options["k"], keywords=how["keywords"], **filters)
        elif search_extras.is_composed(how):
            example = {"image": value} if kind == "image" else {"similar": value}
            hits = library.search_composed(**example, **how, k=options["k"], **filters)
        elif kind == "image":
            hits = library.search_image(value, options["k"], **filters)
        else:
            hits = library.search_similar(value, options["k"], **filters)
    st.session_state[K_RESULTS] = (key, hits)
    return hits


def hit_cell(hit: SearchHit, show_route: bool = False) -> None:
    asset = hit.asset
    now = now_ms()
    selection.checkbox(SCOPE, asset.sha256)
    show_thumbnail(library, asset)
    with st.container(horizontal=True, vertical_alignment="center", gap="xsmall", wrap=False):
        st.markdown(f":orange-badge[{score_label(hit.score)}]", help="Similarity to the query (1.00 = the same)")
        st.space("stretch")
        st.button("", key=f"search.view.{asset.sha256}", on_click=open_viewer, args=(asset.sha256,),
                  icon=":material/open_in_full:", type="tertiary", help="View: full size, zoom, details")
        st.button("", key=f"search.more.{asset.sha256}", on_click=more_like, args=(asset.sha256,),
                  icon=":material/image_search:", type="tertiary", help="More like this")
    if show_route:
        st.markdown(search_extras.route_badge(hit), help="Which search found it: by what the picture shows, "
                    "by words in its name, tags, brief or caption, or both")
    name_caption(asset)
    tags_caption(asset)
    rights_badges(asset, now)
    tray.pick_toggle(asset.sha256, key_prefix="search", blocked=blocked_as_reference(asset, now))


# --- the viewer (ragkit.ui.viewer): full size, zoom, previous / next through the results -----------
K_VIEWING = "search.viewing"


def open_viewer(sha256: str) -> None:
    st.session_state[K_VIEWING] = sha256


def close_viewer() -> None:
    st.session_state.pop(K_VIEWING, None)


def view_and_more_like(sha256: str) -> None:
    close_viewer()
    more_like(sha256)


@st.dialog("Image", width="large", on_dismiss=close_viewer)
def view(sha256: str, scores: dict[str, float]) -> None:
    def panel(asset: Asset) -> None:
        st.markdown(f"### {md_escape(asset.filename)}")
        if asset.sha256 in scores:
            st.markdown(f":orange-badge[{score_label(scores[asset.sha256])}] similarity to the query")
        st.markdown(f"{asset.width} × {asset.height} px · {human_size(asset.size_bytes)} · {human_date(asset)}")
        tags_caption(asset, shown=len(asset.tags))
        if asset.is_generated and asset.prompt:
            st.markdown(f"**Brief** {md_escape(asset.prompt)}")
        tray.pick_toggle(asset.sha256, key_prefix="search.viewer", label="Use as a reference",
                         blocked=blocked_as_reference(asset, now_ms()))
        with st.container(horizontal=True, gap="small"):
            st.download_button("Download original", data=lambda: library.original_bytes(asset.sha256),
                               file_name=asset.filename, mime=asset.mime or None, on_click="ignore",
                               icon=":material/download:", key="search.viewer.download")
            st.button("More like this", key="search.viewer.more", icon=":material/image_search:",
                      on_click=view_and_more_like, args=(asset.sha256,))
    with guard("showing the image"):
        viewer.show(library, sha256, scope="search", on_move=open_viewer, details=panel)


def results_section(hits: list[SearchHit], description: str, options: dict, show_route: bool) -> None:
    if not hits:
        st.info("No images match. Try other words, fewer filters or a lower minimum similarity.",
                icon=":material/search_off:")
        return
    note = ""
    if options["min_score"] and len(hits) < options["k"]:
        note = f" (the rest scored below {options['min_score']:.2f})"
    with st.container(horizontal=True, vertical_alignment="center", key="search-results-header"):
        st.markdown(f"**{len(hits)}** result{'s' if len(hits) != 1 else ''} for {md_escape(description)}{note}")
        st.space("stretch")
        sort = st.segmented_control("Sort", SORTS, default=SORTS[0], required=True, key=K_SORT,
                                    persist_state="session", label_visibility="collapsed")
    if sort == "Newest":
        hits = sorted(hits, key=lambda h: h.asset.created_at, reverse=True)
    shown = [h.asset.sha256 for h in hits]
    if all(selection.contains(SCOPE, sha) for sha in shown):
        st.button("Unselect these results", key="search.select-all", icon=":material/deselect:", type="tertiary",
                  on_click=selection.unselect, args=(SCOPE, shown))
    else:
        st.button(f"Select all {len(hits)} results", key="search.select-all", icon=":material/select_all:",
                  type="tertiary", on_click=selection.select_all, args=(SCOPE, shown))
    selection_bar.render(library, SCOPE)
    viewer.remember_order("search", shown)
    grid(hits, partial(hit_cell, show_route=show_route), key="search")
    if st.session_state.get(K_VIEWING) in shown:
        view(st.session_state[K_VIEWING], {h.asset.sha256: h.score for h in hits})


st.title("Search")
with guard("searching"):
    total = library.count()
    if total == 0:
        if uploads.running():
            st.info("Your first images are on their way (see the sidebar): search them once they are in.",
                    icon=":material/hourglass_top:")
        else:
            st.info("There is nothing to search yet: add images on the Library page first.",
                    icon=":material/photo_library:")
        st.page_link(state.LIBRARY_PAGE, label="Go to the Library", icon=":material/arrow_forward:")
        st.stop()
    links.apply_search_link(library, LINK)
    query = query_section()
    options = options_section()
    links.write_search_link(LINK, options["filters"])
    if query is None:
        st.caption(f"Search {total:,} images by describing them, by an example image, or by one of "
                   "your own images.")
    else:
        hits = run_search(query, options, total)
        results_section(hits, query[2], options, show_route=query[0] == "text" and query[3]["keywords"])
