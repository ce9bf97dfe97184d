"""Half-price batches (ragkit.studio.half_price) through the Batch API: the real google-genai client against
devtools/fake_gemini.py's batch endpoints, real Milvus Lite, the tiny CLIP model."""
from __future__ import annotations

import threading
import time

import pytest

from ragkit.config import Settings
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from ragkit.studio import batch, half_price
from ragkit.studio.cost import prices_for
from tests.images_factory import jpeg_bytes

KEY = "half-price-test-key-0b7d3c"
BRIEF = "The product on a pastel podium"


@pytest.fixture
def lib(tmp_path, ragkit_env, fake_gemini, tiny_embedder, monkeypatch):
    env = {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake_gemini.url}
    monkeypatch.setattr(half_price.HalfPriceRunner, "poll_s", 0.05)
    library = Library.open(Settings.load(env=env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    yield library
    library.close()


def _job(library, seeds, **options):
    uploads = [Upload(f"product-{seed}.jpg", jpeg_bytes(seed)) for seed in seeds]
    products = [asset.sha256 for _, asset in library.ingest_uploads(uploads).added]
    store = batch.job_store(library.settings)
    return store, store.create(batch.plan_batch(library, BRIEF, ref_each=products, half_price=True, **options))


def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "jsonl-file"])
def test_a_half_price_job_goes_as_one_batch_and_lands_in_review_at_half_the_cost(lib, fake_gemini, monkeypatch,
                                                                                   inline):
    if not inline:
        monkeypatch.setattr(half_price, "INLINE_LIMIT", 0)  # as if the requests came to more than 20 MB
    store, job = _job(lib, range(10, 13), variations=2)

    job = batch.run_batch(store, job.id, lib)

    assert [b.from_file for b in fake_gemini.batches.created] == [not inline]  # one batch, no direct calls
    assert len(fake_gemini.requests) == 6
    assert {r.images[0][1] for r in fake_gemini.requests} == {lib.original_bytes(p) for p in job.spec.products}
    assert job.counts()["done"] == 6 and job.remote_batch == ""
    prices = prices_for(lib.settings)
    for take in job.takes:
        assert take.cost_usd == pytest.approx(prices.cost(job.spec.model, take.usage) / 2)
    assert len(batch.approve_all(store, job.id, lib)) == 6


def test_the_batch_name_is_kept_so_another_run_resumes_polling_without_sending_again(lib, fake_gemini):
    fake_gemini.batches.polls_until_done = 10**6  # Gemini is taking its time
    store, job = _job(lib, range(20, 22))
    runs = []
    first = threading.Thread(target=batch.run_batch, args=(store, job.id, lib), kwargs={"on_run": runs.append})
    first.start()
    _until(lambda: fake_gemini.batches.gets >= 2)
    runs[0].stop()  # the app closed, the command was stopped (the batch goes on at Gemini's)
    first.join(10)
    waiting = store.load(job.id)
    assert waiting.remote_batch == fake_gemini.batches.created[0].name and waiting.counts()["pending"] == 2

    fake_gemini.batches.polls_until_done = 0  # it has finished meanwhile
    done = batch.run_batch(store, job.id, lib)  # a later run, in any process: polls the same batch
    assert done.counts()["done"] == 2
    assert len(fake_gemini.batches.created) == 1 and len(fake_gemini.requests) == 2  # nothing sent twice


def test_cancel_cancels_the_gemini_batch_and_retry_failed_sends_the_takes_again(lib, fake_gemini):
    fake_gemini.batches.polls_until_done = 10**6
    store, job = _job(lib, range(30, 32))
    runs = []
    runner = threading.Thread(target=batch.run_batch, args=(store, job.id, lib), kwargs={"on_run": runs.append})
    runner.start()
    _until(lambda: fake_gemini.batches.gets >= 1)
    runs[0].stop()
    runner.join(10)

    cancelled = half_price.cancel(store, job.id, lib)
    assert fake_gemini.batches.created[0].state == "BATCH_STATE_CANCELLED"
    assert cancelled.counts()["failed"] == 2 and "Cancelled" in cancelled.takes[0].reason
    assert cancelled.remote_batch == ""

    fake_gemini.batches.polls_until_done = 0
    again = batch.run_batch(store, job.id, lib, retry_failed=True)
    assert again.counts()["done"] == 2 and len(fake_gemini.batches.created) == 2


def test_cli_half_price_then_cancel(lib, fake_gemini, tmp_path, ragkit_env, monkeypatch, capsys):
    from ragkit.cli import main as cli
    for name, value in {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake_gemini.url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    products = [a.sha256 for _, a in lib.ingest_uploads([Upload(f"p-{i}.jpg", jpeg_bytes(40 + i))
                                                          for i in range(2)]).added]
    lib.close()

    code = cli.main(["batch", "--brief", BRIEF, "--ref-each", *products, "--half-price", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "half-price Gemini batch" in err and len(fake_gemini.batches.created) == 1
    import json
    assert [item["status"] for item in json.loads(out)["items"]] == ["done", "done"]

    fake_gemini.batches.polls_until_done = 10**6
    monkeypatch.setattr(half_price.HalfPriceRunner, "poll_s", 0.2)
    runs = []
    original = half_price.HalfPriceRunner._send

    def send_then_stop(self, job, to_do, run):  # the command interrupted once the batch is at Gemini
        polled = fake_gemini.batches.gets
        threading.Thread(target=lambda: (_until(lambda: fake_gemini.batches.gets > polled), run.stop())).start()
        runs.append(run)
        return original(self, job, to_do, run)
    monkeypatch.setattr(half_price.HalfPriceRunner, "_send", send_then_stop)
    code = cli.main(["batch", "--brief", "another brief", "--ref-each", *products, "--half-price", "--json"])
    out, err = capsys.readouterr()
    job_id = json.loads(out)["job"]
    assert code == 1 and len(fake_gemini.batches.created) == 2
    assert cli.main(["batch", "--cancel", job_id]) == 0
    assert "cancelled" in capsys.readouterr().err
    assert fake_gemini.batches.created[1].state == "BATCH_STATE_CANCELLED"
