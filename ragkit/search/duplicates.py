"""Near-duplicate groups: the same shot re-exported, resized, re-compressed or rotated.

Byte duplicates never get in (an asset's identity is the SHA-256 of its bytes); these are the
copies that differ in bytes but not in picture. Two assets are *similar* when the cosine of their
CLIP vectors is >= a threshold; a *group* is a connected component of that "similar" graph.

Why components, not cliques: a 15% crop of a half-size re-encode may sit below the threshold
from the original while each step sits above it, and it is still the same shot; a search that
returns at most `candidates` neighbours per asset (or an approximate index that misses one)
drops edges, and components survive a missing edge where cliques split. The price is chaining
(A~B, B~C, A and C unlike), so every group says `min_score`, the lowest similarity between
any two of its members: a group far below the threshold is a chain to look at, not to bulk-delete.

The cost is one batched nearest-neighbour search per asset, done by Milvus (never all pairs in
Python), plus a second, wider one for the few assets that have a near neighbour at all
(bench/duplicates_bench.py).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ragkit.errors import AssetNotFoundError, InvalidInputError, StateFileError
from ragkit.storage.blobs import write_atomic
from ragkit.storage.files import read_json_file
from ragkit.storage.filters import validate_sha256
from ragkit.lifecycle import trash as trash_bin
from ragkit.records import Asset

# From practice with CLIP ViT-B-32 image embeddings, not measured here (no real weights on this
# machine): Immich's default keeps only cosine >= 0.99 (re-encodes, resizes), and 0.95 is the usual
# starting point that also takes small crops. A person reviews every group before anything is
# deleted, so we lean to recall. Random weights crowd everything together: pass a threshold there.
DEFAULT_THRESHOLD = 0.95
DEFAULT_CANDIDATES = 16   # neighbours asked per asset; bigger groups still connect through union-find
QUERY_BATCH = 4096        # vectors read and searched per call: Lite pays a pass over the collection per call
SCORE_TOLERANCE = 1e-6    # float32 cosines of identical pictures come back as 0.9999999
PAIRWISE_BLOCK = 1024     # rows per block when computing a group's lowest pairwise similarity
EXACT_MIN_SCORE_UP_TO = 4096  # members; above, min_score is a bound (m² dot products take minutes)
ROWS_PER_READ = 1000      # group members read back per call

MAX_DISMISSED = 10_000     # "not duplicates" sets remembered; the oldest go first
DISMISSED_FILE = "duplicates-dismissed.json"

ProgressCallback = Callable[[int, int], None]  # (assets scanned, assets in all)


@dataclass(frozen=True)
class DuplicateGroup:
    """Assets that show the same picture. `assets[0]` is the one to keep by default (`keep`)."""
    assets: tuple[Asset, ...]       # the suggested keeper first, then most similar to it first
    scores: tuple[float, ...]       # cosine of each asset to the suggested keeper (1.0 for itself)
    min_score: float                # lowest cosine between any two members (a lower bound for huge groups)

    @property
    def keep(self) -> str:
        return self.assets[0].sha256

    @property
    def sha256s(self) -> list[str]:
        return [asset.sha256 for asset in self.assets]

    @property
    def filenames(self) -> list[str]:
        return [asset.filename for asset in self.assets]

    def others(self, keep: str) -> list[str]:
        return [sha for sha in self.sha256s if sha != keep]

    def to_dict(self) -> dict:
        return {
            "sha256s": self.sha256s, "filenames": self.filenames, "min_score": round(self.min_score, 6),
            "keep": self.keep,
            "scores": [round(score, 6) for score in self.scores],
            "dimensions": [[asset.width, asset.height] for asset in self.assets],
            "size_bytes": [asset.size_bytes for asset in self.assets],
            "mimes": [asset.mime for asset in self.assets],
        }


def validate_threshold(value: object) -> float:
    """A cosine similarity in (0, 1]; anything else is a mistake a person should hear about."""
    try:
        threshold = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        threshold = math.nan
    if not math.isfinite(threshold) or not 0.0 < threshold <= 1.0:
        shown = str(value)[:40]
        raise InvalidInputError(
            f"The duplicate threshold must be a cosine similarity above 0 and at most 1 "
            f"(e.g. {DEFAULT_THRESHOLD}); got {shown!r}.")
    return threshold


def find_duplicate_groups(library_or_store, threshold: float = DEFAULT_THRESHOLD, *,
                          candidates: int = DEFAULT_CANDIDATES, batch_size: int = QUERY_BATCH,
                          on_progress: ProgressCallback | None = None) -> list[DuplicateGroup]:
    """Groups of two or more assets linked by cosine similarity >= threshold, biggest groups first.

    Accepts a Library or its AssetStore. `candidates` bounds the neighbours looked at per asset
    (and so the cost); `on_progress(done, total)` is called after each batch of assets."""
    store = getattr(library_or_store, "store", library_or_store)
    threshold = validate_threshold(threshold)
    if candidates < 1:
        raise InvalidInputError("Look at one or more candidates per asset.")
    links = _link_similar(store, threshold - SCORE_TOLERANCE, candidates, batch_size, on_progress)
    components = [members for members in links.components() if len(members) > 1]
    rows = _stored_rows(store, [sha for members in components for sha in members])
    groups = [_group([rows[sha] for sha in members if sha in rows]) for members in components]
    return sorted((g for g in groups if g is not None), key=lambda g: (-len(g.assets), -g.min_score, g.keep))


def resolve_group(library, keep: str, group: DuplicateGroup) -> int:
    """Keep one asset of a group and delete the others: to the trash (restorable, ragkit.lifecycle.trash), or
    for good in a library of schema 1, which has no trash (files first, then rows: Library.delete).

    Refuses, deleting nothing, when `keep` is not in the group or is itself gone (deleted in
    another session since the groups were found): deleting the others then would lose the picture."""
    keep = validate_sha256(keep)
    if keep not in group.sha256s:
        raise InvalidInputError(f"Asset {keep[:12]}… is not in this group; choose one of its assets to keep.")
    kept = library.store.get(keep)
    if kept is None or kept.trashed or not library.blobs.original_path(keep).is_file():
        raise AssetNotFoundError(
            f"The asset to keep ({keep[:12]}…) is no longer in the library, so nothing was deleted. "
            "Look for duplicates again.")
    return len(trash_bin.remove(library, group.others(keep)).done)


def remove_copy(library, sha256: str, group: DuplicateGroup) -> int:
    """Remove one copy of a group (to the trash where there is one), keeping the others. Refuses
    when it is not in the group, or when it is the group's last copy still in the library."""
    sha256 = validate_sha256(sha256)
    if sha256 not in group.sha256s:
        raise InvalidInputError(f"Asset {sha256[:12]}… is not in this group.")
    left = [asset for asset in library.store.get_many(group.others(sha256)) if not asset.trashed]
    if not left:
        raise AssetNotFoundError("The other copies of this group are no longer in the library, so nothing was "
                                 "deleted. Look for duplicates again.")
    return len(trash_bin.remove(library, [sha256]).done)


