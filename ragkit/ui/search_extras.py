"""The Search page beyond one vector: "Words too" (CLIP and full-text search fused, ragkit.search.hybrid),
the badge that says which route found a hit, and the composed query ("like this, but red")."""
from __future__ import annotations

import streamlit as st

from ragkit.library import Library
from ragkit.records import ROUTE_CLIP, ROUTE_KEYWORDS, SearchHit
from ragkit.ui.markdown import md_escape

K_WORDS_TOO = "search.words-too"
K_WITH = "search.with"            # composed: the words that move the example
K_WEIGHT = "search.weight"        # composed: 0 = the picture only .. 1 = the words only
K_NOT = "search.not"              # composed: move away from this
DEFAULT_WEIGHT = 0.5
# The Search page's filters (app_pages/search.py uses these keys).
K_TAGS = "search.tags"
K_SOURCE = "search.source"
K_MIN_SCORE = "search.min-score"


def words_too_toggle(library: Library) -> bool:
    """On (the default): a text query also finds words in names, tags, briefs and captions."""
    st.session_state.setdefault(K_WORDS_TOO, True)
    reason = library.keyword_search_unavailable
    on = st.toggle("Words too", key=K_WORDS_TOO, persist_state="session", disabled=bool(reason),
                   help=(f"Not available: {md_escape(reason)}." if reason else
                         "On: also find the words in file names, tags, briefs and captions (codes like "
                         "SKU-4471 too). Off: by what the pictures show only."))
    return bool(on) and not reason


def route_badge(hit: SearchHit) -> str:
    """Markdown badge: found by the picture, by words (which ones), or by both."""
    words = md_escape(", ".join(hit.matched))
    if ROUTE_KEYWORDS in hit.routes and ROUTE_CLIP in hit.routes:
        return f":violet-badge[:material/join: picture + words: {words}]"
    if ROUTE_KEYWORDS in hit.routes:
        return f":green-badge[:material/text_fields: words: {words}]"
    return ":blue-badge[:material/image: picture]"


def composed_inputs() -> dict:
    """Words that move the example ("but red"), their weight, and what to move away from."""
    for key, default in ((K_WITH, ""), (K_WEIGHT, DEFAULT_WEIGHT), (K_NOT, "")):
        st.session_state.setdefault(key, default)
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom", key="search-compose"):
        text = st.text_input("…but with these words (optional)", key=K_WITH, persist_state="session",
                             placeholder="in red", icon=":material/add:")
        weight = st.slider("Words weight", 0.0, 1.0, key=K_WEIGHT, step=0.05, persist_state="session",
                           width=200, disabled=not text.strip(),
                           help="0 = like the picture only, 1 = the words only.")
        not_text = st.text_input("…and not (optional)", key=K_NOT, persist_state="session",
                                 placeholder="people", icon=":material/remove:")
    return {"text": text.strip(), "text_weight": float(weight), "not_text": not_text.strip()}


def composed_description(base: str, compose: dict) -> str:
    """'images like X' plus the words that moved it, for the results' heading."""
    parts = [base]
    if compose["text"]:
        parts.append(f"with “{compose['text']}” (weight {compose['text_weight']:.2f})")
    if compose["not_text"]:
        parts.append(f"not “{compose['not_text']}”")
    return ", ".join(parts)


def is_composed(compose: dict | None) -> bool:
    return bool(compose and (compose["text"] or compose["not_text"]))


def start_fresh(*, keep_filters: bool) -> None:
    """A new "images like this" search: without the words of an earlier composed query, and without
    its filters unless the person set them on the search it starts from (More like this on a result)."""
    session = st.session_state
    session[K_WITH], session[K_WEIGHT], session[K_NOT] = "", DEFAULT_WEIGHT, ""
    if not keep_filters:
        from ragkit.ui import filter_controls
        session[K_TAGS], session[K_SOURCE], session[K_MIN_SCORE] = [], "All", 0.0
        filter_controls.clear("search")
