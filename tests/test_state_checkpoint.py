"""A checkpoint of another architecture (issue 19, item 14): one clear line naming the file and the
architecture, never "unexpected AssertionError (text pos_embed width changed!)"."""
from __future__ import annotations

import os

import pytest

from ragkit.cli.main import main as cli_main
from ragkit.errors import ModelUnavailableError
from ragkit.ingest.embedder import ClipEmbedder, make_random_checkpoint
from tests.conftest import TINY_MODEL


@pytest.fixture(scope="module")
def tiny_b_checkpoint(tmp_path_factory):
    return make_random_checkpoint("ragkit-tiny-b", tmp_path_factory.mktemp("b") / "ragkit-tiny-b.pt")


@pytest.mark.parametrize("model, which", [(TINY_MODEL, "b"), ("ragkit-tiny-b", "tiny"), ("ViT-B-32", "tiny")])
def test_a_checkpoint_of_another_architecture_says_it_does_not_fit(tiny_checkpoint, tiny_b_checkpoint, model, which):
    path = str(tiny_b_checkpoint if which == "b" else tiny_checkpoint)
    with pytest.raises(ModelUnavailableError) as caught:
        ClipEmbedder(model, path, "cpu")
    message = str(caught.value)
    assert f"The checkpoint {path} does not fit the architecture {model}" in message
    assert "RAGKIT_CLIP_MODEL" in message and "width changed" not in message


def test_reindex_to_an_architecture_the_file_does_not_fit_is_one_clear_line(
        tmp_path, ragkit_env, tiny_checkpoint, monkeypatch, capsys):
    for key, value in ragkit_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RAGKIT_MILVUS_URI", raising=False)
    code = cli_main(["reindex", "--model", "ViT-B-32", "--pretrained", str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert code == 1 and "does not fit the architecture ViT-B-32" in err and "unexpected" not in err, err
    assert os.path.isdir(tmp_path / "data")
