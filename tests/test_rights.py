"""Usage rights: a licence note, a usable-until date, "do not use as a reference"; set on many assets,
kept out of suggestions and `search --usable` when expired, and hostile values refused clearly."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from ragkit.errors import InvalidInputError, UpgradeNeededError
from ragkit.ingest.pipeline import Upload
from ragkit.rights import (DAY_MS, blocked_as_reference, describe, expiry_of, now_ms, rights_change, usable)
from ragkit.storage.schema import MAX_LICENCE_BYTES
from ragkit.studio.references import suggest_references
from tests.support.cli import run_cli_inprocess
from tests.images_factory import jpeg_bytes


def _utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp()) * 1000


def test_usable_until_a_day_means_through_that_day_utc():
    expires = expiry_of("2026-06-30")
    assert expires == _utc_ms(2026, 7, 1)
    change = rights_change(until="2026-06-30", note="  CC-BY  4.0,  credit ACME ", no_reference=True)
    from ragkit.records import Asset
    asset = change.apply(Asset(sha256="a" * 64, filename="a.jpg", mime="image/jpeg", width=1, height=1, size_bytes=1))
    assert asset.licence == "CC-BY 4.0, credit ACME" and asset.no_reference
    assert usable(asset, _utc_ms(2026, 6, 30, 23, 59, 59)) and not usable(asset, _utc_ms(2026, 7, 1))
    assert asset.to_dict()["usable_until"] == "2026-06-30"
    assert describe(asset, _utc_ms(2026, 1, 1)) == "usable until 2026-06-30 · not as a reference · CC-BY 4.0, credit ACME"
    assert describe(asset, _utc_ms(2027, 1, 1)).startswith("expired after 2026-06-30")
    assert blocked_as_reference(asset, _utc_ms(2027, 1, 1)) == "its usage rights ended after 2026-06-30"
    assert blocked_as_reference(asset, _utc_ms(2026, 1, 1)) == "it is marked “do not use as a reference”"
    cleared = rights_change(no_until=True, note="", no_reference=False).apply(asset)
    assert (cleared.usable_until, cleared.licence, cleared.no_reference) == (0, "", False)
    assert blocked_as_reference(cleared, _utc_ms(2099, 1, 1)) is None
    assert rights_change(until=date(2026, 6, 30)).usable_until == expires and rights_change().empty


@pytest.mark.parametrize("typed, expected", [
    ("2026-13-01", "not a day of the calendar"),
    ("2026-02-30", "not a day of the calendar"),
    ("30/06/2026", "not a date: write it as YYYY-MM-DD"),
    ("2026-6-30", "not a date"),
    ("", "not a date"),
    ("2026-06-30; rm -rf /", "not a date"),
    ("2026-06-30T00:00", "not a date"),
    ("９９９９-01-01", "not a date"),   # full-width digits: not what people mean
    ("1969-12-31", "outside 1970-01-01"),
    ("9999-12-31", "outside 1970-01-01"),
    ("2" * 5000, "not a date"),
])
def test_a_bad_date_is_refused_with_the_format(typed, expected):
    with pytest.raises(InvalidInputError, match=expected) as caught:
        rights_change(until=typed)
    assert len(str(caught.value)) < 200  # a huge value is not echoed back whole


@pytest.mark.parametrize("note, expected", [
    ("line one\nline two", "control characters"),
    ("tab\there", "control characters"),
    ("escape \x1b[2J", "control characters"),
    ("nul \x00", "control characters"),
    ("x" * (MAX_LICENCE_BYTES + 1), f"limit is {MAX_LICENCE_BYTES:,}"),
    ("é" * (MAX_LICENCE_BYTES // 2 + 1), "bytes long"),  # the limit is bytes of UTF-8, not characters
])
def test_a_bad_note_is_refused(note, expected):
    with pytest.raises(InvalidInputError, match=expected):
        rights_change(note=note)
    with pytest.raises(InvalidInputError, match="not both"):
        rights_change(until="2026-01-01", no_until=True)


def test_hostile_but_printable_notes_are_kept_as_written(library):
    ids = [a.sha256 for _, a in library.ingest_uploads([Upload("a.jpg", jpeg_bytes(1))]).added]
    for note in ['x" or 1==1 or "', "[link](javascript:alert(1)) :red[x] ‮gpj.exe", "é" * (MAX_LICENCE_BYTES // 2)]:
        library.set_rights(ids, rights_change(note=note))
        assert library.get(ids[0]).licence == note


def test_rights_on_many_assets_and_what_expired_is_left_out_of(any_library):
    library = any_library
    report = library.ingest_uploads([Upload(f"p{i}.jpg", jpeg_bytes(900 + i)) for i in range(6)], tags=["cat"])
    ids = [a.sha256 for _, a in report.added]
    now = now_ms()
    yesterday = datetime.fromtimestamp((now - DAY_MS) / 1000, tz=timezone.utc).date()
    tomorrow = datetime.fromtimestamp((now + DAY_MS) / 1000, tz=timezone.utc).date()
    expired, not_as_reference, fine_until_tomorrow = ids[:2], ids[2], ids[3]
    done = library.set_rights(expired, rights_change(until=yesterday, note="summer 2025 licence"))
    assert [a.sha256 for a in done.done] == expired and all(a.expired(now) for a in done.done)
    library.set_rights([not_as_reference], rights_change(no_reference=True))
    library.set_rights([fine_until_tomorrow], rights_change(until=tomorrow))
    library.trash([ids[5]])
    assert library.set_rights([ids[5]], rights_change(note="x")).skipped == {ids[5]: "in the trash (restore it first)"}

    everything = {h.asset.sha256 for h in library.search_text("x", 50)}
    assert everything == set(ids[:5])  # a plain search still finds expired assets
    assert {h.asset.sha256 for h in library.search_text("x", 50, usable_at=now)} == set(ids[2:5])
    assert {h.asset.sha256 for h in library.search_text("x", 50, tags=["cat"], usable_at=now)} == set(ids[2:5])
    assert {h.asset.sha256 for h in library.search_text("x", 50, usable_at=now, for_reference=True)} == {ids[3], ids[4]}
    # Suggestions leave out the expired and the not-as-reference; a day later, the one until tomorrow too.
    assert {h.asset.sha256 for h in suggest_references(library, "x", k=10)} == {ids[3], ids[4]}
    assert {h.asset.sha256 for h in suggest_references(library, "x", k=10, now=now + 2 * DAY_MS)} == {ids[4]}


def test_words_in_a_name_do_not_bring_back_what_the_rights_leave_out(library):
    """Hybrid search's keyword route (names, tags, briefs) keeps to the same usage-rights filters."""
    report = library.ingest_uploads([Upload(name, jpeg_bytes(950 + i)) for i, name in
                                     enumerate(["kestrel-poster.jpg", "kestrel-banner.jpg", "kestrel-mug.jpg",
                                                "plain.jpg", "other.jpg"])])
    ids = {name: a.sha256 for name, a in report.added}
    assert library.store.full_text
    now = now_ms()
    library.set_rights([ids["kestrel-poster.jpg"]], rights_change(until="2020-01-01"))
    library.set_rights([ids["kestrel-banner.jpg"]], rights_change(no_reference=True))
    found = {h.asset.filename for h in library.search_text("kestrel", 5, usable_at=now)}
    assert "kestrel-poster.jpg" not in found and {"kestrel-banner.jpg", "kestrel-mug.jpg"} <= found
    suggested = {h.asset.filename for h in suggest_references(library, "kestrel", k=5)}
    assert "kestrel-mug.jpg" in suggested and not suggested & {"kestrel-poster.jpg", "kestrel-banner.jpg"}


