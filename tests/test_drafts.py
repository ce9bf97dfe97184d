"""ragkit.studio.drafts: the Studio's tray, brief and last unsaved results kept per person on the server."""
from __future__ import annotations

import os
import time

from ragkit.studio.drafts import DraftStore, browser_token, owner_key
from ragkit.studio.generation import GeneratedImage, Generation
from devtools.fake_gemini import make_png

SHA = "a" * 64


def generation(brief: str, n: int = 1, size: int = 96) -> Generation:
    images = [GeneratedImage(make_png(f"{brief}{i}", long_side=size), "image/png") for i in range(n)]
    return Generation(brief, "gemini-3.1-flash-image", images, "note", [SHA], "1:1",
                      {"images": n, "total_tokens": 10}, 1.5, details={"cost_usd": 0.1})


def test_brief_tray_and_the_last_results_come_back_for_the_same_person_only(tmp_path):
    store = DraftStore(tmp_path, keep_results=2)
    me, other = owner_key("email:me@example.com"), owner_key("email:you@example.com")
    store.save_work(me, "a red bicycle on a beach", [SHA, SHA, "b" * 64])
    first = store.add_result(me, generation("one", 2))
    store.add_result(me, generation("two"))
    third = store.add_result(me, generation("three"))
    store.mark_saved(me, third, 0, "c" * 64)

    draft = DraftStore(tmp_path, keep_results=2).load(me)  # another process, after a reload
    assert draft.brief == "a red bicycle on a beach" and draft.tray == [SHA, "b" * 64]
    assert [r.generation.prompt for r in draft.results] == ["three", "two"]  # newest first, 2 kept
    assert draft.results[0].saved == {0: "c" * 64} and draft.results[0].generation.reference_ids == [SHA]
    assert draft.results[0].generation.images[0].data == make_png("three0")
    assert not any(first in p.name for p in (tmp_path / "drafts" / me).iterdir())  # its images are gone
    assert DraftStore(tmp_path).load(other).empty
    assert "me@example.com" not in str(list((tmp_path / "drafts").rglob("*")))


def test_size_limit_and_expiry(tmp_path):
    now = [time.time()]
    store = DraftStore(tmp_path, max_bytes=len(make_png("x0")) * 3, clock=lambda: now[0], expiry_days=7)
    me = owner_key("browser:abc")
    assert store.add_result(me, generation("big", 4)) is None  # bigger than the limit alone: not kept
    store.add_result(me, generation("a", 2))
    store.add_result(me, generation("b", 2))  # a + b over the limit: a goes
    assert [r.generation.prompt for r in store.load(me).results] == ["b"]
    old = now[0] - 8 * 86400
    os.utime(tmp_path / "drafts" / me, (old, old))
    assert store.load(me).empty and not (tmp_path / "drafts" / me).exists()


def test_a_damaged_draft_gives_one_clear_line_and_the_page_starts_empty(tmp_path):
    store = DraftStore(tmp_path)
    me = owner_key("email:me@example.com")
    store.save_work(me, "brief", [SHA])
    (tmp_path / "drafts" / me / "draft.json").write_text('{"version": 1, "brief": ', encoding="utf-8")
    draft = store.load(me)
    assert draft.empty and "could not be read back" in draft.problem and "not valid JSON" in draft.problem
    assert store.load(me).problem is None  # said once; the damaged copy is set aside, not deleted
    assert any(p.name.startswith(me + ".damaged") for p in (tmp_path / "drafts").iterdir())
    store.save_work(me, "new brief", [])
    assert store.load(me).brief == "new brief"


def test_a_draft_linked_to_a_device_or_nested_too_deep_is_damaged_not_a_hang(tmp_path):
    store = DraftStore(tmp_path)
    me = owner_key("email:me@example.com")
    store.save_work(me, "brief", [SHA])
    record = tmp_path / "drafts" / me / "draft.json"
    record.unlink()
    record.symlink_to("/dev/zero")  # was: read_text() read without end, in save_work and load alike
    store.save_work(me, "after the link", [])
    assert store.load(me).brief == "after the link"
    record.write_text("[" * 100_000, encoding="utf-8")  # was: RecursionError out of load()
    draft = store.load(me)
    assert draft.empty and "could not be read back" in draft.problem


def test_one_damaged_result_does_not_sink_the_rest(tmp_path):
    store = DraftStore(tmp_path)
    me = owner_key("email:me@example.com")
    store.save_work(me, "kept", [SHA])
    store.add_result(me, generation("older"))
    newer = store.add_result(me, generation("newer"))
    (tmp_path / "drafts" / me / f"{newer}-0.png").unlink()
    draft = store.load(me)
    assert draft.brief == "kept" and [r.generation.prompt for r in draft.results] == ["older"]
    huge = tmp_path / "drafts" / me / "draft.json"
    huge.write_bytes(b" " * (600 * 1024))
    assert "larger than" in store.load(me).problem


def test_the_browser_token_is_the_stable_part_of_streamlits_xsrf_cookie():
    token = bytes(range(32))
    def masked(mask: bytes) -> str:
        return "2|" + mask.hex() + "|" + bytes(b ^ mask[i % 4] for i, b in enumerate(token)).hex() + "|1765000000"
    assert browser_token(masked(b"\x01\x02\x03\x04")) == browser_token(masked(b"\xff\x00\xaa\x55")) == token.hex()
    assert browser_token(None) is None and browser_token("garbage") is None and browser_token("2|zz|yy|1") is None
