"""The one resumable-job runner (ragkit.jobs.resumable) under batch and describe: a stop during a 429 back-off,
damaged job states, usage rights checked before every send, answers validated on arrival.

The real google-genai client against devtools/fake_gemini.py, real Milvus Lite, the tiny CLIP model."""
from __future__ import annotations

import hashlib
import io
import json
import struct
import threading
import time
import zlib

import pytest
from PIL import Image

from ragkit.cli import main as cli
from ragkit.config import Settings
from ragkit.errors import BatchError
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from ragkit.rights import rights_change
from ragkit.studio import batch, describe, kits
from ragkit.studio.cost import CostLedger
from devtools.fake_gemini import error_reply, image_reply, make_png, quota_reply
from tests.images_factory import jpeg_bytes

KEY = "resumable-test-key-5d2f8e1a"
BRIEF = "The product on a pastel podium"


@pytest.fixture
def studio_env(ragkit_env, fake_gemini) -> dict[str, str]:
    return {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake_gemini.url}


@pytest.fixture
def lib(tmp_path, studio_env, tiny_embedder, monkeypatch):
    for name, value in studio_env.items():  # the in-process CLI reads the environment
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    library = Library.open(Settings.load(env=studio_env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    yield library
    library.close()


def add(library, seeds, name: str = "product") -> list[str]:
    uploads = [Upload(f"{name}-{seed}.jpg", jpeg_bytes(seed)) for seed in seeds]
    return [asset.sha256 for _, asset in library.ingest_uploads(uploads).added]


# ----------------------------------------------------------------------------- the two kinds of job
def _batch_job(library, products):
    store = batch.job_store(library.settings)
    return store, store.create(batch.plan_batch(library, BRIEF, ref_each=products)).id, batch.run_batch


def _describe_job(library, products):
    store = describe.describe_store(library.settings)
    return store, store.create(describe.plan_describe(library, ids=products).specs[0]).id, describe.run_describe


KINDS = {"batch": _batch_job, "describe": _describe_job}


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_during_a_429_back_off_ends_at_once_sends_nothing_more_and_resume_finishes(lib, fake_gemini, kind):
    products = add(lib, range(10, 13))
    store, job_id, run_job = KINDS[kind](lib, products)
    fake_gemini.always(quota_reply(30))  # quota exceeded: retry in 30 s
    runs = []
    runner = threading.Thread(target=run_job, args=(store, job_id, lib),
                              kwargs={"concurrency": 1, "backoff_s": 0.05, "on_run": runs.append})
    runner.start()
    deadline = time.monotonic() + 30
    while not fake_gemini.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # now in the back-off
    stopped_at = time.monotonic()
    runs[0].stop()
    runner.join(30)

    assert time.monotonic() - stopped_at < 2.0  # not the 30 s delay, nor a burst of retries
    assert len(fake_gemini.requests) == 1       # the retry was not sent after the stop
    job = store.load(job_id)
    assert job.counts() == {"pending": 3, "done": 0, "failed": 0} and job.error == ""

    fake_gemini.default = None  # the quota is back: the default answers (an image, or a caption)
    resumed = run_job(store, job_id, lib, backoff_s=0.05)
    assert resumed.counts()["done"] == 3 and len(fake_gemini.requests) == 1 + 3


def test_describe_a_refused_key_stops_the_job_with_the_reason_and_a_caption_problem_is_recorded(lib, fake_gemini):
    """The two paths pyflakes flagged (a name bound by `except ... as` used in a lambda)."""
    products = add(lib, range(20, 22))
    store, job_id, _ = _describe_job(lib, products)
    fake_gemini.always(error_reply(400))  # API key not valid
    job = describe.run_describe(store, job_id, lib, concurrency=1)
    assert "rejected the API key" in job.error and KEY not in job.error
    assert job.counts()["pending"] == 2

    fake_gemini.default, fake_gemini.caption_mode = None, "bad-json"
    job = describe.run_describe(store, job_id, lib, concurrency=1)
    assert job.counts() == {"pending": 0, "done": 0, "failed": 2} and job.error == ""
    assert all(item.usage and item.reason for item in job.items)
    assert describe.last_failure(lib.get(products[0]))


# ----------------------------------------------------------------------------- damaged state (issue 19 #10)
DAMAGES = {
    "created_at is a word": lambda state: {**state, "created_at": "yesterday"},
    "a list": lambda state: [state],
    "an unknown status": lambda state: {**state, state["entries"]: [{**e, "status": "exploded"}
                                                                     for e in state[state["entries"]]]},
    "null takes": lambda state: {**state, state["entries"]: None},
    "not JSON": lambda state: "{\"id\": ",
}


def _damage(store, good_id: str, how: str) -> str:
    """A copy of the good job under another id, damaged `how`; its id."""
    state = json.loads((store.job_folder(good_id) / "state.json").read_text())
    state["entries"] = "takes" if "takes" in state else "items"
    bad_id = hashlib.sha256(how.encode()).hexdigest()[:10]
    state["id"] = bad_id
    damaged = DAMAGES[how](state)
    if isinstance(damaged, dict):
        damaged.pop("entries")
    elif isinstance(damaged, list):
        damaged[0].pop("entries")
    store.job_folder(bad_id).mkdir(parents=True)
    text = damaged if isinstance(damaged, str) else json.dumps(damaged)
    (store.job_folder(bad_id) / "state.json").write_text(text)
    return bad_id


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_job_states_are_listed_as_damaged_with_what_to_do_and_the_others_still_work(lib, fake_gemini, kind):
    products = add(lib, range(30, 32))
    store, good_id, run_job = KINDS[kind](lib, products)
    bad = {how: _damage(store, good_id, how) for how in DAMAGES}

    assert [job.id for job in store.list()] == [good_id]  # the others are still listed
    jobs, damaged = store.scan()
    assert sorted(d.id for d in damaged) == sorted(bad.values())
    for entry in damaged:
        assert "damaged" in entry.message and str(entry.folder) in entry.message and "delete" in entry.message
    for how, bad_id in bad.items():
        with pytest.raises(BatchError, match="is damaged"):
            run_job(store, bad_id, lib)
    assert run_job(store, good_id, lib).counts()["done"] == 2  # the good one still runs
    store.delete(bad["a list"])  # and a damaged one can be removed
    assert len(store.scan()[1]) == len(DAMAGES) - 1


@pytest.mark.parametrize("how", DAMAGES)
def test_batch_resume_of_a_damaged_job_says_so_in_one_line_and_exits_non_zero(lib, fake_gemini, capsys, how):
    products = add(lib, range(40, 41))
    store, good_id, _ = _batch_job(lib, products)
    bad_id = _damage(store, good_id, how)
    lib.close()  # the command opens the library itself

    code = cli.main(["batch", "--resume", bad_id])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "is damaged" in err and "unexpected" not in err.lower() and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert not fake_gemini.requests


def test_describe_on_a_damaged_job_says_so_in_one_line_and_exits_non_zero(lib, fake_gemini, capsys):
    products = add(lib, range(45, 46))
    store = describe.describe_store(lib.settings)
    spec = describe.plan_describe(lib, ids=products).specs[0]
    store.job_folder(spec.identity()).mkdir(parents=True)
    (store.job_folder(spec.identity()) / "state.json").write_text('{"id": "%s", "created_at": "yesterday"}'
                                                                  % spec.identity())
    lib.close()

    code = cli.main(["describe", *products])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and "is damaged" in err[-1] and "unexpected" not in err[-1].lower()
    assert not fake_gemini.requests


# ----------------------------------------------------------------------------- usage rights (issue 19 #7)
def test_usage_rights_are_checked_again_before_every_send_also_on_retry_failed(lib, fake_gemini):
    products = add(lib, range(50, 52))
    store, job_id, _ = _batch_job(lib, products)
    fake_gemini.always(error_reply(503))
    job = batch.run_batch(store, job_id, lib, backoff_s=0.01)
    assert job.counts()["failed"] == 2
    sent = len(fake_gemini.requests)

    lib.set_rights([products[0]], rights_change(no_reference=True))  # `rights SHA --no-reference`
    fake_gemini.default = None
    job = batch.run_batch(store, job_id, lib, retry_failed=True)

    sent_now = fake_gemini.requests[sent:]
    assert len(sent_now) == 1 and sent_now[0].images[0][1] == lib.original_bytes(products[1])
    blocked = job.take(products[0], 0)
    assert blocked.status == "failed" and "can't be sent any more" in blocked.reason and not blocked.usage
    assert job.take(products[1], 0).status == "done"


def test_a_kit_reference_blocked_after_the_job_was_made_stops_the_run_before_anything_is_sent(lib, fake_gemini):
    products = add(lib, range(55, 57))
    logo, = add(lib, (58,), name="logo")
    kit = kits.kit_store(lib.settings).save(kits.make_kit("Acme", style="flat light", reference_ids=[logo]))
    store = batch.job_store(lib.settings)
    job = store.create(batch.plan_batch(lib, BRIEF, ref_each=products, kit=kit))

    lib.set_rights([logo], rights_change(no_reference=True))
    with pytest.raises(BatchError, match="can't be sent any more"):
        batch.run_batch(store, job.id, lib)
    assert not fake_gemini.requests and store.load(job.id).counts()["pending"] == 2


# ----------------------------------------------------------------------------- answers checked (issue 19 #9)
def _png(size: tuple[int, int], mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A small PNG whose header declares 1.6 gigapixels (the IHDR rewritten, its CRC fixed)."""
    data = bytearray(_png((8, 8)))
    ihdr = bytearray(data[12:29])  # type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


BAD_ANSWERS = {
    "garbage": (b"\x00\x17garbage, not a picture" * 40, "image/png"),
    "html": (b"<html><body>Service unavailable</body></html>", "text/html"),
    "bomb": (_bomb_png(), "image/png"),
    "sliver": (_png((1, 100_000)), "image/png"),
}


def test_each_answer_is_checked_on_arrival_bad_ones_fail_with_the_reason_and_approve_saves_the_good(lib, fake_gemini):
    products = add(lib, range(60, 66))
    answers = dict(zip(products, [*BAD_ANSWERS.values(), None, None]))
    originals = {lib.original_bytes(p): p for p in products}

    def reply(request):
        bad = answers[originals[request.images[0][1]]]
        return image_reply("ok", make_png(str(request.at))) if bad is None else image_reply("ok", bad[0], mime=bad[1])
    fake_gemini.always(reply)
    store, job_id, _ = _batch_job(lib, products)

    job = batch.run_batch(store, job_id, lib, approve=True)

    statuses = [job.take(p, 0).status for p in products]
    assert statuses == ["failed"] * 4 + ["done"] * 2
    reasons = [job.take(p, 0).reason for p in products[:4]]
    assert "not an image file Pillow can read" in reasons[0] and "not an image file Pillow can read" in reasons[1]
    assert "decompression bomb" in reasons[2] and "aspect ratio" in reasons[3]
    assert all(r.startswith("The answer is not a usable image") for r in reasons)
    assert lib.count(source="generated") == 2  # every good one saved
    assert all(job.take(p, 0).saved for p in products[4:])
    assert not list((job.folder / "images").glob(f"{products[0][:12]}*"))  # a bad answer is never kept as a result
    ledger = CostLedger(lib.settings.data_dir).path.read_text().splitlines()
    assert len(ledger) == 6  # every answer was billed by Google: the ledger says so
    assert job.take(products[0], 0).usage and job.take(products[0], 0).cost_usd is not None


def test_approve_of_a_job_with_a_bad_image_marked_done_saves_the_others_and_reports_it(lib, fake_gemini):
    """A job made before answers were checked: one done take's file is garbage."""
    products = add(lib, range(70, 73))
    store, job_id, _ = _batch_job(lib, products)
    job = batch.run_batch(store, job_id, lib)
    bad = job.take(products[1], 0)
    job.image_path(bad).write_bytes(b"not a picture at all" * 10)

    saved = batch.approve_all(store, job_id, lib)

    assert len(saved) == 2 and lib.count(source="generated") == 2
    job = store.load(job_id)
    assert job.take(products[1], 0).status == "failed" and "could not be saved" in job.take(products[1], 0).reason
    report = {item["reference"]: item for item in batch.job_report(job)["items"]}
    assert report[products[1]]["status"] == "failed" and report[products[1]]["reason"]
