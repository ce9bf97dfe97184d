"""Near-duplicate groups: the grouping on real Milvus Lite with vectors whose similarities are known,
the CLI's JSON and exit codes, "keep this one, delete the others", and one run through real pictures.

Random weights crowd unrelated pictures together, so every threshold here is explicit and every
quality claim is left to bench/duplicates_bench.py --quality.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math

import numpy as np
import pytest

from ragkit.cli import main as cli
from ragkit.search.duplicates import find_duplicate_groups, resolve_group, validate_threshold
from ragkit.errors import AssetNotFoundError, InvalidInputError
from ragkit.records import Asset
from tests.conftest import run_cli
from tests.support.cli import run_cli_inprocess
from tests.near_duplicates import Sample, near_duplicate_set

HOSTILE_THRESHOLDS = ["1.5", "-2", "nan", "NaN", "inf", "-inf", "0", "1e309", "abc", "", "0.95; rm -rf /",
                      "0x1", "1.0000001"]


@functools.cache
def labelled_set() -> tuple[Sample, ...]:
    return tuple(near_duplicate_set())


# --- vectors with known similarities --------------------------------------------------------------
def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def at_angle(base: np.ndarray, towards: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector whose cosine with `base` is exactly `cosine`, turned towards `towards`."""
    away = unit(towards - (towards @ base) * base)
    return unit(cosine * base + math.sqrt(1 - cosine ** 2) * away)


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def asset(name: str, width: int = 800, height: int = 600, size_bytes: int = 100_000) -> Asset:
    return Asset(sha(name), f"{name}.jpg", "image/jpeg", width, height, size_bytes)


def store_vectors(library, named: dict[str, np.ndarray], assets: dict[str, Asset] | None = None) -> None:
    """Rows straight into the real store, bypassing the model: the ground truth is the vectors."""
    assets = assets or {}
    rows = [assets.get(name) or asset(name) for name in named]
    library.store.upsert(rows, np.stack(list(named.values())))
    library.store.flush()


