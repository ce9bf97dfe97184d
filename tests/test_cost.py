"""What generations cost (ragkit.studio.cost): the price table, its override, usage as Gemini reports it,
the ledger, and `stats`."""
from __future__ import annotations

import json

import pytest

from ragkit.config import Settings
from ragkit.errors import ConfigError
from ragkit.studio import ImageGenerator
from ragkit.studio.cost import CostLedger, PriceTable, format_usd, prices_for
from devtools.fake_gemini import image_reply, usage_metadata

KEY = "cost-test-key-55aa01"
FLASH, PRO = "gemini-nano-banana-2.1", "gemini-3-pro-image"


def test_default_prices_give_google_s_per_image_prices():
    table = PriceTable.from_setting("")
    one_image = {"image_tokens": 1120, "images": 1}
    assert table.cost(FLASH, one_image) == pytest.approx(0.0336)            # "$0.0336 per 1K image"
    assert table.cost(PRO, {"image_tokens": 1120}) == pytest.approx(0.1344)  # "$0.134 per 1K/2K image"
    assert table.cost("models/" + FLASH, one_image) == table.cost(FLASH, one_image)
    assert table.cost("gemini-9-image-lab", one_image) is None
    assert format_usd(None) == "unknown" and format_usd(0.0387) == "$0.039" and format_usd(12.345) == "$12.35"


def test_prices_can_be_overridden_by_json_or_a_file(tmp_path):
    table = PriceTable.from_setting('{"gemini-nano-banana-2.1": {"output_image": 60}, '
                                    '"my-image-model": {"input": 1, "output_text": 2, "output_image": 3}, '
                                    '"gemini-3-pro-image": null}')
    assert table.cost(FLASH, {"image_tokens": 1_000_000, "prompt_tokens": 1_000_000}) == pytest.approx(61.50)
    assert table.cost("my-image-model", {"text_tokens": 1_000_000}) == pytest.approx(2)
    assert table.cost(PRO, {"image_tokens": 1}) is None
    file = tmp_path / "prices.json"
    file.write_text('{"gemini-nano-banana-2.1": {"input": 0}}')
    settings = Settings.load(env={"RAGKIT_PRICES": str(file)}, cwd=tmp_path, secrets_files=[])
    assert prices_for(settings).cost(FLASH, {"prompt_tokens": 10**6}) == 0


@pytest.mark.parametrize("setting, message", [
    ("{oops", "RAGKIT_PRICES is damaged \\(not valid JSON"),
    ("[" * 100_000, "RAGKIT_PRICES is damaged \\(nested too deeply"),                # was RecursionError
    ('{"gemini-2.5-flash-image": {"input": NaN}}', "NaN is not a number ragkit writes"),
    ("/dev/zero", "/dev/zero .* is not a regular file"),                              # was MemoryError
    ("[1, 2]", "must be a JSON object"),
    ('{"gemini-nano-banana-2.1": {"input": -1}}', "input must be a number of USD per 1M tokens, 0 or more"),
    ('{"gemini-nano-banana-2.1": {"input": "cheap"}}', "input must be a number"),
    ('{"gemini-nano-banana-2.1": {"inptu": 1}}', "keys input, output_text, output_image"),
    ('{"new-model": {"input": 1}}', "give output_text, output_image too"),
    ("/nonexistent/prices.json", "names the file /nonexistent/prices.json, which does not exist"),
])
def test_a_malformed_price_setting_says_what_to_fix(setting, message):
    with pytest.raises(ConfigError, match=message):
        PriceTable.from_setting(setting)


def test_usage_is_read_per_modality_and_priced(fake_gemini):
    fake_gemini.enqueue(image_reply(usage=usage_metadata(prompt=30, text=12, thoughts=100, reference_images=2)),
                        image_reply(usage={"promptTokenCount": 10, "candidatesTokenCount": 1300,
                                           "totalTokenCount": 1310}))  # no details: image rate, never less
    generator = ImageGenerator(KEY, base_url=fake_gemini.url, sleep=lambda s: None)
    detailed = generator.generate("a lamp").usage
    assert detailed == {"prompt_tokens": 30 + 516, "output_tokens": 12 + 1120, "total_tokens": 546 + 1132 + 100,
                        "text_tokens": 12, "image_tokens": 1120, "thoughts_tokens": 100, "images": 1}
    plain = generator.generate("a lamp").usage
    assert (plain["image_tokens"], plain["text_tokens"]) == (1300, 0)
    table = PriceTable.from_setting("")
    assert table.cost(PRO, detailed) == pytest.approx((546 * 2 + 112 * 12 + 1120 * 120) / 1e6)


def test_the_ledger_adds_up_reads_incrementally_and_survives_a_torn_line(tmp_path):
    ledger = CostLedger(tmp_path)
    assert ledger.totals().generations == 0 and ledger.totals().known_cost == 0
    ledger.record(FLASH, {"images": 2}, 0.078, source="studio")
    ledger.record("mystery", {"images": 1}, None, source="batch", job="0123456789")
    totals = ledger.totals()
    assert (totals.generations, totals.images, totals.unpriced) == (2, 3, 1)
    assert totals.known_cost == pytest.approx(0.078)
    with open(ledger.path, "ab") as handle:
        handle.write(b'{"model": "x", "cost_us')  # a process died mid-write: not counted, not fatal
    assert CostLedger(tmp_path).totals() == totals
    ledger.record(FLASH, {"images": 1}, 0.039, source="cli")  # after the torn bytes: a line of its own
    assert CostLedger(tmp_path).totals().known_cost == pytest.approx(0.117)
    only_unpriced = CostLedger(tmp_path / "other")
    only_unpriced.record("mystery", {"images": 1}, None, source="studio")
    assert only_unpriced.totals().known_cost is None  # unknown, never $0
    assert json.loads(only_unpriced.path.read_text())["cost_usd"] is None
