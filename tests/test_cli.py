"""`python -m ragkit` end to end: JSON shapes and exit codes (in this process, and in a real one where that matters)."""
import json

import pytest

from tests.conftest import run_cli
from tests.support.cli import run_cli_inprocess
from tests.images_factory import jpeg_bytes


def test_ingest_search_stats_tag_delete(tmp_path, ragkit_env, image_folder):
    (image_folder / "broken.jpg").write_bytes(b"not really a jpeg")
    out = run_cli_inprocess(["ingest", str(image_folder), "--tag", "shoot", "--json"], ragkit_env, tmp_path)
    assert out.returncode == 3, out.stderr  # some inputs rejected, the rest ingested
    report = json.loads(out.stdout)
    assert set(report) >= {"added", "duplicates", "rejected"}
    assert len(report["added"]) == 8 and report["duplicates"] == []
    assert report["rejected"] == [{"path": str(image_folder / "broken.jpg"),
                                   "reason": report["rejected"][0]["reason"]}]
    assert "not an image" in report["rejected"][0]["reason"]
    assert b"RANDOM weights" in out.stderr and b"Traceback" not in out.stderr

    again = run_cli_inprocess(["ingest", str(image_folder / "photo_0.jpg"), "--json"], ragkit_env, tmp_path)
    assert again.returncode == 0 and len(json.loads(again.stdout)["duplicates"]) == 1

    found = run_cli_inprocess(["search", "a golden watch", "-k", "3", "--json"], ragkit_env, tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert len(hits) == 3
    assert all({"sha256", "filename", "score", "tags", "source", "prompt"} <= set(h) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert hits[0]["tags"] == ["shoot"] and hits[0]["source"] == "upload"

    by_image = run_cli_inprocess(["search", "--image", str(image_folder / "photo_0.jpg"), "--json"], ragkit_env, tmp_path)
    assert json.loads(by_image.stdout)["hits"][0]["filename"] == "photo_0.jpg"

    human = run_cli_inprocess(["search", "a golden watch"], ragkit_env, tmp_path)
    assert human.returncode == 0 and b"score" in human.stdout

    stats = json.loads(run_cli_inprocess(["stats", "--json"], ragkit_env, tmp_path).stdout)
    assert stats["assets"] == 8 and stats["generated"] == 0
    assert stats["model"].startswith("ragkit-tiny") and stats["random_weights"] is True
    assert stats["db_uri"].endswith("ragkit.db")

    sha = hits[0]["sha256"]
    tagged = run_cli_inprocess(["tag", sha, "--add", "Hero", "--remove", "shoot", "--json"], ragkit_env, tmp_path)
    assert [asset["tags"] for asset in json.loads(tagged.stdout)["updated"]] == [["hero"]]
    filtered = run_cli_inprocess(["search", "x", "--tag", "hero", "-k", "10", "--json"], ragkit_env, tmp_path)
    assert [h["sha256"] for h in json.loads(filtered.stdout)["hits"]] == [sha]

    deleted = run_cli_inprocess(["delete", sha, "--json"], ragkit_env, tmp_path)
    assert json.loads(deleted.stdout) == {"deleted": 1, "to_trash": True, "not_found": [], "already_in_trash": []}
    assert json.loads(run_cli_inprocess(["stats", "--json"], ragkit_env, tmp_path).stdout)["assets"] == 7


def test_errors_are_one_line_with_distinct_codes(tmp_path, ragkit_env):
    usage = run_cli(["search"], ragkit_env, tmp_path)
    assert usage.returncode == 2

    bad_id = run_cli_inprocess(["delete", "../../etc/passwd"], ragkit_env, tmp_path)
    assert bad_id.returncode == 1 and b"not an asset id" in bad_id.stderr
    assert b"Traceback" not in bad_id.stderr and len(bad_id.stderr.strip().splitlines()) == 1

    (tmp_path / "one.jpg").write_bytes(jpeg_bytes(7))
    assert run_cli_inprocess(["ingest", str(tmp_path / "one.jpg")], ragkit_env, tmp_path).returncode == 0
    injected = run_cli_inprocess(["search", "x", "--tag", 'x" or 1==1 or "', "--json"], ragkit_env, tmp_path)
    assert injected.returncode == 0 and json.loads(injected.stdout)["hits"] == []

    # A new library (an existing one keeps the model it recorded: ragkit.lifecycle.active_model).
    no_weights = run_cli_inprocess(["search", "x"], {**ragkit_env, "RAGKIT_DATA_DIR": str(tmp_path / "new"),
                                           "RAGKIT_CLIP_PRETRAINED": str(tmp_path / "nope.pt")}, tmp_path)
    assert no_weights.returncode == 1 and b"RAGKIT_CLIP_PRETRAINED" in no_weights.stderr
    assert b"Traceback" not in no_weights.stderr

    all_bad = tmp_path / "bad.png"
    all_bad.write_bytes(jpeg_bytes(1)[:100])
    rejected = run_cli_inprocess(["ingest", str(all_bad), "--json"], ragkit_env, tmp_path)
    assert rejected.returncode == 3 and json.loads(rejected.stdout)["added"] == []


@pytest.mark.slow
def test_unreachable_model_hub_fails_fast_with_the_fix(tmp_path, ragkit_env):
    env = {**ragkit_env, "RAGKIT_CLIP_MODEL": "ViT-B-32", "RAGKIT_CLIP_PRETRAINED": "laion2b_s34b_b79k",
           "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-cache")}
    out = run_cli(["search", "a golden watch"], env, tmp_path, timeout=60)
    assert out.returncode == 1
    assert b"RAGKIT_CLIP_PRETRAINED=/path/to/that/file" in out.stderr
    assert b"Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
