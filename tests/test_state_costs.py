"""The cost ledger and the numbers that come back from the model (issue 19, items 11, 15, 16): damaged
ledger lines are skipped and counted, impossible usage is an unknown cost (never a negative bill), and
a model's messages are bounded before they are stored or shown."""
from __future__ import annotations

import json

import pytest

from tests.support.cli import run_cli_captured as cli
from ragkit.errors import PromptBlockedError
from ragkit.studio import ImageGenerator
from ragkit.studio.cost import CostLedger, PriceTable, usage_problem
from devtools.fake_gemini import blocked_reply, image_reply
from tests.e2e_support import app_env, new_app, run as run_app, texts  # noqa: F401 - fixtures

KEY = "state-cost-key-7a7a7a"
FLASH = "gemini-2.5-flash-image"
DAMAGED_LINES = [
    '{"usage": {"images": "many"}}',                        # was ValueError in `stats`
    '{"usage": [1, 2]}',                                     # was AttributeError
    '{"usage": "lots"}',
    '{"model": "m", "usage": {"images": 1}, "cost_usd": NaN}',       # was "cost $nan"
    '{"model": "m", "usage": {"images": 1}, "cost_usd": Infinity}',  # was OverflowError
    '{"model": "m", "usage": {"images": -5}, "cost_usd": -2800.0}',  # was -2800.0 USD
    '[1, 2, 3]',
    'garbage that a full disk left',
    '[' * 50_000,
    '{"x": "' + "y" * 100_000 + '"}',                        # longer than any generation's line
]




def damaged_ledger(data_dir) -> CostLedger:
    ledger = CostLedger(data_dir)
    ledger.record(FLASH, {"image_tokens": 1290, "images": 1}, 0.039, source="studio")
    with open(ledger.path, "a") as handle:
        handle.write("\n".join(DAMAGED_LINES) + "\n")
    ledger.record(FLASH, {"image_tokens": 1290, "images": 2}, 0.078, source="cli")
    return ledger


def test_damaged_ledger_lines_are_skipped_counted_and_said(tmp_path):
    totals = damaged_ledger(tmp_path).totals()
    assert (totals.generations, totals.images, totals.damaged) == (2, 3, len(DAMAGED_LINES))
    assert totals.known_cost == pytest.approx(0.117)
    assert totals.summary() == f" ({len(DAMAGED_LINES)} damaged lines of the ledger skipped)"


def test_stats_counts_the_good_lines_and_says_how_many_were_skipped(tmp_path, ragkit_env, monkeypatch, capsys):
    damaged_ledger(tmp_path / "data")
    code, out, err = cli(["stats"], ragkit_env, monkeypatch, capsys)
    assert code == 0, err
    assert (f"generated  2 time(s) in the Studio, cost $0.117 ({len(DAMAGED_LINES)} damaged lines of the "
            "ledger skipped)") in out
    code, out, _ = cli(["stats", "--json"], ragkit_env, monkeypatch, capsys)
    data = json.loads(out)
    assert (data["generations"], data["ledger_damaged_lines"]) == (2, len(DAMAGED_LINES))


@pytest.mark.parametrize("make", ["folder", "device"])
def test_a_ledger_that_is_not_a_file_makes_the_cost_unknown_and_stats_still_works(
        tmp_path, ragkit_env, monkeypatch, capsys, make):
    path = CostLedger(tmp_path / "data").path
    path.parent.mkdir(parents=True)
    path.mkdir() if make == "folder" else path.symlink_to("/dev/zero")  # was IsADirectoryError / MemoryError
    code, out, err = cli(["stats"], ragkit_env, monkeypatch, capsys)
    assert code == 0, err
    assert f"cost unknown ({path} (the cost ledger) is " in out and "unknown until it is moved away" in out
    assert "assets     0" in out


def test_the_studio_cost_line_says_how_many_ledger_lines_were_skipped(app_env, settings):
    damaged_ledger(settings.data_dir)
    at = new_app()
    run_app(at)
    at.switch_page("app_pages/studio.py")
    run_app(at)
    line = next(c for c in texts(at.caption) if "spent on 2 generations" in c)
    assert f"{len(DAMAGED_LINES)} damaged lines of the ledger skipped" in line
    assert not at.exception and not any("unexpected" in e.value for e in at.error), texts(at.error)


# ----------------------------------------------------------------------------- item 15: impossible usage
@pytest.mark.parametrize("count", [-10 ** 9, 2 ** 40])
def test_impossible_usage_is_an_unknown_cost_and_says_so(fake_gemini, tmp_path, count):
    usage = {"promptTokenCount": count, "candidatesTokenCount": count, "totalTokenCount": count}
    fake_gemini.enqueue(image_reply(usage=usage))
    generator = ImageGenerator(KEY, base_url=fake_gemini.url, sleep=lambda s: None)
    generation = generator.generate("a lamp")
    assert usage_problem(generation.usage) and "counted as unknown" in " ".join(generation.warnings)
    assert PriceTable.from_setting("").cost(FLASH, generation.usage) is None  # was -$30,299.73
    ledger = CostLedger(tmp_path)
    ledger.record(FLASH, generation.usage, None, source="cli")
    totals = ledger.totals()
    assert (totals.generations, totals.unpriced, totals.known_cost) == (1, 1, None)
    assert json.loads(ledger.path.read_text())["usage"]["prompt_tokens"] == 0


# ----------------------------------------------------------------------------- item 16: bounded messages
def test_a_megabyte_block_message_from_the_model_is_bounded(fake_gemini):
    fake_gemini.enqueue(blocked_reply("OTHER", message="y" * 1_000_000))
    generator = ImageGenerator(KEY, base_url=fake_gemini.url, sleep=lambda s: None, max_retries=0)
    with pytest.raises(PromptBlockedError) as caught:
        generator.generate("a lamp")
    assert len(str(caught.value)) < 1400 and "more characters not shown" in str(caught.value)  # was 1,000,000+


def test_a_megabyte_text_answer_beside_the_image_is_bounded_before_it_is_kept(fake_gemini):
    fake_gemini.enqueue(image_reply(text="z" * 1_000_000))
    generator = ImageGenerator(KEY, base_url=fake_gemini.url, sleep=lambda s: None, max_retries=0)
    generation = generator.generate("a lamp")
    assert len(generation.text) < 4100 and generation.text.endswith("more characters not shown)")  # was 1,000,000