def test_a_library_of_schema_1_has_no_rights_yet(settings, tiny_embedder):
    from ragkit.library import Library
    from tests.support.libraries import old_library
    assets, _ = old_library(settings, tiny_embedder.dim, rows=3)
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        with pytest.raises(UpgradeNeededError, match="ragkit upgrade"):
            library.set_rights([assets[0].sha256], rights_change(note="x"))
        assert len(library.store.search(library.store.get_vector(assets[0].sha256), 5, usable_at=now_ms())) == 3
    finally:
        library.close()


def test_rights_and_search_usable_in_the_cli(tmp_path, ragkit_env):
    for i in range(3):
        (tmp_path / f"p{i}.jpg").write_bytes(jpeg_bytes(950 + i))
    added = json.loads(run_cli_inprocess(["ingest", str(tmp_path), "--json"], ragkit_env, tmp_path).stdout)["added"]
    ids = [a["sha256"] for a in added]

    set_ = run_cli_inprocess(["rights", ids[0], ids[1], "--until", "2020-01-31", "--note", "Getty #123, web only",
                    "--no-reference", "--json"], ragkit_env, tmp_path)
    assert set_.returncode == 0, set_.stderr
    shown = json.loads(set_.stdout)["assets"]
    assert [(a["usable_until"], a["licence"], a["no_reference"]) for a in shown] == \
        [("2020-01-31", "Getty #123, web only", True)] * 2

    human = run_cli_inprocess(["rights", ids[0], ids[2]], ragkit_env, tmp_path)  # no options: show them
    lines = human.stdout.decode().splitlines()
    assert lines == [f"{ids[0][:12]}  expired after 2020-01-31 · not as a reference · Getty #123, web only",
                     f"{ids[2][:12]}  (no usage rights recorded)"]

    usable_hits = json.loads(run_cli_inprocess(["search", "x", "--usable", "-k", "10", "--json"], ragkit_env, tmp_path).stdout)["hits"]
    assert [h["sha256"] for h in usable_hits] == [ids[2]]
    assert len(json.loads(run_cli_inprocess(["search", "x", "-k", "10", "--json"], ragkit_env, tmp_path).stdout)["hits"]) == 3

    cleared = run_cli_inprocess(["rights", ids[0], "--no-until", "--allow-reference", "--note", "", "--json"], ragkit_env, tmp_path)
    assert [(a["usable_until"], a["licence"], a["no_reference"])
            for a in json.loads(cleared.stdout)["assets"]] == [(None, "", False)]

    bad_date = run_cli_inprocess(["rights", ids[0], "--until", "2026-02-30"], ragkit_env, tmp_path)
    assert bad_date.returncode == 1 and b"not a day of the calendar" in bad_date.stderr
    assert b"Traceback" not in bad_date.stderr and len(bad_date.stderr.strip().splitlines()) == 1
    both = run_cli_inprocess(["rights", ids[0], "--until", "2026-01-01", "--no-until"], ragkit_env, tmp_path)
    assert both.returncode == 2
    escape = run_cli_inprocess(["rights", ids[0], "--note", "a\x1b[2Jb"], ragkit_env, tmp_path)
    assert escape.returncode == 1 and b"control characters" in escape.stderr and b"\x1b" not in escape.stderr
    unknown = run_cli_inprocess(["rights", ids[0], "e" * 64, "--note", "ok"], ragkit_env, tmp_path)
    assert unknown.returncode == 3 and f"not found: {'e' * 64}".encode() in unknown.stderr
