"""Batch promo jobs (ragkit.studio.batch, `python -m ragkit batch`): the real google-genai client against
the local Gemini-format server, real Milvus Lite, the tiny CLIP model."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import signal
import threading
import time
import zipfile
from pathlib import Path

import pytest

from ragkit.cli import main as cli
from ragkit.config import Settings
from ragkit.errors import BatchError
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from ragkit.studio import batch, kits
from ragkit.studio.cost import CostLedger, PriceTable
from tests.conftest import GEMINI_TEST_KEY
from tests.support.cli import popen_cli, run_cli_inprocess
from devtools.fake_gemini import (FakeGemini, Reply, blocked_reply, error_reply, finish_reply, image_reply, make_png,
                               quota_reply, slow_reply, text_reply, usage_metadata)
from tests.images_factory import jpeg_bytes

KEY = GEMINI_TEST_KEY
BRIEF = "The product on a pastel podium, soft studio light"


@pytest.fixture
def lib(gemini_library):
    """This module's name for the shared Gemini-backed library (tests/conftest.py)."""
    return gemini_library


def add(library, seeds, tag: str = "", name: str = "product") -> list[str]:
    uploads = [Upload(f"{name}-{seed}.jpg", jpeg_bytes(seed)) for seed in seeds]
    return [asset.sha256 for _, asset in library.ingest_uploads(uploads, tags=[tag] if tag else ()).added]


def run(library, spec, **options) -> batch.BatchJob:
    store = batch.job_store(library.settings)
    job = store.create(spec)
    return batch.run_batch(store, job.id, library, backoff_s=0.05, **options)


def first_image(request) -> bytes:
    return request.images[0][1]


def distinct_image(request) -> Reply:
    """A picture of its own for every request."""
    seed = hashlib.sha256(first_image(request)).hexdigest() + repr(request.at)
    return image_reply("ok", make_png(seed), usage=usage_metadata(prompt=10, text=1, reference_images=len(request.images)))


# ----------------------------------------------------------------------------- what is sent
def test_four_products_two_variations_make_eight_requests_product_first_kit_after(lib, fake_gemini):
    products = add(lib, range(10, 14), tag="spring")
    logo, palette = add(lib, (90, 91), name="brand")
    kit = kits.KitStore(lib.settings.data_dir).save(kits.make_kit(
        "Acme", style="pastel colours, flat light", reference_ids=[logo, palette], avoid=["text", "watermarks"],
        aspect="4:5"))
    spec = batch.plan_batch(lib, BRIEF, tag="spring", kit=kit, variations=2)

    job = run(lib, spec)

    originals = {sha: lib.original_bytes(sha) for sha in [*products, logo, palette]}
    assert len(fake_gemini.requests) == 8
    firsts = [first_image(r) for r in fake_gemini.requests]
    assert sorted(firsts) == sorted(originals[p] for p in products for _ in range(2))  # each product twice
    for request in fake_gemini.requests:
        assert [data for _, data in request.images[1:]] == [originals[logo], originals[palette]]
        assert request.brief.startswith(BRIEF)
        assert "Brand style: pastel colours, flat light" in request.brief
        assert "Do not show or include: text, watermarks." in request.brief
        assert request.aspect_ratio == "4:5"  # the kit's default
    assert job.counts() == {"pending": 0, "done": 8, "failed": 0}
    assert all(job.image_path(t).is_file() for t in job.takes)
    assert len({job.image_path(t).read_bytes() for t in job.takes}) == 8  # a picture per request


