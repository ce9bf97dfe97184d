"""Who may into a team library: the allow-list (RAGKIT_ALLOWED_EMAILS) applied to a *verified* email.

An OpenID Connect provider signs whatever email claim its user typed; many let a person set any address
(a personal Microsoft account, a self-service Auth0 or Keycloak sign-up). Only a provider's statement that
the address was verified makes ``mallory@yourstudio.com`` mean someone who reads that mailbox, so the
allow-list trusts an email only with one of these claims (README › Sign-in for team deployments):

- ``email_verified: true``: the standard OIDC claim. Google, Okta, Auth0, Keycloak, Amazon Cognito (as the
  string "true") and most others send it.
- ``xms_edov: true``: Microsoft Entra ID's "email domain owner verified" optional claim (Entra sends no
  email_verified; add xms_edov to the app's token configuration as an optional claim).

Without an allow-list, the provider alone decides who gets in, as before.
"""
from __future__ import annotations

from typing import Any, Mapping

VERIFIED_CLAIMS = ("email_verified", "xms_edov")


def email_is_verified(claims: Mapping[str, Any]) -> bool:
    """The provider says the email was verified (one of VERIFIED_CLAIMS is true)."""
    return any(_is_true(claims.get(claim)) for claim in VERIFIED_CLAIMS)


def refusal(settings, claims: Mapping[str, Any]) -> str | None:
    """Why a signed-in visitor is not let in (None: let in), in words for the visitor."""
    if not settings.allowed_emails:
        return None
    email = claims.get("email")
    if not settings.email_allowed(email if isinstance(email, str) else None):
        return "not_listed"
    if not email_is_verified(claims):
        return "unverified"
    return None


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
