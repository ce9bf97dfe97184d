"""The trash and changes to many assets, on real Milvus (embedded, `milvus-lite server`, real Milvus):
deleting moves assets out of every view and Restore brings them back exactly; Empty deletes for good,
files first; old trash expires; bulk tags are one upsert per step; a picture added again while it is
in the trash comes back."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from ragkit.lifecycle import doctor
from ragkit.errors import InvalidInputError, UpgradeNeededError
from ragkit.ingest.pipeline import Provenance, Upload
from ragkit.library import Library
from ragkit.ingest.portable import export_library
from ragkit.rights import DAY_MS, now_ms
from ragkit.storage.store import UPDATE_BATCH
from ragkit.studio.references import suggest_references
from tests.images_factory import jpeg_bytes, png_bytes


def _fill(library: Library, count: int = 6) -> list[str]:
    """`count` pictures tagged 'shoot' (the last one generated, with provenance), oldest first."""
    report = library.ingest_uploads([Upload(f"shot-{i}.jpg", jpeg_bytes(700 + i), tags=(f"n{i}",))
                                     for i in range(count - 1)], tags=["shoot"])
    ids = [asset.sha256 for _, asset in report.added]
    made = library.save_generated(png_bytes(799), "image/png",
                                  Provenance("a red cape on a beach", "gemini-2.5-flash-image", tuple(ids[:2])),
                                  tags=["shoot", "promo"])
    return [*ids, made.sha256]


def _search_ids(library: Library, **filters) -> set[str]:
    return {hit.asset.sha256 for hit in library.search_text("anything", 50, **filters)}


def test_delete_hides_everywhere_and_restore_brings_back_exactly(any_library, tmp_path):
    library = any_library
    ids = _fill(library)
    before = {asset.sha256: asset for asset in library.get_many(ids)}
    vectors = {sha: library.store.get_vector(sha) for sha in ids}
    gone = [ids[1], ids[5]]  # an upload and the generated one

    moved = library.trash(gone, now=now_ms())
    assert sorted(a.sha256 for a in moved.done) == sorted(gone) and moved.complete

    kept = [sha for sha in ids if sha not in gone]
    assert library.count() == 4 and library.count(tags=["shoot"]) == 4 and library.count(tags=["promo"]) == 0
    assert library.trash_count() == 2
    assert {a.sha256 for a in library.page(0, 50).assets} == set(kept) and library.page(0, 50).total == 4
    assert _search_ids(library) == set(kept)
    assert _search_ids(library, tags=["shoot"]) == set(kept)  # the filtered route too
    assert _search_ids(library, source="generated") == set()
    assert library.search_similar(ids[0], 10) and ids[1] not in {h.asset.sha256 for h in library.search_similar(ids[0], 10)}
    assert dict(library.all_tags()).get("promo") is None and dict(library.all_tags())["shoot"] == 4
    assert library.stats().assets == 4 and library.stats().generated == 0
    assert not {h.asset.sha256 for h in suggest_references(library, "a red cape", k=10)} & set(gone)
    out = export_library(library, tmp_path / "all.zip")
    with zipfile.ZipFile(out.path) as archive:
        exported = {entry["sha256"] for entry in json.loads(archive.read("metadata.json"))["assets"]}
    assert exported == set(kept)
    assert [a.sha256 for a in library.trashed()] and {a.sha256 for a in library.trashed()} == set(gone)
    assert library.blobs.has(ids[1]) and library.blobs.has(ids[5])  # the files stay until emptied

    # Moving again is a no-op that says so; an unknown id is reported, not an error.
    unknown = "f" * 64
    again = library.trash([ids[1], unknown])
    assert not again.done and again.skipped == {ids[1]: "already in the trash"} and again.missing == [unknown]

    back = library.restore(gone)
    assert back.complete and library.trash_count() == 0 and library.count() == 6
    for sha in gone:
        assert library.get(sha) == before[sha]  # tags, provenance, dates: exactly as before
        np.testing.assert_allclose(library.store.get_vector(sha), vectors[sha], atol=1e-6)
    assert _search_ids(library) == set(ids)
    assert dict(library.all_tags())["promo"] == 1
    assert library.restore([ids[0]]).skipped == {ids[0]: "not in the trash"}


def test_trash_lists_the_most_recently_deleted_first(library):
    ids = _fill(library, 4)
    now = now_ms()
    library.trash([ids[0]], now=now - 3 * DAY_MS)
    library.trash([ids[2], ids[3]], now=now - DAY_MS)
    library.trash([ids[1]], now=now)
    assert [a.sha256 for a in library.trashed()] == [ids[1], *sorted([ids[2], ids[3]]), ids[0]]
    page = library.trashed_page(1, 2)
    assert page.total == 4 and [a.sha256 for a in page.assets] == [a.sha256 for a in library.trashed()[1:3]]


def test_empty_trash_deletes_files_then_rows_and_only_what_is_in_the_trash(any_library):
    library = any_library
    ids = _fill(library)
    library.trash(ids[:3])
    progress: list[tuple[int, int]] = []
    only_one = library.empty_trash([ids[0], ids[4]], on_progress=lambda done, total: progress.append((done, total)))
    assert [a.sha256 for a in only_one.done] == [ids[0]]
    assert only_one.skipped == {ids[4]: "not in the trash"} and progress[-1] == (2, 2)
    assert library.store.get(ids[0]) is None and not library.blobs.original_path(ids[0]).exists()
    assert library.get(ids[4]).tags  # a live asset is never deleted by emptying

    emptied = library.empty_trash()
    assert sorted(a.sha256 for a in emptied.done) == sorted(ids[1:3])
    assert library.trash_count() == 0 and library.count() == 3
    for sha in ids[:3]:
        assert library.store.get(sha) is None
        assert not library.blobs.original_path(sha).exists() and not library.blobs.thumbnail_path(sha).exists()
    report = doctor.check(library)
    assert report.healthy and report.rows == 3 and report.files == 3 and report.in_trash == 0


def test_trash_older_than_trash_days_is_emptied_when_the_library_opens(settings, tiny_embedder):
    library = Library.open(settings, embedder=tiny_embedder)
    now = now_ms()
    try:
        ids = _fill(library, 4)
        library.trash([ids[0]], now=now - 31 * DAY_MS)  # past RAGKIT_TRASH_DAYS (30)
        library.trash([ids[1]], now=now - 29 * DAY_MS)
    finally:
        library.close()
    reopened = Library.open(settings, embedder=tiny_embedder)
    try:
        assert reopened.expired_on_open == 1
        assert reopened.store.get(ids[0]) is None and not reopened.blobs.original_path(ids[0]).exists()
        assert [a.sha256 for a in reopened.trashed()] == [ids[1]]
        # The clock is a parameter: two days later, the other one's time is up too.
        assert [a.sha256 for a in reopened.expire_trash(now=now + 2 * DAY_MS).done] == [ids[1]]
        assert reopened.trash_count() == 0 and reopened.count() == 2
        assert doctor.check(reopened).healthy
    finally:
        reopened.close()


def test_trash_days_is_a_setting(tmp_path, ragkit_env, tiny_embedder):
    from ragkit.config import ConfigError, Settings
    short = Settings.load(env={**ragkit_env, "RAGKIT_TRASH_DAYS": "2"}, cwd=tmp_path, secrets_files=[])
    assert short.trash_days == 2
    library = Library.open(short, embedder=tiny_embedder)
    try:
        ids = _fill(library, 2)
        library.trash(ids, now=now_ms() - 3 * DAY_MS)
        assert len(library.expire_trash().done) == 2
    finally:
        library.close()
    for bad in ("0", "-5", "thirty", "1e9", "999999"):
        with pytest.raises(ConfigError, match="RAGKIT_TRASH_DAYS"):
            Settings.load(env={**ragkit_env, "RAGKIT_TRASH_DAYS": bad}, cwd=tmp_path, secrets_files=[])


def test_adding_a_picture_that_is_in_the_trash_restores_it(any_library):
    library = any_library
    ids = _fill(library, 3)
    original = library.get(ids[0])
    library.trash([ids[0]])
    report = library.ingest_uploads([Upload("same-again.jpg", jpeg_bytes(700), tags=("new",)),
                                     Upload("and-again.jpg", jpeg_bytes(700)),
                                     Upload("fresh.jpg", jpeg_bytes(790))])
    assert report.restored == [("same-again.jpg", ids[0])]
    assert report.duplicates == [("and-again.jpg", ids[0])] and [l for l, _ in report.added] == ["fresh.jpg"]
    assert library.get(ids[0]) == original  # as it was: its name, tags and date
    assert library.trash_count() == 0 and library.count() == 4
    assert report.to_dict()["restored"] == [{"path": "same-again.jpg", "sha256": ids[0]}]


def test_a_half_emptied_asset_is_not_restored_but_can_be_added_anew(library):
    """An emptying killed after the files went: Restore refuses (nothing to restore), doctor finishes
    the delete, and adding the picture again makes a new asset rather than a row without a file."""
    ids = _fill(library, 3)
    library.trash(ids[:2])
    for sha in ids[:2]:
        library.blobs.delete(sha)  # what a kill between the files and the rows leaves
    refused = library.restore(ids[:2])
    assert not refused.done and set(refused.skipped) == set(ids[:2])
    assert "doctor --repair" in refused.skipped[ids[0]]

    again = library.ingest_uploads([Upload("back.jpg", jpeg_bytes(700), tags=("again",))])
    assert [a.sha256 for _, a in again.added] == [ids[0]] and not again.restored
    assert library.get(ids[0]).filename == "back.jpg" and not library.get(ids[0]).trashed

    found = doctor.check(library)
    assert found.rows_without_original == [ids[1]] and found.in_trash == 1
    repaired = doctor.repair(library)
    assert repaired.actions == [f"finished deleting {ids[1]} from the trash"]
    assert doctor.check(library).healthy and library.store.get(ids[1]) is None


def test_bulk_tags_are_one_upsert_per_step(any_library, monkeypatch):
    library = any_library
    count = UPDATE_BATCH + 88
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((count, library.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    from ragkit.records import Asset
    assets = [Asset(sha256=f"{i:064x}", filename=f"p{i}.jpg", mime="image/jpeg", width=8, height=8, size_bytes=1,
                    tags=("old", "keep"), created_at=1_000 + i) for i in range(count)]
    library.store.upsert(assets, vectors)
    library.trash([assets[0].sha256])
    calls = []
    real_upsert = library.store._client.upsert  # noqa: SLF001 - counting the writes Milvus receives
    monkeypatch.setattr(library.store._client, "upsert",  # noqa: SLF001
                        lambda *args, **kwargs: calls.append(len(args[1])) or real_upsert(*args, **kwargs))

    result = library.update_tags_many([a.sha256 for a in assets], add=["Campaign 7", "new"], remove=["OLD"])
    assert calls == [UPDATE_BATCH - 1, 88]  # one write per step; the trashed one is skipped
    assert len(result.done) == count - 1 and result.skipped == {assets[0].sha256: "in the trash (restore it first)"}
    assert library.count(tags=["campaign 7", "new", "keep"]) == count - 1 and library.count(tags=["old"]) == 0
    assert library.get(assets[0].sha256).tags == ("old", "keep")
    np.testing.assert_allclose(library.store.get_vector(assets[5].sha256), vectors[5], atol=1e-6)

    calls.clear()
    library.update_tags_many([a.sha256 for a in assets[1:10]], add=["new"])  # already so: nothing to write
    assert calls == []


def test_bulk_operations_refuse_a_bad_id_before_changing_anything(library):
    ids = _fill(library, 2)
    for bad in ("../../etc/passwd", 'x" or 1==1', "A" * 64 + "0", ""):
        with pytest.raises(InvalidInputError, match="not an asset id"):
            library.trash([ids[0], bad])
        with pytest.raises(InvalidInputError, match="not an asset id"):
            library.update_tags_many([ids[0], bad], add=["x"])
    assert library.trash_count() == 0 and "x" not in library.get(ids[0]).tags


def test_a_library_of_schema_1_has_no_trash(settings, tiny_embedder):
    from tests.support.libraries import old_library
    assets, _ = old_library(settings, tiny_embedder.dim, rows=3)
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        assert not library.has_trash
        with pytest.raises(UpgradeNeededError, match="ragkit upgrade"):
            library.trash([assets[0].sha256])
        with pytest.raises(UpgradeNeededError, match="ragkit upgrade"):
            library.empty_trash()
        assert library.trashed() == [] and library.trash_count() == 0 and library.expire_trash().done == []
        assert len(library.update_tags_many([a.sha256 for a in assets], add=["x"]).done) == 3
    finally:
        library.close()
