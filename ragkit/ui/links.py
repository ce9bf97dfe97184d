"""The URL as a link: the Search page keeps its query there, the Library the open asset.

A page reads its link once, when the URL is one this session did not write (a link pasted into a
new tab, a bookmark, the browser's back button), puts the values into the widgets' session state
before the widgets are drawn, and writes its state back at the end of each run. Values are checked
by ragkit.search.links (the CLI's rules); a bad one is a warning, never a crash. An empty URL (a page
switch clears it) leaves the session's own search as it was.
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ragkit.library import Library
from ragkit.search.links import SearchLink, parse_asset, parse_search, search_params
from ragkit.ui import filter_controls, search_extras, state
from ragkit.ui.markdown import md_escape

K_SEARCH_SEEN = "links.search.seen"    # the search URL this session last read or wrote
K_LIBRARY_SEEN = "links.library.seen"  # the same for the Library's open asset
MODE_LABELS = {"words": state.MODE_TEXT, "image": state.MODE_IMAGE, "similar": state.MODE_SIMILAR}
MODE_NAMES = {label: name for name, label in MODE_LABELS.items()}


@dataclass(frozen=True)
class SearchPage:
    """The Search page's own session keys and choices, as the page defines them."""
    text: str
    k: str
    tags: str
    source: str
    sources: dict          # label -> source (None = all)
    default_k: int
    max_k: int


def current_params() -> dict[str, list[str]]:
    return {key: st.query_params.get_all(key) for key in st.query_params}


def _is_new(seen_key: str) -> dict[str, list[str]] | None:
    """The URL's parameters, if this session has not seen them yet (and there are any)."""
    params = current_params()
    if not params or params == st.session_state.get(seen_key):
        return None
    st.session_state[seen_key] = params
    return params


def _warn(warnings: list[str], what: str) -> None:
    if warnings:
        st.warning(f"Parts of this {what} could not be used and were left out:  \n"
                   + "  \n".join(f"• {md_escape(w)}" for w in warnings), icon=":material/link_off:")


# --- Search -------------------------------------------------------------------------------------
def apply_search_link(library: Library, page: SearchPage) -> None:
    """Before the widgets: a new link sets every part of the search (what it leaves out: defaults)."""
    params = _is_new(K_SEARCH_SEEN)
    if params is None:
        return
    link, warnings = parse_search(params, page.default_k, page.max_k)
    session = st.session_state
    known_tags = {tag for tag, _ in state.all_tags(library)}
    for tag in link.filters.tags:
        if tag not in known_tags:
            warnings.append(f"no image has the tag “{tag}” (any more); that tag is left out")
    session[page.tags] = [t for t in link.filters.tags if t in known_tags]
    session[page.source] = next(label for label, source in page.sources.items() if source == link.filters.source)
    session[page.text] = link.words
    session[page.k] = link.k
    session[search_extras.K_WORDS_TOO] = link.words_too
    session[search_extras.K_WITH] = link.with_words
    session[search_extras.K_WEIGHT] = link.weight
    session[search_extras.K_NOT] = link.not_words
    mode = link.mode
    session.pop(state.SIMILAR_TO, None)
    if link.similar:
        asset = library.find(link.similar)
        if asset is None or asset.trashed:
            warnings.append(f"the image this link searches like ({link.similar[:12]}…) is no longer in the library")
            mode = "words"
        else:
            session[state.SIMILAR_TO] = link.similar
    session[state.SEARCH_MODE] = MODE_LABELS[mode]
    _seed_filters("search", link)
    _warn(warnings, "link")


def _seed_filters(prefix: str, link: SearchLink) -> None:
    f, session = link.filters, st.session_state
    session[filter_controls.key(prefix, "since")] = f.since
    session[filter_controls.key(prefix, "until")] = f.until
    session[filter_controls.key(prefix, "types")] = list(f.types)
    session[filter_controls.key(prefix, "orientation")] = next(
        label for label, value in filter_controls.ORIENTATION_LABELS.items() if value == f.orientation)
    session[filter_controls.key(prefix, "min_side")] = f.min_side


def write_search_link(page: SearchPage, filters) -> None:
    """After the widgets: the URL says what the page shows."""
    session = st.session_state
    mode = MODE_NAMES.get(session.get(state.SEARCH_MODE), "words")
    link = SearchLink(mode=mode, words=(session.get(page.text) or "").strip(),
                      words_too=bool(session.get(search_extras.K_WORDS_TOO, True)),
                      similar=session.get(state.SIMILAR_TO) or "" if mode == "similar" else "",
                      with_words=(session.get(search_extras.K_WITH) or "").strip(),
                      weight=float(session.get(search_extras.K_WEIGHT, search_extras.DEFAULT_WEIGHT)),
                      not_words=(session.get(search_extras.K_NOT) or "").strip(),
                      k=int(session.get(page.k, page.default_k)), filters=filters)
    _write(K_SEARCH_SEEN, search_params(link))


def _write(seen_key: str, params: dict[str, list[str]]) -> None:
    if params != current_params():
        st.query_params.from_dict(params)
    st.session_state[seen_key] = params


# --- Library ------------------------------------------------------------------------------------
def apply_asset_link(library: Library) -> None:
    """Before the page: a link to an asset opens it, or says why it can't."""
    params = _is_new(K_LIBRARY_SEEN)
    if params is None:
        return
    sha256, warnings = parse_asset(params)
    if sha256:
        asset = library.find(sha256)
        if asset is None:
            st.warning(f"The image this link points to ({sha256[:12]}…) is no longer in the library: it was "
                       "deleted, or the link comes from another library.", icon=":material/link_off:")
        elif asset.trashed:
            st.warning(f"The image this link points to ({md_escape(asset.filename)}) is in the trash. "
                       "Restore it from the trash to open it.", icon=":material/delete:")
        else:
            st.session_state[state.OPEN_ASSET] = sha256
    _warn(warnings, "link")


def write_asset_link() -> None:
    sha256 = st.session_state.get(state.OPEN_ASSET)
    _write(K_LIBRARY_SEEN, {"asset": [sha256]} if sha256 else {})
