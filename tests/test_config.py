from pathlib import Path

import pytest

from ragkit.config import Settings, redact_uri
from ragkit.errors import ConfigError


def test_defaults_put_everything_under_data(tmp_path):
    settings = Settings.load(env={}, cwd=tmp_path, secrets_files=[])
    assert settings.data_dir == tmp_path / "data"
    assert settings.milvus_uri == str(tmp_path / "data" / "ragkit.db")
    assert settings.is_embedded_db
    assert settings.clip_model == "ViT-B-32" and settings.clip_pretrained == "laion2b_s34b_b79k"
    assert settings.gemini_model == "gemini-nano-banana-2.1"


def test_environment_wins_over_secrets_file(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('GEMINI_API_KEY = "from-file"\nRAGKIT_CLIP_MODEL = "RN50"\nRAGKIT_DATA_DIR = "lib"\n')
    settings = Settings.load(env={"RAGKIT_CLIP_MODEL": "ViT-L-14"}, cwd=tmp_path, secrets_files=[secrets])
    assert settings.clip_model == "ViT-L-14"
    assert settings.gemini_api_key == "from-file"
    assert settings.data_dir == tmp_path / "lib"


def test_google_api_key_is_accepted_and_never_in_repr(tmp_path):
    settings = Settings.load(env={"GOOGLE_API_KEY": "sekrit-123", "RAGKIT_MILVUS_TOKEN": "root:pw"},
                             cwd=tmp_path, secrets_files=[])
    assert settings.gemini_api_key == "sekrit-123"
    assert "sekrit-123" not in repr(settings) and "root:pw" not in repr(settings)
    assert set(settings.secret_values()) == {"sekrit-123", "root:pw"}


def test_server_uri_is_shown_without_credentials(tmp_path):
    settings = Settings.load(env={"RAGKIT_MILVUS_URI": "http://admin:hunter2@milvus.lan:19530"},
                             cwd=tmp_path, secrets_files=[])
    assert not settings.is_embedded_db
    assert settings.milvus_uri_display == "http://milvus.lan:19530"
    assert redact_uri("/data/ragkit.db") == "/data/ragkit.db"


def test_bad_values_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="RAGKIT_DEVICE"):
        Settings.load(env={"RAGKIT_DEVICE": "tpu"}, cwd=tmp_path, secrets_files=[])
    broken = tmp_path / "secrets.toml"
    broken.write_text("GEMINI_API_KEY = ")
    with pytest.raises(ConfigError, match="TOML"):
        Settings.load(env={}, cwd=tmp_path, secrets_files=[broken])


def test_login_settings(tmp_path):
    off = Settings.load(env={}, cwd=tmp_path, secrets_files=[])
    assert off.require_login is False and off.email_allowed("anyone@example.org")
    on = Settings.load(env={"RAGKIT_REQUIRE_LOGIN": "true",
                            "RAGKIT_ALLOWED_EMAILS": "Boss@Studio.com, @agency.io"}, cwd=tmp_path, secrets_files=[])
    assert on.require_login
    assert on.email_allowed("boss@studio.com") and on.email_allowed("ann@agency.io")
    assert not on.email_allowed("mallory@evil.io") and not on.email_allowed("x@agency.io.evil.com")
    assert not on.email_allowed(None) and not on.email_allowed("")
    with pytest.raises(ConfigError, match="true or false"):
        Settings.load(env={"RAGKIT_REQUIRE_LOGIN": "maybe"}, cwd=tmp_path, secrets_files=[])


def test_the_readme_documents_every_setting():
    """ragkit.config.SETTINGS_TABLE is the list of settings; the README's table must name each one."""
    from ragkit.config import SETTINGS_TABLE
    from tests.conftest import REPO
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [env for _, env, _, _ in SETTINGS_TABLE if f"`{env}`" not in readme]
    assert not missing, f"README does not document {missing}"


def test_scrub_removes_every_secret_and_nothing_else(tmp_path):
    settings = Settings.load(env={"GEMINI_API_KEY": "sk-abc123", "RAGKIT_MILVUS_TOKEN": "root:hunter2",
                                  "RAGKIT_DATA_DIR": str(tmp_path)}, cwd=tmp_path, secrets_files=[])
    said = "server said: bad key sk-abc123 for root:hunter2 at http://milvus:19530"
    assert settings.scrub(said) == "server said: bad key *** for *** at http://milvus:19530"


def test_a_token_in_the_uri_query_is_never_shown(tmp_path):
    settings = Settings.load(env={"RAGKIT_MILVUS_URI": "http://milvus.lan:19530/?token=root:s3cr3t&db_name=team"},
                             cwd=tmp_path, secrets_files=[])
    assert settings.milvus_uri_display == "http://milvus.lan:19530/?token=***&db_name=team"
    assert "s3cr3t" not in settings.scrub("server refused token root:s3cr3t")
    with_password = Settings.load(env={"RAGKIT_MILVUS_URI": "https://ann:pa55word@zilliz.example:443?key=abc123"},
                                  cwd=tmp_path, secrets_files=[])
    assert with_password.milvus_uri_display == "https://zilliz.example:443?key=***"
    assert with_password.scrub("auth ann:pa55word / abc123 failed") == "auth *** / *** failed"
