"""ragkit.messages.user_message: the one way an exception becomes what a person reads."""
from __future__ import annotations

from ragkit.cli import main as cli
from ragkit.config import Settings
from ragkit.errors import StoreError
from ragkit.messages import user_message

KEY = "AIzaSy-messages-KEY-77c1"
SETTINGS = Settings(gemini_api_key=KEY, milvus_token="s3cret", milvus_uri="http://ann:pa55word@milvus.lan:19530")


def test_a_ragkit_error_keeps_its_text_with_every_secret_masked():
    said = StoreError(f"refused {KEY}, s3cret, ann:pa55word and the typed root:s3cret-typed")
    assert user_message(said, SETTINGS, extra_secrets=["root:s3cret-typed"]) == (
        "refused ***, ***, *** and the typed ***")  # a typed secret holding a known one is masked whole
    assert user_message(StoreError("typed tok-XYZ"), None, extra_secrets=["tok-XYZ", ""]) == "typed ***"


def test_anything_else_is_a_short_line_naming_its_type_and_never_its_text():
    unexpected = RuntimeError(f"header {KEY} " + "x" * 900)
    assert user_message(unexpected, SETTINGS, action="generating") == (
        "Something unexpected went wrong while generating: RuntimeError.")
    # Only where there is no server log to read it in (the CLI): its text too, masked and cut short.
    detailed = user_message(unexpected, SETTINGS, detail=True)
    assert detailed.startswith("Something unexpected went wrong: RuntimeError (header *** xxx")
    assert KEY not in detailed and len(detailed) < 560


def test_the_cli_masks_a_token_typed_on_its_command_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGKIT_DEBUG", "1")  # keeps this process's logging as it is
    monkeypatch.setenv("RAGKIT_MILVUS_TOKEN", "s3cret")

    def refuse(settings):
        raise StoreError("Milvus refused token root:s3cret-typed")

    monkeypatch.setattr("ragkit.cli.common.open_library", refuse)
    code = cli.main(["migrate", "--to", "http://127.0.0.1:9", "--token", "root:s3cret-typed"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILURE
    assert err == "error: Milvus refused token ***\n"