def test_cli_with_ref_follows_each_product_and_the_json_reports_every_item(lib, fake_gemini, gemini_env, tmp_path,
                                                                        monkeypatch, capsys):
    products = add(lib, (15, 16))
    extra = add(lib, (96,), name="backdrop")[0]
    for name, value in gemini_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("ragkit.cli.common.open_library", lambda settings: lib)  # in process, on the test's library
    # The second product is also added to every request: its own requests carry it once, first.
    code = cli.main(["batch", "--brief", BRIEF, "--ref-each", *products, "--with-ref", extra,
                     "--with-ref", products[1], "-n", "2", "--json"])
    out, err = capsys.readouterr()

    assert code == 0, err
    original = lib.original_bytes
    expected = [[original(products[0]), original(extra), original(products[1])]] * 2 + \
        [[original(products[1]), original(extra)]] * 2
    assert sorted([data for _, data in r.images] for r in fake_gemini.requests) == sorted(expected)
    report = json.loads(out)
    assert {"job", "items", "cost_usd"} <= set(report) and report["cost_usd"] > 0
    assert [(i["reference"], i["status"], len(i["images"]), i["reason"]) for i in report["items"]] == [
        (products[0], "done", 2, None), (products[1], "done", 2, None)]
    assert all(Path(image["path"]).is_file() for item in report["items"] for image in item["images"])


def test_too_many_references_for_the_model_are_refused_before_anything_is_sent(lib, fake_gemini):
    products = add(lib, (20, 21))
    brand = add(lib, (92, 93, 94), name="brand")
    kit = kits.KitStore(lib.settings.data_dir).save(kits.make_kit("Big", reference_ids=brand))
    with pytest.raises(BatchError, match="4 references.*Nano Banana 2 Lite takes at most 3.*Remove 1"):
        batch.plan_batch(lib, BRIEF, ref_each=products, kit=kit, model="gemini-3.1-flash-lite-image")
    spec = batch.plan_batch(lib, BRIEF, ref_each=products, kit=kit, model="gemini-3-pro-image")
    assert len(spec.references_for(products[0])) == 4
    assert fake_gemini.requests == []


def test_unusable_products_are_skipped_with_their_reason(lib, fake_gemini):
    products = add(lib, range(30, 33), tag="sale")
    restricted = lib.get(products[1])
    lib.store.upsert([dataclasses.replace(restricted, no_reference=True)], lib.store.get_vector(products[1])[None])
    spec = batch.plan_batch(lib, BRIEF, tag="sale")
    assert set(spec.products) == {products[0], products[2]}
    assert spec.skipped == ({"reference": products[1], "reason": "product-31.jpg: it is marked “do not use as a reference”"},)
    job = run(lib, spec)
    report = batch.job_report(job)
    assert [(i["reference"], i["status"]) for i in report["items"]][-1] == (products[1], "skipped")
    assert len(fake_gemini.requests) == 2


# ----------------------------------------------------------------------------- failures
def test_a_429_storm_backs_off_for_the_server_delay_and_finishes(lib, fake_gemini):
    products = add(lib, range(40, 44))
    delay = 0.6
    fake_gemini.enqueue(*[quota_reply(delay)] * 5)  # the first five answers: quota exceeded, retry in 0.6 s
    started = time.monotonic()
    job = run(lib, batch.plan_batch(lib, BRIEF, ref_each=products), concurrency=4)

    assert job.counts()["done"] == 4
    statuses = [r for r in fake_gemini.requests]
    assert len(statuses) == 4 + 5  # every 429 was retried, nothing else was sent twice
    # After a 429, no worker sent anything until the server's delay had passed: the whole job waits.
    first_429 = fake_gemini.requests[0].at
    too_early = [r.at - first_429 for r in fake_gemini.requests[4:] if r.at - first_429 < delay - 0.05]
    assert not too_early, too_early
    assert time.monotonic() - started >= 2 * delay  # the storm outlasted one delay: it waited twice


