"""Sign-in for team deployments: off by default; when on, no library content before sign-in."""
from __future__ import annotations

from ragkit.ingest.pipeline import Upload
from tests.e2e_support import all_text, app_env, new_app, run, seed  # noqa: F401 - fixtures
from tests.images_factory import jpeg_bytes

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-cookie-secret",
        "client_id": "ragkit-test", "client_secret": "not-a-real-secret",
        "server_metadata_url": "https://accounts.example.com/.well-known/openid-configuration"}


def test_sign_in_is_off_by_default(app_env, seed):
    seed([Upload("hero.jpg", jpeg_bytes(1))])
    at = run(new_app())
    assert not [b for b in at.button if b.label == "Sign in"]
    assert "Library" in [t.value for t in at.title]
    assert at.get("image")  # the thumbnail a visitor must not see when sign-in is on


def test_visitor_who_is_not_signed_in_sees_no_library_content(app_env, seed, monkeypatch):
    seed([Upload("hero.jpg", jpeg_bytes(1))])
    monkeypatch.setenv("RAGKIT_REQUIRE_LOGIN", "true")
    at = new_app()
    at.secrets["auth"] = AUTH
    run(at)
    labels = [b.label for b in at.button]
    assert labels == ["Sign in"]
    text = all_text(at)
    assert "Sign in to continue" in text
    for private in ("Images in the library", "Add images", "References", "ragkit-tiny", "ragkit.db"):
        assert private not in text
    assert len(at.sidebar.metric) == 0 and not at.get("image")  # no count, no thumbnails
    assert "not-a-real-secret" not in text and "test-cookie-secret" not in text


def test_required_sign_in_without_a_provider_explains_the_fix(app_env, monkeypatch):
    monkeypatch.setenv("RAGKIT_REQUIRE_LOGIN", "true")
    at = run(new_app())
    errors = " ".join(e.value for e in at.error)
    assert "[auth]" in errors and "secrets.toml" in errors
    assert not [b for b in at.button if b.label == "Sign in"]
    assert "Images in the library" not in all_text(at)


def signed_in(monkeypatch, **claims):
    """The app as a signed-in visitor with these OIDC claims, the allow-list set to @yourstudio.com."""
    monkeypatch.setenv("RAGKIT_REQUIRE_LOGIN", "true")
    monkeypatch.setenv("RAGKIT_ALLOWED_EMAILS", "@yourstudio.com")
    at = new_app()
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "name": "Mallory", **claims}
    return run(at)


def test_an_unverified_email_on_the_allow_list_is_not_let_in(app_env, seed, monkeypatch):
    seed([Upload("hero.jpg", jpeg_bytes(1))])
    at = signed_in(monkeypatch, email="mallory@yourstudio.com", email_verified=False)  # was: the Library
    errors = " ".join(e.value for e in at.error)
    assert "does not say that" in errors and "is verified" in errors
    assert "Images in the library" not in all_text(at) and not at.get("image")
    at = signed_in(monkeypatch, email="mallory@yourstudio.com")  # no claim at all: not trusted either
    assert "Images in the library" not in all_text(at) and not at.get("image")


def test_a_verified_email_gets_in_by_the_standard_claim_or_entra_s(app_env, seed, monkeypatch):
    seed([Upload("hero.jpg", jpeg_bytes(1))])
    for claims in ({"email_verified": True}, {"email_verified": "true"}, {"xms_edov": True}):
        at = signed_in(monkeypatch, email="ann@yourstudio.com", **claims)
        assert "Library" in [t.value for t in at.title] and at.get("image"), [e.value for e in at.error]
        assert not any("verified" in e.value or "not allowed" in e.value for e in at.error)
    at = signed_in(monkeypatch, email="eve@elsewhere.com", email_verified=True)
    assert "is not allowed into this library" in " ".join(e.value for e in at.error)
