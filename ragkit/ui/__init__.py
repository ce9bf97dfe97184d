"""Reusable Streamlit pieces for the pages: the cached library and Gemini client, session keys,
the thumbnail grid, the reference tray, error display, the one way user text goes into Markdown
(markdown.md_escape) and the work that outlives a page view (pending.py: a generation;
uploads.py: an upload).

Where page code lives, one rule: every page's body is its file in ``app_pages/`` (Library,
Search, Studio), which reads like the screen, top to bottom. A piece goes here only when more
than one page (or the sidebar) uses it, or when it must outlive a page's run (the per-process
caches in state.py, the work in flight in pending.py and uploads.py). Rules that are not
about the screen go in the core.

This is the only package under ``ragkit/`` that imports Streamlit; the core never does.
"""