def test_a_refused_item_is_reported_while_the_others_complete(lib, fake_gemini):
    products = add(lib, range(50, 55))
    originals = {lib.original_bytes(p): p for p in products}
    refusals = {products[1]: blocked_reply("PROHIBITED_CONTENT"), products[3]: text_reply("I can only describe it."),
                products[4]: finish_reply("IMAGE_SAFETY")}
    fake_gemini.always(lambda request: refusals.get(originals[first_image(request)]) or distinct_image(request))

    job = run(lib, batch.plan_batch(lib, BRIEF, ref_each=products, variations=2))

    items = {item["reference"]: item for item in batch.job_report(job)["items"]}
    assert [items[p]["status"] for p in products] == ["done", "failed", "done", "failed", "failed"]
    assert "blocked the brief" in items[products[1]]["reason"] and "PROHIBITED_CONTENT" in items[products[1]]["reason"]
    assert "I can only describe it." in items[products[3]]["reason"]
    assert "IMAGE_SAFETY" in items[products[4]]["reason"]
    assert len(items[products[0]]["images"]) == 2 and items[products[1]]["images"] == []
    assert len(fake_gemini.requests) == 10  # a refusal is an answer: not retried


def test_a_refused_key_stops_the_job_and_resume_finishes_it(lib, fake_gemini):
    products = add(lib, range(60, 63))
    fake_gemini.always(error_reply(400))  # API key not valid
    job = run(lib, batch.plan_batch(lib, BRIEF, ref_each=products), concurrency=1)
    assert "rejected the API key" in job.error and KEY not in job.error
    assert job.counts()["pending"] == 3 and len(fake_gemini.requests) == 1  # stopped after the first answer

    fake_gemini.always(Reply())  # the key is fixed
    resumed = batch.run_batch(batch.job_store(lib.settings), job.id, lib)
    assert resumed.counts()["done"] == 3 and resumed.error == ""
    assert len(fake_gemini.requests) == 1 + 3


# ----------------------------------------------------------------------------- cost
def test_costs_add_up_per_take_per_job_in_the_ledger_and_in_stats(tmp_path, lib, fake_gemini, gemini_env):
    products = add(lib, range(70, 73))
    fake_gemini.always(lambda request: image_reply("ok", make_png(str(request.at)), usage=usage_metadata(
        prompt=20, text=10, reference_images=len(request.images))))
    job = run(lib, batch.plan_batch(lib, BRIEF, ref_each=products, variations=2))

    # Nano Banana 2.1: $1.50 per 1M tokens in (20 + 258 for the product), $7.50 per 1M text out, $30 per 1M
    # image out (1120 tokens a 1K image).
    per_take = (278 * 1.50 + 10 * 7.50 + 1120 * 30.00) / 1e6
    assert [t.cost_usd for t in job.takes] == [pytest.approx(per_take)] * 6
    assert job.cost_usd == pytest.approx(6 * per_take)
    assert batch.job_report(job)["cost_usd"] == pytest.approx(6 * per_take)
    ledger = CostLedger(lib.settings.data_dir).totals()
    assert (ledger.generations, ledger.images) == (6, 6) and ledger.cost_usd == pytest.approx(6 * per_take)

    # A model without a price (a new one the API lists): its cost is unknown, never $0, and the ledger counts it apart.
    fake_gemini.offer("gemini-9-image-lab")
    unpriced = run(lib, batch.plan_batch(lib, BRIEF, ref_each=products[:1], model="gemini-9-image-lab"))
    assert unpriced.takes[0].cost_usd is None and unpriced.cost_usd is None
    lib.close()
    stats = run_cli_inprocess(["stats", "--json"], gemini_env, tmp_path)
    assert stats.returncode == 0, stats.stderr
    numbers = json.loads(stats.stdout)
    assert numbers["generation_cost_usd"] == pytest.approx(6 * per_take)
    assert (numbers["generations"], numbers["generations_unpriced"]) == (7, 1)


