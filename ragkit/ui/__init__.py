"""Reusable Streamlit pieces for the pages: the cached library, session keys, the thumbnail
grid, the reference tray and error display.

This is the only package under ``ragkit/`` that imports Streamlit; the core never does.
"""
