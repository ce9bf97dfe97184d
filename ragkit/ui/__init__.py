"""Reusable Streamlit pieces for the pages: the cached library, session keys, the thumbnail
grid, the reference tray, error display, the one way user text goes into Markdown
(markdown.md_escape) and the work that outlives a page view (pending.py: a generation;
uploads.py: an upload).

This is the only package under ``ragkit/`` that imports Streamlit; the core never does.
"""
