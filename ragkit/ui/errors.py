"""Show ragkit errors as a clear ``st.error`` with the fix, never as a traceback."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from ragkit.config import Settings
from ragkit.errors import RagkitError
from ragkit.messages import user_message
from ragkit.ui.markdown import md_escape

log = logging.getLogger("ragkit.ui")


def show_error(exc: BaseException, action: str = "") -> None:
    """One red box a person can act on. Unexpected errors go to the server log, not the page."""
    show_message(error_message(exc, action))


def error_message(exc: BaseException, action: str = "") -> str:
    """What a page says about a failure (ragkit.messages.user_message); an unexpected one is
    logged with its traceback here, so call this once per failure."""
    message = user_message(exc, _current_settings(), action=action)
    if isinstance(exc, RagkitError):
        return message
    log.error("unexpected error while %s", action or "running the page", exc_info=exc)
    return f"{message} The details are in the server log; please report it. Reloading the page usually recovers."


def show_message(message: str) -> None:
    """A failure's message in a red box, shown literally: it can quote a file name, a brief or a server."""
    st.error(md_escape(message), icon=":material/error:")


def _current_settings() -> Settings | None:
    """The settings whose secrets to mask; None if they can't be read (that error's message has none)."""
    try:
        return Settings.load()
    except Exception:  # noqa: BLE001 - the settings themselves may be what failed
        return None


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
