"""Paging a grid with st.pagination: the one copy the Library and its Trash view share.

st.pagination always has a default (page 1 when not given), and Streamlit logs "The widget with key
... was created with a default value but also had its value set via the Session State API" whenever
its value is written through st.session_state, in a callback too. So the widget owns its value and
pages only read it; going back to page 1 (new filters, new images) or to the last page (the last one
emptied) is a fresh widget: a new key, starting at its `default`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import streamlit as st

from ragkit.records import Page


@dataclass(frozen=True)
class Pager:
    key: str         # the pagination widget's key prefix
    paging_key: str  # session key of (widget generation, the page it starts at)

    def _widget(self) -> tuple[str, int]:
        generation, start = st.session_state.get(self.paging_key, (0, 1))
        return f"{self.key}.{generation}", start

    def restart(self, at_page: int = 1) -> None:
        """Show `at_page` next, in a new pagination widget."""
        generation, _ = st.session_state.get(self.paging_key, (0, 1))
        st.session_state.pop(f"{self.key}.{generation}", None)  # the old widget's page is not needed again
        st.session_state[self.paging_key] = (generation + 1, at_page)

    def fetch(self, per_page: int, read: Callable[[int, int], Page]) -> tuple[Page, int, int]:
        """(the page to show, its number, how many pages); back to the last page when the current one
        emptied (its last images deleted or restored)."""
        page_key, start = self._widget()
        current = st.session_state.get(page_key, start)  # the widget's page (from the last run), read only
        current = current if isinstance(current, int) and current >= 1 else start
        page = read((current - 1) * per_page, per_page)
        pages = max(1, math.ceil(page.total / per_page))
        if current > pages:
            current = pages
            self.restart(current)
            page = read((current - 1) * per_page, per_page)
        return page, current, pages

    def widget(self, pages: int) -> None:
        """The pagination control under the grid (only when there is more than one page)."""
        if pages > 1:
            page_key, start = self._widget()
            st.pagination(pages, default=min(start, pages), key=page_key, persist_state="session",
                          max_visible_pages=9)