def basis(dim: int, seed: int = 0) -> list[np.ndarray]:
    """Orthonormal directions, so that similarities between unrelated test vectors are exactly 0."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return [q[:, i].astype(np.float32) for i in range(dim)]


def scene(dim: int) -> dict[str, np.ndarray]:
    """a-b-c: a chain (0.96, 0.96; a-c only 0.8432); d-e at 0.951; f-g at 0.949; 20 unrelated."""
    e = basis(dim)
    a = e[0]
    b = at_angle(a, e[1], 0.96)
    c = at_angle(b, b - a, 0.96)  # further along the same arc: cos(a, c) = cos(2θ) = 2·0.96² - 1
    d = e[2]
    f = e[3]
    vectors = {"a": a, "b": b, "c": c, "d": d, "e": at_angle(d, e[4], 0.951), "f": f, "g": at_angle(f, e[5], 0.949)}
    rng = np.random.default_rng(1)
    vectors.update({f"other{i}": unit(rng.standard_normal(dim)) for i in range(20)})
    return vectors


def groups_by_name(groups) -> list[set[str]]:
    return sorted(({name.removesuffix(".jpg") for name in g.filenames} for g in groups), key=sorted)


# --- grouping ---------------------------------------------------------------------------------------
def test_groups_are_connected_components_at_the_threshold(library):
    vectors = scene(library.dim)
    store_vectors(library, vectors)
    assert vectors["a"] @ vectors["c"] == pytest.approx(2 * 0.96 ** 2 - 1, abs=1e-5)

    groups = find_duplicate_groups(library, 0.95)

    # a and c are below the threshold, and join through b; f-g (0.949) is not a group; no singletons
    assert groups_by_name(groups) == [{"a", "b", "c"}, {"d", "e"}]
    chain, pair = groups
    assert chain.min_score == pytest.approx(2 * 0.96 ** 2 - 1, abs=1e-4)  # the chain shows as loose
    assert pair.min_score == pytest.approx(0.951, abs=1e-4)


def test_the_same_groups_on_every_engine(any_library):
    """Embedded Lite, `milvus-lite server` and the real Milvus engine (2.3: no group_by, its own
    consistency): the same searches, the same groups."""
    store_vectors(any_library, scene(any_library.dim))
    groups = find_duplicate_groups(any_library, 0.95, batch_size=8)
    assert groups_by_name(groups) == [{"a", "b", "c"}, {"d", "e"}]
    assert groups[0].min_score == pytest.approx(2 * 0.96 ** 2 - 1, abs=1e-4)


def test_a_huge_group_reports_a_lower_bound_not_an_exact_minimum(library, monkeypatch):
    """Above EXACT_MIN_SCORE_UP_TO members the m² pass is skipped; the bound must never overstate."""
    import ragkit.search.duplicates as duplicates
    store_vectors(library, scene(library.dim))
    exact = 2 * 0.96 ** 2 - 1
    monkeypatch.setattr(duplicates, "EXACT_MIN_SCORE_UP_TO", 2)
    chain = find_duplicate_groups(library, 0.95)[0]
    # keeper a or c: the widest angles to it are θ and 2θ, so the bound is cos(3θ); keeper b: exact
    assert chain.min_score <= exact + 1e-5
    assert chain.min_score >= math.cos(3 * math.acos(0.96)) - 1e-5


def test_the_threshold_is_inclusive_and_moves_the_boundary(library):
    store_vectors(library, scene(library.dim))
    assert groups_by_name(find_duplicate_groups(library, 0.949)) == [{"a", "b", "c"}, {"d", "e"}, {"f", "g"}]
    assert groups_by_name(find_duplicate_groups(library, 0.9511)) == [{"a", "b", "c"}]
    assert find_duplicate_groups(library, 0.97) == []


def test_a_group_bigger_than_the_candidates_still_joins_up(library):
    """Twelve copies along an arc, each asking for only its 2 nearest: union-find links them all."""
    e = basis(library.dim)
    arc = [e[0]]
    for _ in range(11):
        arc.append(at_angle(arc[-1], arc[-1] - arc[-2] if len(arc) > 1 else e[1], 0.999))
    store_vectors(library, {f"copy{i}": v for i, v in enumerate(arc)})

    groups = find_duplicate_groups(library, 0.99, candidates=2, batch_size=5)

    assert [len(g.assets) for g in groups] == [12]
    assert groups[0].min_score == pytest.approx(float(arc[0] @ arc[-1]), abs=1e-4)


def test_each_group_names_the_copy_to_keep_first(library):
    e = basis(library.dim)
    sizes = {"small": asset("small", 400, 300, 900_000), "big-light": asset("big-light", 1600, 1200, 200_000),
             "big-heavy": asset("big-heavy", 1200, 1600, 700_000)}
    store_vectors(library, {"small": e[0], "big-light": at_angle(e[0], e[1], 0.98),
                            "big-heavy": at_angle(e[0], e[2], 0.99)}, sizes)

    [group] = find_duplicate_groups(library, 0.95)

    # most pixels wins; between equal pixel counts, the bigger (less compressed) file
    assert group.keep == sha("big-heavy") and group.sha256s[0] == group.keep
    assert group.scores[0] == pytest.approx(1.0)
    assert group.filenames[1:] == ["small.jpg", "big-light.jpg"]  # most similar to the keeper first
    assert group.scores[1] == pytest.approx(0.99, abs=1e-4)
    described = group.to_dict()
    assert described["keep"] == sha("big-heavy") and described["dimensions"][0] == [1200, 1600]
    assert described["size_bytes"] == [700_000, 900_000, 200_000]


def test_progress_reaches_every_asset(library):
    store_vectors(library, scene(library.dim))
    seen = []
    find_duplicate_groups(library, 0.95, batch_size=10, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(10, 27), (20, 27), (27, 27)]


@pytest.mark.parametrize("value", [*HOSTILE_THRESHOLDS, None, float("nan"), 2, -0.5])
def test_a_threshold_outside_0_to_1_is_refused_with_the_range(value):
    with pytest.raises(InvalidInputError, match="above 0 and at most 1"):
        validate_threshold(value)


# --- keep one, delete the others -------------------------------------------------------------------
def ingested_group(library, tmp_path, count: int = 3):
    """`count` real pictures (files and rows), their vectors set to one tight group, plus a bystander."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    samples = [s for s in labelled_set() if s.variant in ("original", "q70", "png16", "resize50")]
    for sample in samples[:count] + [samples[-1]]:  # the last is another shot: the bystander
        (folder / sample.name).write_bytes(sample.data)
    report = library.ingest_paths([folder])
    assert not report.rejected
    members = [a for _, a in report.added if a.filename in {s.name for s in samples[:count]}]
    bystander = next(a for _, a in report.added if a.filename == samples[-1].name)
    e = basis(library.dim)
    vectors = [e[0]] + [at_angle(e[0], e[i + 1], 0.99) for i in range(count - 1)] + [e[count + 1]]
    library.store.upsert([*members, bystander], np.stack(vectors))
    library.store.flush()
    [group] = find_duplicate_groups(library, 0.95)
    return group, bystander