# --- "not duplicates", remembered in the data folder ------------------------------------------
_DISMISSED_FIX = ("Delete the file to forget every \"Not duplicates\" answer (those groups are shown again); "
                  "nothing else is lost.")


def dismissed_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / DISMISSED_FILE


def read_dismissed(data_dir: Path | str) -> list[frozenset[str]]:
    """The sets of assets a person said are not duplicates ([] if none). A damaged file raises one
    StateFileError naming it; the caller shows it and goes on as if there were none."""
    path = dismissed_path(data_dir)
    try:
        data = read_json_file(path, what='the "Not duplicates" answers', fix=_DISMISSED_FIX)
    except FileNotFoundError:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise StateFileError(f"{path} (the \"Not duplicates\" answers) is damaged (not the shape ragkit writes). "
                             f"{_DISMISSED_FIX}")
    sets = []
    for members in data["groups"]:
        if isinstance(members, list) and all(isinstance(m, str) for m in members):
            try:
                sets.append(frozenset(validate_sha256(m) for m in members))
            except InvalidInputError:
                continue  # one bad entry is skipped, the rest still count
    return sets


def dismiss_group(data_dir: Path | str, group: DuplicateGroup) -> None:
    """Remember that this group's assets are not duplicates (a damaged file is replaced)."""
    try:
        sets = read_dismissed(data_dir)
    except StateFileError:
        sets = []
    sets = [s for s in sets if not s <= set(group.sha256s)] + [frozenset(group.sha256s)]
    payload = {"groups": [sorted(s) for s in sets[-MAX_DISMISSED:]]}
    write_atomic(dismissed_path(data_dir), json.dumps(payload).encode())


def without_dismissed(groups: Iterable[DuplicateGroup], dismissed: Sequence[frozenset[str]]) -> list[DuplicateGroup]:
    """The groups not dismissed: one whose members all lie in a dismissed set is left out (a new
    copy joining it brings it back)."""
    return [g for g in groups if not any(set(g.sha256s) <= s for s in dismissed)]


