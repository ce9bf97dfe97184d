"""Captions (ragkit.studio.captions, ragkit.studio.describe, `python -m ragkit describe`): the real google-genai
client against the local Gemini-format server, real Milvus Lite, the tiny random CLIP model."""
from __future__ import annotations

import hashlib
import io
import json
import signal
import time

import pytest
from PIL import Image

from ragkit.config import Settings
from ragkit.errors import BatchError
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from ragkit.records import ROUTE_KEYWORDS
from ragkit.studio import describe
from ragkit.studio.cost import CostLedger
from tests.conftest import GEMINI_TEST_KEY
from tests.support.cli import popen_cli, run_cli_inprocess
from devtools.fake_gemini import (caption_failure_reply, caption_for, caption_reply, quota_reply, slow_reply)
from tests.images_factory import jpeg_bytes

KEY = GEMINI_TEST_KEY


@pytest.fixture
def lib(gemini_library):
    """This module's name for the shared Gemini-backed library (tests/conftest.py)."""
    return gemini_library


def add(library, seeds, tag: str = "") -> list[str]:
    uploads = [Upload(f"IMG_{seed:04d}.jpg", jpeg_bytes(seed)) for seed in seeds]
    return [asset.sha256 for _, asset in library.ingest_uploads(uploads, tags=[tag] if tag else ()).added]


def run(library, **what) -> describe.Outcome:
    retry = what.pop("retry_failed", False)
    plan = describe.plan_describe(library, retry_failed=retry, **what)
    return describe.describe(library, plan, concurrency=2, backoff_s=0.05, retry_failed=retry)


def answer_by_image(library, answers: dict[str, object]):
    """A fake reply per asset: `answers` maps an asset id to a Reply or a caption failure mode."""
    from ragkit.studio.describe import _load_image
    replies = {sha: caption_failure_reply(answer) if isinstance(answer, str) else answer
               for sha, answer in answers.items()}
    # What is sent is the original as prepared for the model: map those bytes back to their asset.
    asset_of = {hashlib.sha256(_load_image(library, sha).data).hexdigest(): sha for sha in answers}
    return lambda request: replies[asset_of[hashlib.sha256(request.images[0][1]).hexdigest()]]


# ----------------------------------------------------------------------------- the request
def test_the_request_carries_the_image_and_asks_for_json_with_the_schema(lib, fake_gemini):
    [sha] = add(lib, [1])
    outcome = run(lib, ids=[sha])

    [request] = fake_gemini.requests
    assert request.model == "gemini-3.5-flash-lite"  # RAGKIT_CAPTION_MODEL's default
    [(mime, data)] = request.images
    with Image.open(io.BytesIO(data)) as sent, Image.open(io.BytesIO(lib.original_bytes(sha))) as original:
        assert mime == "image/jpeg" and sent.size == original.size
    assert request.wants_json
    schema = request.response_schema
    assert schema["type"] == "OBJECT" and set(schema["required"]) == {"caption", "tags"}
    assert schema["properties"]["caption"]["type"] == "STRING"
    tags = schema["properties"]["tags"]
    assert tags["type"] == "ARRAY" and tags["items"]["type"] == "STRING"
    assert int(tags.get("maxItems", tags.get("max_items"))) == 8
    assert "one sentence" in request.brief and "tags" in request.brief

    caption, _ = caption_for(data)
    [item] = outcome.items
    assert item.status == describe.DONE and item.caption == caption
    assert lib.get(sha).caption == caption


