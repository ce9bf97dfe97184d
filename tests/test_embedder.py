"""ClipEmbedder's text path: trimming the token batch gives the vectors of the full 77 positions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragkit.ingest.embedder import ClipEmbedder

TEXTS = [
    "",                                                   # [sot, eot]: 2 positions
    "red",
    "a red silk cape with gold trim",
    "a product shot of a leather handbag in warm studio light, soft shadows, beige backdrop, "
    "shallow depth of field, three-quarter view, high detail",
    " ".join(f"word{i}" for i in range(200)),              # truncated at 77, eot forced last
]
TINY_CONFIG = Path(__file__).resolve().parents[1] / "ragkit" / "ingest" / "model_configs" / "ragkit-tiny.json"


def positions_seen(embedder: ClipEmbedder, texts: list[str], **kwargs) -> tuple[np.ndarray, list[int]]:
    """embed_texts, and the sequence lengths the text transformer actually ran."""
    seen: list[int] = []
    model = embedder._model
    transformer = model.text.transformer if hasattr(model, "text") else model.transformer  # CustomTextCLIP
    hook = transformer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    try:
        return embedder.embed_texts(texts, **kwargs), seen
    finally:
        hook.remove()


def assert_trim_is_exact(embedder: ClipEmbedder) -> None:
    assert embedder.trims_text
    tokens = embedder._tokenizer(TEXTS)
    lengths = [int(row.argmax()) + 1 for row in tokens]
    assert lengths[0] == 2 and lengths[-1] == 77 and int(tokens[-1, -1]) == int(tokens[-1].max())

    full, full_positions = positions_seen(embedder, TEXTS, trim=False)
    assert set(full_positions) == {77}
    # The whole batch (its longest text is truncated at 77: nothing to trim, same path).
    batch, _ = positions_seen(embedder, TEXTS)
    np.testing.assert_allclose(batch, full, atol=1e-5, rtol=0)
    # Each text alone runs only its own positions; a batch runs its longest text's.
    for i, text in enumerate(TEXTS):
        alone, positions = positions_seen(embedder, [text])
        assert positions == [lengths[i]], text[:30]
        np.testing.assert_allclose(alone[0], full[i], atol=1e-5, rtol=0)
    short, positions = positions_seen(embedder, TEXTS[:4])
    assert positions == [max(lengths[:4])] and positions[0] < 77
    np.testing.assert_allclose(short, full[:4], atol=1e-5, rtol=0)
    assert np.allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)


def test_trimmed_text_embeddings_equal_the_full_context_tiny(tiny_embedder):
    assert_trim_is_exact(tiny_embedder)


@pytest.mark.slow
def test_trimmed_text_embeddings_equal_the_full_context_vit_b_32():
    """The real text tower's size and config (random weights: same computation as trained ones)."""
    assert_trim_is_exact(ClipEmbedder("ViT-B-32", "none", "cpu"))


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """ragkit-tiny with text-tower changes, registered with open_clip under a new name."""
    folder = tmp_path_factory.mktemp("model_configs")

    def make(name: str, top: dict | None = None, **text_cfg) -> ClipEmbedder:
        import open_clip
        config = json.loads(TINY_CONFIG.read_text())
        config["text_cfg"].update(text_cfg)
        config.update(top or {})
        (folder / f"{name}.json").write_text(json.dumps(config))
        open_clip.add_model_config(folder)
        return ClipEmbedder(name, "none", "cpu")
    return make


@pytest.mark.parametrize("name, top, text_cfg, trims", [
    ("ragkit-tiny-eos", None, {"pool_type": "eos", "eos_id": 49407}, True),      # pooled at the eos id
    ("ragkit-tiny-last", None, {"pool_type": "last"}, False),                   # SigLIP-style: last position
    ("ragkit-tiny-first", None, {"pool_type": "first"}, False),
    ("ragkit-tiny-bidir", None, {"no_causal_mask": True}, False),               # bidirectional attention
    ("ragkit-tiny-custom", {"custom_text": True}, {}, False),                   # CustomTextCLIP
])
def test_only_plain_causal_eot_pooled_towers_are_trimmed(variant, name, top, text_cfg, trims):
    import torch
    embedder = variant(name, top, **text_cfg)
    assert embedder.trims_text is trims
    with torch.inference_mode():
        reference = torch.nn.functional.normalize(
            embedder._model.encode_text(embedder._tokenizer(TEXTS[:4])).float(), dim=-1).numpy()
    vectors, positions = positions_seen(embedder, TEXTS[:4])
    np.testing.assert_allclose(vectors, reference, atol=1e-5, rtol=0)
    if trims:
        assert positions == [int(embedder._tokenizer(TEXTS[:4]).argmax(dim=-1).max()) + 1]
    else:
        assert positions == [77]  # the whole context, as open_clip runs it
