"""The filters the Search page and the Library grid share beyond tags and source: the days an image
was added, its file type, orientation and size (ragkit.storage.filters.Filters checks every value)."""
from __future__ import annotations

from datetime import date

import streamlit as st

from ragkit.errors import InvalidInputError
from ragkit.storage.filters import FILE_TYPES, MAX_SIDE, Filters

ANY = "Any"
ORIENTATION_LABELS = {ANY: None, "Landscape": "landscape", "Portrait": "portrait", "Square": "square"}
FIELDS = ("since", "until", "types", "orientation", "min_side")


def key(prefix: str, field: str) -> str:
    """The session key of one control (ragkit.ui.links seeds them from the URL)."""
    return f"{prefix}.{field}"


def more_filters(prefix: str) -> dict:
    """A "More filters" popover: added between, file types, orientation, minimum side. Returns the
    chosen values as Filters' keyword arguments (unset ones left out)."""
    for field, default in (("since", None), ("until", None), ("types", []), ("orientation", ANY), ("min_side", 0)):
        st.session_state.setdefault(key(prefix, field), default)
    active = _active_count(prefix)
    label = f"More filters ({active})" if active else "More filters"
    with st.popover(label, icon=":material/tune:", key=f"{prefix}-more-filters"):
        since_col, until_col = st.columns(2)
        since = since_col.date_input("Added from", key=key(prefix, "since"), format="YYYY-MM-DD",
                                     min_value=date(1970, 1, 1), max_value=date(2199, 12, 31),
                                     persist_state="session", help="The first day (UTC) to include")
        until = until_col.date_input("Added until", key=key(prefix, "until"), format="YYYY-MM-DD",
                                     min_value=date(1970, 1, 1), max_value=date(2199, 12, 31),
                                     persist_state="session", help="The last day (UTC) to include")
        types = st.multiselect("File types", options=list(FILE_TYPES), key=key(prefix, "types"),
                               format_func=str.upper, placeholder="Any type", persist_state="session")
        orientation = st.segmented_control("Orientation", list(ORIENTATION_LABELS), key=key(prefix, "orientation"),
                                           required=True, persist_state="session")
        min_side = st.number_input("Shorter side at least (px)", min_value=0, max_value=MAX_SIDE, step=256,
                                   key=key(prefix, "min_side"), persist_state="session",
                                   help="0 = any size. 1024 keeps pictures at least 1024 px wide and tall.")
        st.button("Clear these filters", key=f"{prefix}.clear-more", on_click=clear, args=(prefix,),
                  icon=":material/filter_alt_off:", type="tertiary", disabled=not active)
    return {"since": since, "until": until, "types": tuple(types),
            "orientation": ORIENTATION_LABELS.get(orientation or ANY), "min_side": int(min_side or 0)}


def clear(prefix: str) -> None:
    for field, default in (("since", None), ("until", None), ("types", []), ("orientation", ANY), ("min_side", 0)):
        st.session_state[key(prefix, field)] = default


def _active_count(prefix: str) -> int:
    state = st.session_state
    return sum([state.get(key(prefix, "since")) is not None or state.get(key(prefix, "until")) is not None,
                bool(state.get(key(prefix, "types"))), state.get(key(prefix, "orientation"), ANY) != ANY,
                bool(state.get(key(prefix, "min_side")))])


def combined(tags, source: str | None, more: dict) -> Filters:
    """Filters of tags, source and the popover's values. Values that don't go together (a start day
    after the end day) are shown as a warning and left out, so the page still lists something."""
    try:
        return Filters(tags=tuple(tags), source=source, **more)
    except InvalidInputError as exc:
        st.warning(f"{exc} (this filter is ignored until it is fixed)", icon=":material/event_busy:")
        return Filters(tags=tuple(tags), source=source, **{**more, "since": None, "until": None})