def exists(library, sha256: str) -> bool:
    return library.store.get(sha256) is not None


def files_exist(library, sha256: str) -> bool:
    return library.blobs.original_path(sha256).is_file() and library.blobs.thumbnail_path(sha256).is_file()


def test_resolving_a_group_keeps_the_chosen_asset_and_moves_the_others_to_the_trash(library, tmp_path):
    group, bystander = ingested_group(library, tmp_path)
    keep = group.sha256s[1]  # not the suggested one: the person chose
    others = group.others(keep)

    assert resolve_group(library, keep, group) == 2

    assert exists(library, keep) and files_exist(library, keep)
    assert sorted(a.sha256 for a in library.trashed()) == sorted(others)  # restorable, files kept
    assert all(files_exist(library, gone) for gone in others)
    assert exists(library, bystander.sha256) and files_exist(library, bystander.sha256)
    assert library.count() == 2
    library.empty_trash()
    for gone in others:
        assert not exists(library, gone)
        assert not library.blobs.original_path(gone).exists() and not library.blobs.thumbnail_path(gone).exists()


def test_resolving_refuses_when_the_keeper_is_in_the_trash(library, tmp_path):
    group, _ = ingested_group(library, tmp_path)
    library.trash([group.keep])
    with pytest.raises(AssetNotFoundError, match="nothing was deleted"):
        resolve_group(library, group.keep, group)
    assert library.trash_count() == 1


def test_resolving_refuses_a_keeper_outside_the_group_and_deletes_nothing(library, tmp_path):
    group, bystander = ingested_group(library, tmp_path)
    with pytest.raises(InvalidInputError, match="not in this group"):
        resolve_group(library, bystander.sha256, group)
    with pytest.raises(InvalidInputError):
        resolve_group(library, "../../etc/passwd", group)
    assert all(exists(library, s) and files_exist(library, s) for s in group.sha256s)


def test_resolving_refuses_when_the_keeper_was_deleted_meanwhile(library, tmp_path):
    """Another session deleted the copy to keep: deleting the others now would lose the picture."""
    group, _ = ingested_group(library, tmp_path)
    library.delete([group.keep])
    with pytest.raises(AssetNotFoundError, match="nothing was deleted"):
        resolve_group(library, group.keep, group)
    assert all(exists(library, s) and files_exist(library, s) for s in group.others(group.keep))


