"""Search beyond one vector: words and codes (CLIP + BM25, fused), and "like this, but red".

With random CLIP weights the picture route ranks nothing meaningfully, so whatever the keyword route
contributes is visible: a code in a file name must still come first."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ragkit.search import hybrid
from ragkit.errors import InvalidInputError
from ragkit.ingest.pipeline import Upload
from ragkit.records import ROUTE_CLIP, ROUTE_KEYWORDS
from tests.support.cli import run_cli_inprocess
from tests.images_factory import jpeg_bytes


def _fill(library, with_code_last: bool = False):
    """40 camera-named pictures (half tagged 'hero'), and one product shot named by its SKU."""
    others = [Upload(f"IMG_{2200 + i}.jpg", jpeg_bytes(400 + i)) for i in range(40)]
    sku = Upload("SKU-4471 red cape.jpg", jpeg_bytes(499))
    if not with_code_last:
        library.ingest_uploads([sku, *others[:20]], tags=["hero"])
        library.ingest_uploads(others[20:])
    else:  # the same assets, but the SKU alone in a segment of its own, written last
        library.ingest_uploads(others[:20], tags=["hero"])
        library.ingest_uploads(others[20:])
        library.ingest_uploads([sku], tags=["hero"])


def test_a_code_in_a_file_name_comes_first(any_library):
    if any_library.keyword_search_unavailable:  # the real Milvus 2.3 engine: no full-text search there
        pytest.skip(any_library.keyword_search_unavailable)
    _fill(any_library)
    hits = any_library.search_text("SKU-4471", k=5)
    assert hits[0].asset.filename == "SKU-4471 red cape.jpg"
    assert ROUTE_KEYWORDS in hits[0].routes and set(hits[0].matched) == {"sku", "4471"}
    assert any(hit.routes == (ROUTE_CLIP,) for hit in hits[1:])  # the picture route still contributes
    exact = any_library.search_text("IMG_2231", k=3)
    assert exact[0].asset.filename == "IMG_2231.jpg"  # not just any IMG_ file


def test_a_tag_word_finds_its_assets(library):
    _fill(library)
    hits = library.search_text("hero", k=60)
    by_words = {h.asset.filename for h in hits if ROUTE_KEYWORDS in h.routes}
    hero = {a.filename for a in library.page(0, 100, tags=["hero"]).assets}
    assert by_words == hero and len(hero) == 21


def test_without_keywords_it_is_the_picture_route_alone(library):
    _fill(library)
    plain = library.search_text("SKU-4471", k=5, keywords=False)
    assert all(h.routes == (ROUTE_CLIP,) and not h.matched for h in plain)
    assert [h.asset.sha256 for h in plain] == \
        [h.asset.sha256 for h in library.store.search(library.embedder.embed_texts(["SKU-4471"])[0], 5)]


def test_a_keyword_hits_rank_does_not_depend_on_its_segment(settings, tiny_embedder, tmp_path):
    """Milvus computes BM25's IDF per segment; the fused order must not move with the flushes."""
    from ragkit.config import Settings
    from ragkit.library import Library
    rankings = []
    for layout, with_code_last in (("one", False), ("two", True)):
        env = {"RAGKIT_DATA_DIR": str(tmp_path / layout), "RAGKIT_CLIP_MODEL": settings.clip_model,
               "RAGKIT_CLIP_PRETRAINED": settings.clip_pretrained}
        library = Library.open(Settings.load(env=env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
        try:
            _fill(library, with_code_last)
            rankings.append({q: [h.asset.filename for h in library.search_text(q, k=8)]
                             for q in ("SKU-4471", "hero", "red cape hero")})
        finally:
            library.close()
    assert rankings[0]["SKU-4471"][0] == rankings[1]["SKU-4471"][0] == "SKU-4471 red cape.jpg"
    words_first = [r["red cape hero"][0] for r in rankings]
    assert words_first == ["SKU-4471 red cape.jpg"] * 2  # the only asset with all three words
    keyword_order = [[n for n in r["hero"]] for r in rankings]
    assert keyword_order[0] == keyword_order[1]


def test_the_composed_vector_is_the_documented_formula():
    rng = np.random.default_rng(3)
    picture, words, avoid = (v / np.linalg.norm(v) for v in rng.standard_normal((3, 64)).astype(np.float32))
    expected = 0.3 * picture + 0.7 * words - 0.5 * avoid
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(hybrid.composed_vector(picture, words, 0.7, avoid), expected, atol=1e-6)
    np.testing.assert_allclose(hybrid.composed_vector(picture, words, 0.0), picture, atol=1e-6)
    np.testing.assert_allclose(hybrid.composed_vector(picture, words, 1.0), words, atol=1e-6)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidInputError, match="text weight"):
            hybrid.composed_vector(picture, words, bad)
    with pytest.raises(InvalidInputError, match="cancel"):
        hybrid.composed_vector(picture, picture.copy(), 0.5, not_words=picture / NOT_HALF)


NOT_HALF = hybrid.NOT_WEIGHT


def test_like_this_but_red_searches_with_the_composed_vector(library):
    _fill(library)
    example = library.page(0, 1).assets[0]
    hits = library.search_composed(similar=example.sha256, text="in red", text_weight=0.4, not_text="people", k=5)
    picture = library.store.get_vector(example.sha256)
    words, avoid = library.embedder.embed_texts(["in red", "people"])
    expected = hybrid.composed_vector(picture, words, 0.4, avoid)
    reference = [h.asset.sha256 for h in library.store.search(expected, 6) if h.asset.sha256 != example.sha256][:5]
    assert [h.asset.sha256 for h in hits] == reference and example.sha256 not in reference
    by_upload = library.search_composed(image=jpeg_bytes(499), text="in red", k=3)
    assert len(by_upload) == 3


def test_cli_composed_and_keyword_flags(library, ragkit_env, tmp_path):
    _fill(library)
    library.close()
    photo = tmp_path / "example.jpg"
    photo.write_bytes(jpeg_bytes(401))
    out = run_cli_inprocess(["search", "in red", "--image", str(photo), "--text-weight", "0.3", "--not", "people", "-k", "3",
                   "--json"], ragkit_env, tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert len(json.loads(out.stdout)["hits"]) == 3
    out = run_cli_inprocess(["search", "SKU-4471", "--json"], ragkit_env, tmp_path)
    first = json.loads(out.stdout)["hits"][0]
    assert first["filename"] == "SKU-4471 red cape.jpg" and "keywords" in first["routes"]
    out = run_cli_inprocess(["search", "SKU-4471", "--no-keywords", "--json"], ragkit_env, tmp_path)
    assert all(hit["routes"] == ["clip"] for hit in json.loads(out.stdout)["hits"])
    for args in (["search", "x", "--image", str(photo), "--text-weight", "1.5"],
                 ["search", "x", "--not", "people"]):
        bad = run_cli_inprocess(args, ragkit_env, tmp_path)
        assert bad.returncode == 2 and b"Traceback" not in bad.stderr, bad.stderr


def test_a_milvus_without_full_text_search_says_so_and_still_searches(real_milvus, tmp_path, tiny_checkpoint,
                                                                       tiny_embedder, image_folder):
    """Milvus 2.3 (the tested real engine) has no sparse vectors: the library is made without BM25,
    text queries are by picture alone, and `search` says why words are not matched."""
    from ragkit.config import Settings
    from ragkit.library import Library
    from tests.conftest import make_env
    real_milvus.drop_all_collections()
    env = make_env(tmp_path / "data", tiny_checkpoint, **real_milvus.env)
    library = Library.open(Settings.load(env=env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    try:
        library.ingest_paths([image_folder])
        assert "Milvus 2.5" in library.keyword_search_unavailable
        hits = library.search_text("photo_3", k=3)
        assert len(hits) == 3 and all(h.routes == (ROUTE_CLIP,) for h in hits)
    finally:
        library.close()
    out = run_cli_inprocess(["search", "photo_3"], env, tmp_path)
    assert out.returncode == 0 and b"not searched" in out.stderr and b"Milvus 2.5" in out.stderr
