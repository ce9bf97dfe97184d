"""Who the work belongs to, and keeping the Studio's work in progress on the server (ragkit.studio.drafts).

The owner is the signed-in email when there is one (sign-in on: RAGKIT_REQUIRE_LOGIN), else the
browser. Streamlit 1.67 gives a script no way to store anything in the browser (no cookie
writes, no localStorage) without a custom component, and the URL is not kept by a new tab.
What it does give is ``st.context.cookies``, and among the cookies Streamlit itself sets on the
first page load is ``_streamlit_xsrf`` (on by default: server.enableXsrfProtection), whose token
stays the same for the browser's session while its mask changes per load. A digest of that
token is the browser's key: a reload (F5) or a new tab of the same browser finds its work again;
another browser, or a private window, starts empty. With XSRF protection off and no sign-in
there is no key, and nothing is kept across a reload (the page says so).
"""
from __future__ import annotations

import logging

import streamlit as st

from ragkit.config import Settings
from ragkit.studio.drafts import EXPIRY_DAYS, KEEP_RESULTS, MAX_BYTES, Draft, DraftStore, browser_token, owner_key
from ragkit.studio.generation import Generation
from ragkit.ui import tray

log = logging.getLogger("ragkit.ui")

XSRF_COOKIE = "_streamlit_xsrf"
BRIEF_KEY = "studio.brief"        # the Studio's brief widget (app_pages/studio.py K_BRIEF)
K_CHECKED = "drafts.checked"      # this session has looked for earlier work
K_OFFER = "drafts.offer"          # earlier work offered back, until restored or set aside
K_SAVED = "drafts.saved"          # (brief, tray) as last written
K_PROBLEM = "drafts.problem"      # a damaged draft, said once

LIMITS = (f"Kept on this server for {EXPIRY_DAYS} days after your last change: the brief, the references and "
          f"the last {KEEP_RESULTS} generations' images (up to {MAX_BYTES // (1024 * 1024)} MB).")


def owner() -> str | None:
    """The signed-in email's key, else this browser's, else None."""
    try:
        user = st.user
        email = user.get("email") if user.get("is_logged_in", True) else None
    except Exception:  # noqa: BLE001 - no identity at all (no auth configured): the browser decides
        email = None
    if email:
        return owner_key(f"email:{str(email).strip().lower()}")
    try:
        token = browser_token(st.context.cookies.get(XSRF_COOKIE))
    except Exception:  # noqa: BLE001 - outside a browser session
        token = None
    return owner_key(f"browser:{token}") if token else None


def _store(settings: Settings) -> DraftStore:
    return DraftStore(settings.data_dir)


def _current() -> tuple[str, tuple[str, ...]]:
    return str(st.session_state.get(BRIEF_KEY, "") or ""), tuple(tray.ids())


def remember(settings: Settings) -> None:
    """Once per run, on every page: look for earlier work on a session's first run (to offer it back),
    then keep the brief and the tray whenever they changed. Never breaks the page."""
    who = owner()
    if who is None:
        return
    try:
        if not st.session_state.get(K_CHECKED):
            st.session_state[K_CHECKED] = True
            draft = _store(settings).load(who)
            if draft.problem:
                st.session_state[K_PROBLEM] = draft.problem
            if not draft.empty:
                st.session_state[K_OFFER] = draft
                return
        if K_OFFER in st.session_state:
            return  # not before the person chose: writing now would overwrite what is offered
        current = _current()
        if current != st.session_state.get(K_SAVED, ("", ())):
            _store(settings).save_work(who, current[0], list(current[1]))
            st.session_state[K_SAVED] = current
    except Exception:  # noqa: BLE001 - keeping a draft is a convenience: log it, never block the page
        log.exception("keeping the Studio draft failed")


def keep_result(settings: Settings, generation: Generation, result_id: str) -> None:
    who = owner()
    if who is None:
        return
    try:
        _store(settings).add_result(who, generation, result_id)
    except Exception:  # noqa: BLE001
        log.exception("keeping a Studio result failed")


def mark_saved(settings: Settings, result_id: str, index: int, sha256: str) -> None:
    who = owner()
    if who is None:
        return
    try:
        _store(settings).mark_saved(who, result_id, index, sha256)
    except Exception:  # noqa: BLE001
        log.exception("marking a kept Studio result as saved failed")


def offered() -> Draft | None:
    return st.session_state.get(K_OFFER)


def take_offer() -> Draft | None:
    """The offered work, now being restored: the brief and tray are written back as they come."""
    draft = st.session_state.pop(K_OFFER, None)
    if draft is not None:
        st.session_state[BRIEF_KEY] = draft.brief
        tray.clear()
        for sha256 in draft.tray:
            tray.add(sha256)
        st.session_state[K_SAVED] = (draft.brief, tuple(draft.tray))
    return draft


def discard_offer(settings: Settings) -> None:
    """'Start fresh': the earlier work is let go, on the server too."""
    st.session_state.pop(K_OFFER, None)
    who = owner()
    if who is not None:
        _store(settings).clear(who)


def problem() -> str | None:
    return st.session_state.pop(K_PROBLEM, None)


def kept_here() -> bool:
    return owner() is not None