# --- the command line --------------------------------------------------------------------------------
def test_cli_json_lists_the_groups(library, tmp_path, ragkit_env):
    store_vectors(library, scene(library.dim))
    library.close()  # the CLI is another process: free the Lite file

    out = run_cli_inprocess(["duplicates", "--threshold", "0.95", "--json"], ragkit_env, tmp_path)

    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert document["threshold"] == 0.95 and document["random_weights"] is True
    assert b"RANDOM weights" in out.stderr
    groups = document["groups"]
    assert [sorted(g["filenames"]) for g in groups] == [["a.jpg", "b.jpg", "c.jpg"], ["d.jpg", "e.jpg"]]
    for group in groups:
        assert {"sha256s", "filenames", "min_score", "keep", "scores", "dimensions", "size_bytes"} <= set(group)
        assert group["keep"] == group["sha256s"][0] and len(group["scores"]) == len(group["sha256s"])
    assert groups[0]["min_score"] == pytest.approx(0.8432, abs=1e-3)


def test_cli_human_output_and_an_empty_library(library, tmp_path, ragkit_env):
    library.close()
    empty = run_cli_inprocess(["duplicates", "--threshold", "0.9", "--json"], ragkit_env, tmp_path)
    assert empty.returncode == 0 and json.loads(empty.stdout)["groups"] == []

    reopened = type(library).open(library.settings, embedder=library.embedder)
    try:
        store_vectors(reopened, scene(reopened.dim))
    finally:
        reopened.close()
    human = run_cli_inprocess(["duplicates", "--threshold", "0.95"], ragkit_env, tmp_path)
    assert human.returncode == 0, human.stderr
    text = human.stdout.decode()
    assert text.count("group ") == 2 and "keep" in text and "d.jpg" in text and "f.jpg" not in text
    assert b"2 group(s)" in human.stderr and b"delete 3 asset(s)" in human.stderr


@pytest.mark.parametrize("value", HOSTILE_THRESHOLDS)
def test_cli_refuses_a_bad_threshold_as_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["duplicates", f"--threshold={value}"])  # = : "-inf" reaches the check
    assert exit_.value.code == cli.EXIT_USAGE
    assert "above 0 and at most 1" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "257", "many"])
def test_cli_refuses_a_bad_candidate_count_as_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["duplicates", f"--candidates={value}"])
    assert exit_.value.code == cli.EXIT_USAGE


def test_cli_usage_error_exit_code_in_a_real_process(tmp_path, ragkit_env):
    out = run_cli(["duplicates", "--threshold", "nan"], ragkit_env, tmp_path)
    assert out.returncode == 2 and b"Traceback" not in out.stderr


# --- end to end: real pictures, the real (tiny, random) model -----------------------------------------
def test_copies_of_one_shot_group_and_other_pictures_do_not(tmp_path, ragkit_env):
    """Re-encodes, a 16-bit PNG, an EXIF-rotated copy, a half-size copy and a small crop of one
    product shot, beside the same product in another colour, the same product reshot, and a photo.
    The threshold is the tiny random model's (0.999), not a real one's: see the module docstring."""
    wanted = {"red-sneaker": {"original", "q40", "png16", "exif-rotated", "resize50", "crop5"},
              "blue-sneaker": {"other-colour"}, "red-sneaker-reshot": {"reshot"}, "photo11": {"original"}}
    folder = tmp_path / "shoot"
    folder.mkdir()
    copies, apart = [], []
    for sample in labelled_set():
        shot = sample.shot or sample.name.removesuffix(".jpg")
        if sample.variant in wanted.get(shot, ()):
            (folder / sample.name).write_bytes(sample.data)
            (copies if sample.shot == "red-sneaker" else apart).append(sample.name)
    assert run_cli_inprocess(["ingest", str(folder)], ragkit_env, tmp_path).returncode == 0

    out = run_cli_inprocess(["duplicates", "--threshold", "0.999", "--json"], ragkit_env, tmp_path)

    assert out.returncode == 0, out.stderr
    [group] = json.loads(out.stdout)["groups"]
    assert sorted(group["filenames"]) == sorted(copies) and len(apart) == 3
    keep = group["filenames"][group["sha256s"].index(group["keep"])]
    assert keep not in ("red-sneaker-resize50.jpg", "red-sneaker-crop5.jpg")  # a full-size copy is kept
