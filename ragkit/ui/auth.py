"""Optional sign-in for team deployments: Streamlit's built-in OIDC login (`st.login`).

Off by default (a local library needs no login). With RAGKIT_REQUIRE_LOGIN=true, nothing
of the library (pages, counts, thumbnails) renders until the visitor has signed in with the
identity provider configured under [auth] in .streamlit/secrets.toml, and, when
RAGKIT_ALLOWED_EMAILS is set, only listed addresses or domains get past this gate.
"""
from __future__ import annotations

import streamlit as st

from ragkit.config import Settings
from ragkit.signin import refusal
from ragkit.ui.markdown import md_escape


def _auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets.toml at all: not configured
        return False


def require_sign_in(settings: Settings) -> None:
    """Stop the script here unless sign-in is off or the visitor is signed in and allowed."""
    if not settings.require_login:
        return
    if not _auth_configured():
        st.error("**Sign-in is required** (`RAGKIT_REQUIRE_LOGIN=true`) but no identity provider is "
                 "configured. Add an `[auth]` section to `.streamlit/secrets.toml` (see README › Sign-in "
                 "for team deployments), then reload.", icon=":material/lock:")
        st.stop()
    # .get: without a live identity cookie some contexts (tests, first run) lack the key entirely.
    if not st.user.get("is_logged_in", False):
        st.title("ragkit")
        st.write("This image library is private to your team. Sign in to continue.")
        st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login)
        st.stop()
    email = st.user.get("email")
    why = refusal(settings, st.user.to_dict())
    if why == "not_listed":
        st.error(f"**{md_escape(str(email or 'This account'))}** is not allowed into this library. Ask an admin to "
                 "add it to `RAGKIT_ALLOWED_EMAILS`, or sign in with another account.", icon=":material/block:")
    elif why == "unverified":
        st.error(f"Your identity provider does not say that **{md_escape(str(email))}** is verified, so this "
                 "library can't trust it. Verify the address with your provider (or sign in with an account "
                 "whose email it verifies), then sign in again. Admins: see README › Sign-in for team "
                 "deployments for the claim each provider sends.", icon=":material/block:")
    if why:
        st.button("Sign out", on_click=st.logout)
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as {md_escape(str(st.user.get('name') or email or ''))}")
        st.button("Sign out", key="auth.sign-out", on_click=st.logout, type="tertiary",
                  icon=":material/logout:")