def test_a_caption_model_setting_is_what_is_asked(tmp_path, gemini_env, fake_gemini, tiny_embedder):
    env = {**gemini_env, "RAGKIT_CAPTION_MODEL": "gemini-3.1-flash-lite"}
    library = Library.open(Settings.load(env=env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    try:
        run(library, ids=add(library, [2]))
    finally:
        library.close()
    assert fake_gemini.requests[0].model == "gemini-3.1-flash-lite"


# ----------------------------------------------------------------------------- search by caption
def test_a_captioned_asset_is_found_by_a_word_of_its_caption_and_a_new_caption_replaces_it(lib, fake_gemini):
    ids = add(lib, range(10, 16))
    target = ids[3]
    assert not any(ROUTE_KEYWORDS in hit.routes for hit in lib.search_text("zeppelin", k=6))

    fake_gemini.always(caption_reply("A brass zeppelin drifting over a harbour at dawn.", ["zeppelin", "harbour"]))
    run(lib, ids=[target])
    [hit] = [h for h in lib.search_text("zeppelin", k=6) if ROUTE_KEYWORDS in h.routes]
    assert hit.asset.sha256 == target and hit.matched == ("zeppelin",)
    assert lib.search_text("zeppelin", k=6)[0].asset.sha256 == target  # the word match ranks first

    fake_gemini.always(caption_reply("A copper submarine in a dry dock.", ["submarine"]))
    run(lib, ids=[target], new=True)  # describe it again
    assert not any(ROUTE_KEYWORDS in h.routes for h in lib.search_text("zeppelin", k=6))
    [hit] = [h for h in lib.search_text("submarine", k=6) if ROUTE_KEYWORDS in h.routes]
    assert hit.asset.sha256 == target


# ----------------------------------------------------------------------------- failures
def test_malformed_and_unfinished_answers_are_recorded_with_their_reason_and_their_cost(lib, fake_gemini):
    modes = {"bad-json": "not valid JSON", "missing-field": "has no caption", "too-many-tags": "suggested 12 tags",
             "long-caption": "characters long", "max-tokens": "did not finish"}
    ids = add(lib, range(20, 20 + len(modes) + 1))
    fake_gemini.always(answer_by_image(lib, {**dict(zip(ids, modes)), ids[-1]: caption_reply("A red kite.", ["kite"])}))

    outcome = run(lib, ids=ids)

    by_id = {item.sha256: item for item in outcome.items}
    for sha, (mode, expected) in zip(ids, modes.items()):
        item = by_id[sha]
        assert item.status == describe.FAILED and expected in item.reason, (mode, item.reason)
        asset = lib.get(sha)
        assert asset.caption == "" and expected in describe.last_failure(asset)
        assert describe.suggested_tags(asset) == []
    assert by_id[ids[-1]].status == describe.DONE and lib.get(ids[-1]).caption == "A red kite."
    # Every answer was billed, the bad ones too: one ledger line each, with its tokens.
    assert CostLedger(lib.settings.data_dir).totals().generations == len(ids)
    assert all(item.usage["prompt_tokens"] > 0 and item.cost_usd > 0 for item in outcome.items)


def test_a_refusal_is_recorded_the_asset_still_works_and_all_skips_it_until_retried(lib, fake_gemini):
    ids = add(lib, range(30, 33), tag="shoes")
    refused = ids[1]
    fake_gemini.always(answer_by_image(lib, {ids[0]: caption_reply("A blue shoe.", ["shoe"]), refused: "safety",
                                             ids[2]: caption_reply("A green shoe.", ["shoe"])}))
    outcome = run(lib, everything=True)
    assert outcome.counts() == {"pending": 0, "done": 2, "failed": 1}
    assert "refused" in outcome.items[[i.sha256 for i in outcome.items].index(refused)].reason

    asset = lib.get(refused)  # still a working asset: details, search, tags
    assert asset.caption == "" and "SAFETY" in describe.last_failure(asset)
    assert refused in [h.asset.sha256 for h in lib.search_similar(ids[0], k=3)]
    assert lib.update_tags(refused, add=["hero"]).tags == ("shoes", "hero")
    assert lib.store.matching_ids(tags=["shoes"]).count(refused) == 1

    sent = len(fake_gemini.requests)
    again = run(lib, everything=True)  # nothing left without a caption but the refused one: skipped
    assert len(fake_gemini.requests) == sent and again.items == []
    assert [s["sha256"] for s in again.skipped] == [refused] and "--retry-failed" in again.skipped[0]["reason"]

    fake_gemini.always(caption_reply("A yellow shoe.", ["shoe"]))
    retried = run(lib, tag="shoes", retry_failed=True)
    assert [i.sha256 for i in retried.items] == [refused] and lib.get(refused).caption == "A yellow shoe."
    assert describe.last_failure(lib.get(refused)) == ""


def test_a_429_storm_backs_off_for_the_server_delay_and_finishes(lib, fake_gemini):
    ids = add(lib, range(40, 44))
    fake_gemini.enqueue(quota_reply(0.3, model="gemini-3.5-flash-lite"), quota_reply(0.3, model="gemini-3.5-flash-lite"))
    started = time.monotonic()
    outcome = run(lib, ids=ids)
    assert outcome.counts()["done"] == 4
    assert len(fake_gemini.requests) == 6 and time.monotonic() - started >= 0.3
    # While paused, nobody sent: the requests after the first 429 came at least its delay later.
    first_429 = fake_gemini.requests[0].at
    assert all(r.at - first_429 >= 0.29 for r in fake_gemini.requests[2:])


# ----------------------------------------------------------------------------- suggested tags
def test_suggested_tags_wait_until_accepted_and_dismissed_ones_go_away(lib, fake_gemini):
    [sha] = add(lib, [50], tag="summer")
    fake_gemini.always(caption_reply("A straw hat on a beach towel.", ["Straw Hat", "beach", "summer", "towel"]))
    [item] = run(lib, ids=[sha]).items
    assert item.suggested_tags == ["straw hat", "beach", "towel"]  # normalised; one it has already is not offered

    asset = lib.get(sha)
    assert asset.tags == ("summer",)
    assert describe.suggested_tags(asset) == ["straw hat", "beach", "towel"]
    assert lib.store.matching_ids(tags=["beach"]) == []

    with pytest.raises(BatchError, match="not among the suggested tags"):
        describe.resolve_suggested_tags(lib, sha, accept=["volcano"])
    asset = describe.resolve_suggested_tags(lib, sha, accept=["beach"], dismiss=["towel"])
    assert asset.tags == ("summer", "beach") and describe.suggested_tags(asset) == ["straw hat"]
    assert lib.store.matching_ids(tags=["beach"]) == [sha]
    assert lib.get(sha).caption == "A straw hat on a beach towel."


# ----------------------------------------------------------------------------- the command
def _captioned(data_dir) -> int:
    states = list((data_dir / "captions").glob("*/state.json"))
    return sum(i["status"] == "done" for path in states for i in json.loads(path.read_text())["items"])


def test_killed_mid_describe_the_same_command_describes_only_the_rest(tmp_path, gemini_env, fake_gemini,
                                                                      tiny_embedder):
    library = Library.open(Settings.load(env=gemini_env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    try:
        add(library, range(60, 70))
    finally:
        library.close()  # frees the Milvus Lite file for the commands
    fake_gemini.always(lambda request: slow_reply(0.3, caption_reply(*caption_for(request.images[0][1]))))
    command = ["describe", "--all", "--concurrency", "2", "--json"]

    first = popen_cli(command, gemini_env, tmp_path)
    deadline = time.monotonic() + 60
    while _captioned(tmp_path / "data") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    sent_before = len(fake_gemini.requests)
    # What the library holds is the record (a caption can land just before its job's state says so).
    library = Library.open(Settings.load(env=gemini_env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    try:
        done_at_kill = sum(bool(asset.caption) for asset in library.page(0, 20).assets)
    finally:
        library.close()
    assert 3 <= done_at_kill < 10, done_at_kill

    second = run_cli_inprocess(command, gemini_env, tmp_path)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert len(fake_gemini.requests) - sent_before == len(report["items"]) == 10 - done_at_kill
    assert report["counts"] == {"pending": 0, "done": 10 - done_at_kill, "failed": 0}

    library = Library.open(Settings.load(env=gemini_env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    try:
        assets = library.page(0, 20).assets
        assert len(assets) == 10 and all(asset.caption for asset in assets)
    finally:
        library.close()
    # The ledger has a line for every answered request, those of the killed run included.
    assert CostLedger(tmp_path / "data").totals().generations >= len(fake_gemini.requests) - 2


def test_ingest_describe_captions_the_added_images_and_a_missing_key_says_what_to_do(tmp_path, gemini_env,
                                                                                     fake_gemini):
    folder = tmp_path / "new"
    folder.mkdir()
    for seed in (70, 71):
        (folder / f"new-{seed}.jpg").write_bytes(jpeg_bytes(seed))
    no_key = {k: v for k, v in gemini_env.items() if k != "GEMINI_API_KEY"}
    refused = run_cli_inprocess(["ingest", str(folder), "--describe"], no_key, tmp_path)
    assert refused.returncode == 1 and "GEMINI_API_KEY" in refused.stderr.decode()
    assert not (tmp_path / "data" / "originals").exists() or not any((tmp_path / "data" / "originals").rglob("*.*"))

    done = run_cli_inprocess(["ingest", str(folder), "--describe", "--json"], gemini_env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    captions = {item["sha256"]: item["caption"] for item in report["describe"]["items"]}
    assert set(captions) == {a["sha256"] for a in report["added"]} and all(captions.values())
    assert KEY not in done.stderr.decode() + done.stdout.decode()

    shown = run_cli_inprocess(["describe", next(iter(captions))], no_key, tmp_path)
    assert shown.returncode == 1 and "GEMINI_API_KEY" in shown.stderr.decode()
