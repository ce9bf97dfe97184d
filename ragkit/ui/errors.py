"""Show ragkit errors as a clear ``st.error`` with the fix, never as a traceback."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from ..config import Settings
from ..errors import RagkitError
from .markdown import md_escape

log = logging.getLogger("ragkit.ui")


def show_error(exc: BaseException, action: str = "") -> None:
    """One red box a person can act on. Unexpected errors go to the server log, not the page.

    The message is shown literally: it can quote a file name, a brief or what a server said.
    """
    if isinstance(exc, RagkitError):
        st.error(md_escape(_without_secrets(str(exc))), icon=":material/error:")
        return
    log.error("unexpected error while %s", action or "running the page", exc_info=exc)
    doing = f" while {action}" if action else ""
    st.error(f"Something unexpected went wrong{doing}: {type(exc).__name__}. The details are in the "
             "server log; please report it. Reloading the page usually recovers.", icon=":material/error:")


def _without_secrets(message: str) -> str:
    """Messages can quote what a server said back; it must not put a key or token on the page."""
    try:
        return Settings.load().scrub(message)
    except Exception:  # noqa: BLE001 - the settings themselves may be what failed (their message has no secret)
        return message


@contextmanager
def guard(action: str = "") -> Iterator[None]:
    """Run a block of page code; a failure shows as st.error and the rest of the page still renders.

    Streamlit's own control flow (st.rerun, st.stop, st.switch_page) raises BaseException
    subclasses, which pass through untouched.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message, never a traceback
        show_error(exc, action)
