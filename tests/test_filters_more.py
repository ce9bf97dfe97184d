"""Filters people expect: the day an asset was added, its file type, orientation and size.

Every filter must keep exactly what a brute-force test over the same rows keeps, through every
path that reads the library: Milvus' own expression, the listing (Library grid, counts, export)
and filtered vector search (its over-fetch and by-ids routes on Milvus Lite, the server routes)."""
import json
from datetime import date, datetime, timezone

import numpy as np
import pytest

from ragkit.storage import lite_reads
from ragkit.errors import InvalidInputError
from ragkit.storage.filters import Filters, orientation_of
from ragkit.ingest.portable import export_library
from ragkit.records import Asset

from tests.support.cli import run_cli_inprocess

N, K = 400, 10
DAY_MS = 86_400_000
FIRST_DAY = date(2026, 3, 1)
MIMES = ["image/jpeg", "image/png", "image/webp", "image/gif"]
SIDES = [300, 640, 1024, 1080, 2048]


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1000


def _assets(dim: int, seed: int = 1) -> tuple[list[Asset], np.ndarray]:
    """N assets over 20 days (some at the first and last millisecond of a day), four file types,
    every orientation (squares too) and sizes on both sides of 1024, in clusters like pictures."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim))
    vectors = centres[rng.integers(0, 12, N)] + 0.8 * rng.standard_normal((N, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    start = _ms(FIRST_DAY)
    assets = []
    for i in range(N):
        day = int(rng.integers(0, 20))
        offset = [0, DAY_MS - 1, int(rng.integers(0, DAY_MS))][i % 3]  # midnight edges included
        width = int(rng.choice(SIDES))
        height = width if i % 7 == 0 else int(rng.choice(SIDES))
        assets.append(Asset(sha256=f"{i:064x}", filename=f"img{i}.jpg", mime=MIMES[int(rng.integers(0, 4))],
                            width=width, height=height, size_bytes=100,
                            tags=("hero",) if rng.random() < 0.3 else (),
                            source="generated" if rng.random() < 0.25 else "upload",
                            created_at=start + day * DAY_MS + offset))
    return assets, vectors


CASES = [
    Filters(since="2026-03-05"),
    Filters(until="2026-03-05"),
    Filters(since="2026-03-05", until="2026-03-05"),           # one whole day
    Filters(since="2026-03-04", until="2026-03-12", tags=("Hero",)),
    Filters(types=("png",)),
    Filters(types=("JPG", ".webp")),
    Filters(orientation="landscape"),
    Filters(orientation="portrait", source="generated"),
    Filters(orientation="square"),
    Filters(min_side=1024),
    Filters(min_side=1080, orientation="square", types=("jpeg", "png")),
    Filters(since="2026-03-15", types=("gif",), min_side=1024, tags=("hero",)),  # very selective
    Filters(since="2027-01-01"),                                # nothing
]


def _keeps(f: Filters, a: Asset) -> bool:
    """The brute force, written out from the meaning of each filter (not through Filters.matches)."""
    added = datetime.fromtimestamp(a.created_at / 1000, tz=timezone.utc).date()
    mime_names = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}
    return ((not f.tags or set(f.tags) <= set(a.tags)) and (f.source is None or a.source == f.source)
            and (f.since is None or added >= f.since) and (f.until is None or added <= f.until)
            and (not f.types or mime_names[a.mime] in f.types)
            and (f.orientation is None or orientation_of(a.width, a.height) == f.orientation)
            and min(a.width, a.height) >= f.min_side)


def _newest_first(assets, f):
    return [a.sha256 for a in sorted((a for a in assets if _keeps(f, a)), key=lambda a: (-a.created_at, a.sha256))]


def _top_k(assets, vectors, query, f, k=K):
    rows = [i for i, a in enumerate(assets) if _keeps(f, a)]
    return [assets[rows[j]].sha256 for j in np.argsort(-(vectors[rows] @ query))[:k]]


@pytest.fixture
def filtered_library(any_library):
    assets, vectors = _assets(any_library.dim)
    any_library.store.upsert(assets, vectors)
    any_library.store.flush()
    return any_library, assets, vectors


def test_new_filters_keep_what_brute_force_keeps_in_listing_count_expression_and_search(filtered_library,
                                                                                      monkeypatch):
    library, assets, vectors = filtered_library
    store = library.store
    queries = vectors[[3, 50, 201]] + 0.05
    for f in CASES:
        expected = _newest_first(assets, f)
        assert expected or f.since == date(2027, 1, 1), f"case keeps nothing: {f}"
        page = store.page(0, N, filters=f)
        assert [a.sha256 for a in page.assets] == expected, f
        assert store.count(filters=f) == len(expected), f
        # Milvus' own filter (a server's narrow filtered search) means the same thing.
        assert {r["sha256"] for r in store.scan(f.expression(live=True))} == set(expected), f
        for query in queries:
            assert [h.asset.sha256 for h in store.search(query, K, filters=f)] == _top_k(assets, vectors, query, f), f
    if store.embedded:  # each Milvus Lite route (over-fetch, by ids, exact), not only the one the costs pick
        inf = float("inf")
        for hit_cost, exact_cost in ((0.0, inf), (inf, inf), (inf, 0.0)):
            monkeypatch.setattr(lite_reads, "COST_PER_HIT_US", hit_cost)
            monkeypatch.setattr(lite_reads, "COST_PER_EXACT_ROW_US", exact_cost)
            for f in CASES:
                found = [h.asset.sha256 for h in store.search(queries[0], K, filters=f)]
                assert found == _top_k(assets, vectors, queries[0], f), (hit_cost, exact_cost, f)


def test_words_search_and_export_keep_only_what_passes(filtered_library, tmp_path):
    library, assets, vectors = filtered_library
    f = Filters(types=("png",), orientation="landscape")
    allowed = set(_newest_first(assets, f))
    hits = library.search_text("img", k=30, filters=f)  # every file name has the word "img"
    assert hits and {h.asset.sha256 for h in hits} <= allowed
    report = export_library(library, tmp_path / "out.zip", filters=f)
    assert report.assets == 0 and set(report.missing) == allowed  # rows only: no originals to pack


@pytest.mark.parametrize("bad, message", [
    ({"since": "2026-13-01"}, "date like 2026-01-31"),
    ({"since": "yesterday"}, "date like"),
    ({"until": "2026-01-01 or 1==1"}, "date like"),
    ({"since": "1969-12-31"}, "1970-01-01 to 2199-12-31"),
    ({"since": "2026-02-02", "until": "2026-02-01"}, "swap the dates"),
    ({"types": ("exe",)}, "unknown file type"),
    ({"types": ('png" or 1==1 or "',)}, "unknown file type"),
    ({"types": "png\n"}, "control characters"),
    ({"orientation": "diagonal"}, "landscape, portrait, square"),
    ({"min_side": "-5"}, "from 0 to"),
    ({"min_side": "1e9"}, "whole number"),
    ({"min_side": True}, "whole number"),
    ({"tags": ("ok", "bad\x00",)}, "control characters"),
    ({"source": "upload or 1==1"}, "source must be one of"),
])
def test_hostile_filter_values_are_refused_with_what_to_type(bad, message):
    with pytest.raises(InvalidInputError, match=message):
        Filters(**bad)


def test_cli_filters_search_and_refuse_bad_values(tmp_path, ragkit_env, image_folder, library, capsys):
    """The flags through the real CLI: PNG and portrait pictures only; bad values are usage errors."""
    from PIL import Image
    from ragkit.cli.common import filters_from as _filters
    from ragkit.cli.main import build_parser
    Image.new("RGB", (120, 200), (200, 30, 30)).save(image_folder / "tall.png")
    Image.new("RGB", (200, 120), (30, 30, 200)).save(image_folder / "wide.png")
    assert library.ingest_paths([image_folder]).ok
    library.close()  # the CLI's process opens the file next
    found = run_cli_inprocess(["search", "a picture", "--type", "PNG", "--orientation", "portrait", "--since", "2000-01-01",
                     "-k", "20", "--json"], ragkit_env, tmp_path)
    assert found.returncode == 0, found.stderr
    assert [h["filename"] for h in json.loads(found.stdout)["hits"]] == ["tall.png"]

    export = build_parser().parse_args(["export", "--out", "x.zip", "--type", "png", "--type", "jpg", "--min-side",
                                        "120", "--orientation", "Landscape", "--until", "2026-01-31", "--tag", "Hero"])
    assert _filters(export) == Filters(types=("png", "jpeg"), min_side=120, orientation="landscape",
                                       until=date(2026, 1, 31), tags=("hero",))
    for flags, message in ((["--until", "31/01/2026"], "--until must be a date like 2026-01-31"),
                           (["--type", "exe"], "unknown file type 'exe'"),
                           (["--min-side", "big"], "whole number of pixels")):
        with pytest.raises(SystemExit) as refused:
            build_parser().parse_args(["search", "x", *flags])
        assert refused.value.code == 2 and message in capsys.readouterr().err