def test_an_unknown_price_is_unknown_in_the_cli(tmp_path, gemini_env, fake_gemini):
    env = {**gemini_env, "RAGKIT_PRICES": '{"gemini-nano-banana-2.1": null}'}
    ingest = run_cli_inprocess(["ingest", str(_folder(tmp_path, 2)), "--json"], env, tmp_path)
    ids = [a["sha256"] for a in json.loads(ingest.stdout)["added"]]
    result = run_cli_inprocess(["batch", "--brief", BRIEF, "--ref-each", *ids, "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cost_usd"] is None and "cost unknown" in result.stderr.decode()
    human = run_cli_inprocess(["stats"], env, tmp_path)
    assert "cost unknown" in human.stdout.decode()


# ----------------------------------------------------------------------------- review
def test_approve_saves_once_with_provenance_reject_drops_and_zip_has_the_approved(lib, fake_gemini):
    products = add(lib, (80, 81), tag="sneakers")
    logo = add(lib, (95,), name="logo")[0]
    kit = kits.KitStore(lib.settings.data_dir).save(kits.make_kit("Acme", style="bold", reference_ids=[logo]))
    job = run(lib, batch.plan_batch(lib, BRIEF, ref_each=products, kit=kit, variations=2))
    store = batch.job_store(lib.settings)

    asset = batch.approve(store, job.id, products[0], 0, lib)
    again = batch.approve(store, job.id, products[0], 0, lib)
    assert again.sha256 == asset.sha256
    assert asset.tags == ("sneakers", job.tag) and asset.source == "generated"  # the product's tags too
    assert asset.prompt == job.spec.prompt and asset.prompt.startswith(BRIEF)
    assert list(asset.reference_ids) == [products[0], logo]
    take = job.take(products[0], 0)
    assert asset.details == {"job": job.id, "brief": BRIEF, "variation": 1, "kit": "Acme", "kit_version": 1,
                             "usage": take.usage, "cost_usd": take.cost_usd}
    batch.reject(store, job.id, products[0], 1)
    assert store.load(job.id).take(products[0], 1).review == batch.REJECTED
    saved = batch.approve_all(store, job.id, lib)
    assert len(saved) == 2  # the other product's two; not the approved one, not the rejected one
    assert lib.count(tags=[job.tag]) == 3

    job = store.load(job.id)
    with zipfile.ZipFile(io.BytesIO(batch.approved_zip(job))) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(archive.namelist()) == sorted([*(i["file"] for i in manifest["images"]), "manifest.json"])
    assert {i["sha256"] for i in manifest["images"]} == {t.saved for t in job.takes if t.saved}
    assert manifest["kit"] == {"name": "Acme", "version": 1}


def test_a_rejected_image_is_kept_until_the_job_is_deleted_and_restore_brings_it_back(lib, fake_gemini):
    products = add(lib, (82,))
    job = run(lib, batch.plan_batch(lib, BRIEF, ref_each=products, variations=1))
    store = batch.job_store(lib.settings)
    path = job.image_path(job.take(products[0], 0))
    paid = path.read_bytes()

    batch.reject(store, job.id, products[0], 0)
    assert batch.approve_all(store, job.id, lib) == []  # rejected: out of the review
    assert path.read_bytes() == paid                    # but the paid image is still on disk
    batch.restore(store, job.id, products[0], 0)
    assert store.load(job.id).take(products[0], 0).review == ""
    asset = batch.approve(store, job.id, products[0], 0, lib)
    assert lib.store.get(asset.sha256) is not None

    other = run(lib, batch.plan_batch(lib, BRIEF + " again", ref_each=products, variations=1))
    batch.reject(store, other.id, products[0], 0)
    other.image_path(other.take(products[0], 0)).unlink()  # e.g. rejected by an older version, which deleted it
    with pytest.raises(BatchError, match="can't be restored"):
        batch.restore(store, other.id, products[0], 0)
    assert store.load(other.id).take(products[0], 0).review == batch.REJECTED
    store.delete(other.id)
    assert not store.job_folder(other.id).exists() and path.exists()


# ----------------------------------------------------------------------------- the command, killed and run again
def _folder(tmp_path, count: int, start: int = 100):
    folder = tmp_path / f"products-{start}"
    folder.mkdir()
    for seed in range(start, start + count):
        (folder / f"product-{seed}.jpg").write_bytes(jpeg_bytes(seed))
    return folder


def _done_takes(data_dir) -> int:
    states = list((data_dir / "jobs").glob("*/state.json"))
    if not states:
        return 0
    return sum(t["status"] == "done" for t in json.loads(states[0].read_text())["takes"])


@pytest.mark.slow
def test_killed_mid_batch_the_same_command_sends_only_the_missing_requests_and_saves_each_image_once(
        tmp_path, gemini_env, fake_gemini, tiny_embedder):
    data_dir = tmp_path / "data"
    ingest = run_cli_inprocess(["ingest", str(_folder(tmp_path, 6)), "--json"], gemini_env, tmp_path)
    products = [a["sha256"] for a in json.loads(ingest.stdout)["added"]]
    fake_gemini.always(lambda request: slow_reply(0.4, distinct_image(request)))
    command = ["batch", "--brief", BRIEF, "--ref-each", *products, "-n", "2", "--concurrency", "2", "--approve",
               "--json"]

    first = popen_cli(command, gemini_env, tmp_path)
    deadline = time.monotonic() + 60
    while _done_takes(data_dir) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    done_at_kill = _done_takes(data_dir)
    sent_before = len(fake_gemini.requests)
    assert 4 <= done_at_kill < 12, done_at_kill

    second = run_cli_inprocess(command, gemini_env, tmp_path)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    resent = fake_gemini.requests[sent_before:]
    assert len(resent) == 12 - done_at_kill  # only what was not done (in flight at the kill included)
    assert all(item["status"] == "done" and len(item["images"]) == 2 for item in report["items"])
    saved = [image["sha256"] for item in report["items"] for image in item["images"]]
    assert len(set(saved)) == 12

    third = run_cli_inprocess(command, gemini_env, tmp_path)  # all done: nothing is sent again
    assert third.returncode == 0 and len(fake_gemini.requests) == sent_before + len(resent)
    library = Library.open(Settings.load(env=gemini_env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    try:
        assert sorted(library.store.matching_ids(tags=[f"batch-{report['job']}"])) == sorted(saved)  # each once
        assert library.count(source="generated") == 12
    finally:
        library.close()


def test_cli_exit_status_partial_and_total_failure(tmp_path, gemini_env, fake_gemini):
    ingest = run_cli_inprocess(["ingest", str(_folder(tmp_path, 2)), "--json"], gemini_env, tmp_path)
    products = [a["sha256"] for a in json.loads(ingest.stdout)["added"]]
    fake_gemini.enqueue(blocked_reply("SAFETY"))
    partial = run_cli_inprocess(["batch", "--brief", BRIEF, "--ref-each", *products, "--concurrency", "1", "--json"],
                      gemini_env, tmp_path)
    assert partial.returncode == 3, partial.stderr
    assert [i["status"] for i in json.loads(partial.stdout)["items"]] == ["failed", "done"]

    fake_gemini.always(text_reply())
    total = run_cli_inprocess(["batch", "--brief", "another brief", "--ref-each", *products, "--json"], gemini_env, tmp_path)
    assert total.returncode == 1
    assert all(i["status"] == "failed" for i in json.loads(total.stdout)["items"])
    resumed = run_cli_inprocess(["batch", "--resume", json.loads(total.stdout)["job"], "--retry-failed"], gemini_env, tmp_path)
    assert resumed.returncode == 1 and len(fake_gemini.requests) == 2 + 2 + 2  # the failed ones, sent again


def test_a_job_runs_in_one_place_at_a_time(lib, fake_gemini):
    products = add(lib, (110, 111))
    fake_gemini.always(lambda request: slow_reply(0.5, distinct_image(request)))
    store = batch.job_store(lib.settings)
    job = store.create(batch.plan_batch(lib, BRIEF, ref_each=products))
    runner = threading.Thread(target=batch.run_batch, args=(store, job.id, lib))
    runner.start()
    deadline = time.monotonic() + 10
    while not store.is_running(job.id) and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(BatchError, match="already running"):
        batch.run_batch(store, job.id, lib)
    runner.join(30)
    assert not store.is_running(job.id) and store.load(job.id).counts()["done"] == 2
    assert len(fake_gemini.requests) == 2