# --- the graph ------------------------------------------------------------------------------
class UnionFind:
    """Disjoint sets of asset ids (path halving, union by size)."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._size: dict[str, int] = {}

    def find(self, item: str) -> str:
        parent = self._parent.setdefault(item, item)
        self._size.setdefault(item, 1)
        while parent != item:
            grandparent = self._parent[parent]
            self._parent[item] = grandparent
            item, parent = grandparent, self._parent[grandparent]
        return item

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return
        if self._size[root_a] < self._size[root_b]:
            root_a, root_b = root_b, root_a
        self._parent[root_b] = root_a
        self._size[root_a] += self._size[root_b]

    def components(self) -> list[list[str]]:
        found: dict[str, list[str]] = {}
        for item in self._parent:
            found.setdefault(self.find(item), []).append(item)
        return list(found.values())


def _link_similar(store, min_score: float, candidates: int, batch_size: int,
                  on_progress: ProgressCallback | None) -> UnionFind:
    """Union every asset with its stored neighbours at or above min_score."""
    links = UnionFind()
    total, done = store.count(), 0
    for ids, vectors in store.vector_batches(batch_size):
        for sha, hits in zip(ids, _neighbours(store, vectors, candidates, min_score)):
            for other, _score in hits:
                if other != sha:
                    links.union(sha, other)
        done += len(ids)
        if on_progress is not None:
            on_progress(done, max(total, done))
    return links


def _neighbours(store, vectors: np.ndarray, candidates: int, min_score: float) -> list[list[tuple[str, float]]]:
    """Each vector's stored neighbours at or above min_score (itself included), in two rounds.

    Most assets have no near-duplicate, and a search's cost grows with the hits it returns (on
    Milvus Lite about 0.1 ms a hit: bench/duplicates_bench.py), so the first round asks for 2 hits
    (the asset and its nearest other); only the assets whose nearest other passes are asked again
    for `candidates` others."""
    hits = store.neighbours(vectors, 2, min_score)
    crowded = [i for i, found in enumerate(hits) if len(found) == 2]
    if crowded and candidates > 1:
        for i, found in zip(crowded, store.neighbours(vectors[crowded], candidates + 1, min_score)):
            hits[i] = found
    return hits


# --- one group ------------------------------------------------------------------------------
def _keeper_rank(asset: Asset) -> tuple:
    """The copy worth keeping: most pixels, then the biggest file (least compressed), then the oldest."""
    return (-asset.width * asset.height, -asset.size_bytes, asset.created_at, asset.sha256)


def _stored_rows(store, sha256s: Sequence[str]) -> dict[str, tuple[Asset, np.ndarray]]:
    """Assets and vectors as stored now, read in a few calls (not one per group: on Milvus Lite
    every read pays a pass over the collection). Ids deleted meanwhile are left out."""
    rows: dict[str, tuple[Asset, np.ndarray]] = {}
    for start in range(0, len(sha256s), ROWS_PER_READ):
        assets, vectors = store.assets_with_vectors(sha256s[start:start + ROWS_PER_READ])
        rows.update((asset.sha256, (asset, vector)) for asset, vector in zip(assets, vectors))
    return rows


def _group(rows: Sequence[tuple[Asset, np.ndarray]]) -> DuplicateGroup | None:
    """A group from its members' rows (None if fewer than two are left)."""
    if len(rows) < 2:
        return None
    assets = [asset for asset, _ in rows]
    vectors = np.stack([vector for _, vector in rows])
    keeper = min(range(len(assets)), key=lambda i: _keeper_rank(assets[i]))
    to_keeper = vectors @ vectors[keeper]
    order = sorted(range(len(assets)), key=lambda i: (i != keeper, -to_keeper[i], _keeper_rank(assets[i])))
    return DuplicateGroup(assets=tuple(assets[i] for i in order),
                          scores=tuple(min(1.0, float(to_keeper[i])) for i in order),
                          min_score=_lowest_similarity(vectors, to_keeper))


def _lowest_similarity(vectors: np.ndarray, to_keeper: np.ndarray) -> float:
    """min over i != j of cos(v_i, v_j) for unit vectors, a block of rows at a time; for a huge group
    (only random weights or a very low threshold make one) the bound cos(a + b), a and b the two
    widest angles to the keeper (the angle between two unit vectors obeys the triangle inequality)."""
    if len(vectors) > EXACT_MIN_SCORE_UP_TO:
        widest = np.sort(np.arccos(np.clip(to_keeper, -1.0, 1.0)))[-2:]
        return float(np.cos(min(math.pi, float(widest.sum()))))
    lowest = 1.0
    for start in range(0, len(vectors), PAIRWISE_BLOCK):
        block = vectors[start:start + PAIRWISE_BLOCK] @ vectors.T
        rows = np.arange(len(block))
        block[rows, rows + start] = np.inf  # a vector against itself
        lowest = min(lowest, float(block.min()))
    return lowest


def assets_to_delete(groups: Iterable[DuplicateGroup]) -> int:
    """How many assets would go if every group kept its suggested asset."""
    return sum(len(group.assets) - 1 for group in groups)
