"""Benchmark inputs, generated once into bench/.cache/ and reused.

* JPEG sets: textured photos (smooth colour fields, hard-edged shapes, lines and film-grain
  noise), because the cost of decoding a JPEG depends on its content: a flat colour image
  decodes several times faster than a photo of the same size.
* Synthetic libraries: a real ragkit library (ragkit's schema, written through ragkit's
  AssetStore) holding N assets with synthetic CLIP-like vectors, plus the vectors themselves
  as .npy for exact brute-force ground truth.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import CACHE_DIR, bench_server, bench_settings

JPEG_KINDS = {
    # name: (width, height, quality)
    "800x600": (800, 600, 90),
    "24mp": (6000, 4000, 92),
}
GENERATOR_VERSION = 2  # bump to regenerate cached inputs after changing the generators
# Synthetic libraries only (the JPEG sets keep GENERATOR_VERSION): 3 = tags with realistic
# selectivity (Zipf: 30 % .. 1 %) and sources 90/10 upload/generated.
LIBRARY_VERSION = 5  # 4: ragkit's schema 2 (trash, rights, keywords); 5: varied types, sizes, a year of dates


# --- JPEG sets ----------------------------------------------------------------------------
def textured_image(width: int, height: int, seed: int):
    """A deterministic photo-like RGB image: colour gradients, shapes, edges and grain."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    # Low frequencies: a coarse random colour grid, upscaled smoothly.
    grid = rng.integers(0, 256, (max(2, height // 150), max(2, width // 150), 3), dtype=np.uint8)
    image = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
    # Mid frequencies: hard-edged shapes and lines (product edges, text, fabric seams).
    draw = ImageDraw.Draw(image)
    scale = max(width, height)
    for _ in range(40):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        size = int(rng.integers(scale // 40, scale // 6))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(0, 3)
        box = [x0, y0, x0 + size, y0 + int(size * rng.uniform(0.3, 1.5))]
        if shape == 0:
            draw.ellipse(box, fill=colour)
        elif shape == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.line(box, fill=colour, width=max(1, size // 30))
    image = image.filter(ImageFilter.GaussianBlur(radius=max(0.6, scale / 4000)))
    # High frequencies: luminance grain, like a real sensor at moderate ISO.
    pixels = np.asarray(image, dtype=np.int16)
    for y in range(0, height, 1000):  # in strips to bound memory on 24 MP images
        strip = pixels[y:y + 1000]
        grain = rng.normal(0, 9, strip.shape[:2] + (1,)).astype(np.int16)
        strip += grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg_set(kind: str, count: int, log=print) -> Path:
    """A folder with `count` distinct textured JPEGs of the given kind (generated once, cached)."""
    width, height, quality = JPEG_KINDS[kind]
    folder = CACHE_DIR / f"jpeg-{kind}-g{GENERATOR_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not (folder / f"img_{i:05d}.jpg").exists()]
    if missing:
        log(f"  generating {len(missing)} {kind} JPEGs into {folder} (once) ...")
        start = time.perf_counter()
        for i in missing:
            image = textured_image(width, height, seed=1000 * GENERATOR_VERSION + i)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality)
            tmp = folder / f".tmp-{i:05d}.jpg"
            tmp.write_bytes(buffer.getvalue())
            tmp.rename(folder / f"img_{i:05d}.jpg")
        log(f"  ... done in {time.perf_counter() - start:.0f} s")
    return folder


def jpeg_files(kind: str, count: int, log=print) -> list[Path]:
    folder = jpeg_set(kind, count, log)
    return [folder / f"img_{i:05d}.jpg" for i in range(count)]


def folder_of(files: list[Path], name: str) -> Path:
    """A folder holding exactly these files (symlinks), so ingest_paths sees only them."""
    folder = CACHE_DIR / "tmp" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in files:
        (folder / path.name).symlink_to(path)
    return folder


# --- synthetic vectors --------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class VectorModel:
    """CLIP-like unit vectors: a direction shared by all images, topic clusters, and noise.

    Real CLIP image embeddings are not uniform on the sphere: any two images have a cosine
    of roughly 0.3-0.5 and images of one topic sit closer. Here two random assets have a
    cosine of about 1/3 and two of the same cluster about 2/3, and queries (like text
    queries) sit farther from everything than assets from each other. Many near-ties in the
    top 10 make this a fair test of an approximate index's recall.
    """
    dim: int = 512
    common: float = 0.6
    topic: float = 0.6
    noise: float = 0.6
    query_noise: float = 0.9
    assets_per_cluster: int = 200

    def _basis(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, 1])
        common = _unit(rng.standard_normal(self.dim))
        centers = _unit(rng.standard_normal((max(8, n // self.assets_per_cluster), self.dim)))
        return common, centers

    def assets(self, n: int, seed: int = 0) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        for start, chunk in self.asset_chunks(n, seed):
            out[start:start + len(chunk)] = chunk
        return out

    def asset_chunks(self, n: int, seed: int = 0, size: int = 20000):
        """(start, vectors) of assets(n) in order, `size` at a time (a million without 2 GB at once)."""
        common, centers = self._basis(n, seed)
        rng = np.random.default_rng([seed, 2])
        for start in range(0, n, size):
            m = min(size, n - start)
            noise = rng.standard_normal((m, self.dim)).astype(np.float32) / math.sqrt(self.dim)
            topic = centers[rng.integers(0, len(centers), m)]
            yield start, _unit(self.common * common + self.topic * topic + self.noise * noise)

    def queries(self, count: int, n: int, seed: int = 0) -> np.ndarray:
        common, centers = self._basis(n, seed)
        rng = np.random.default_rng([seed, 3])
        noise = rng.standard_normal((count, self.dim)).astype(np.float32) / math.sqrt(self.dim)
        topic = centers[rng.integers(0, len(centers), count)]
        return _unit(self.common * common + self.topic * topic + self.query_noise * noise)


VECTORS = VectorModel()
TAG_WORDS = ["summer", "winter", "hero", "draft", "approved", "red", "blue", "gold", "silk", "leather",
             "watch", "shoe", "bag", "cape", "knight", "dragon", "forest", "studio", "outdoor", "night",
             "banner", "social", "print", "web", "campaign-24", "campaign-25", "product", "lifestyle",
             "character", "environment"]
# Tag j is on ~30 %/(j+1) of the assets, independently of the others and of the vectors:
# "summer" on 30 %, "winter" on 15 %, ..., "environment" on 1 % (about 1.2 tags per asset).
TAG_SHARES = {word: 0.30 / (j + 1) for j, word in enumerate(TAG_WORDS)}
COMMON_TAG, RARE_TAG = TAG_WORDS[0], TAG_WORDS[-1]
GENERATED_EVERY = 10  # every 10th asset is generated (10 %), the rest uploads (90 %)
PROMPT = ("A hero banner of a golden wristwatch on dark velvet, soft rim light, studio photography, "
          "brand colours navy and gold, space for a headline on the left")


def asset_id(n: int, i: int) -> str:
    return hashlib.sha256(f"ragkit-bench-{n}-{i}".encode()).hexdigest()


def index_key(spec: dict) -> str:
    params = "-".join(f"{k}{v}" for k, v in sorted((spec.get("params") or {}).items()))
    return spec["index_type"] + (f"-{params}" if params else "")


@dataclass(frozen=True)
class SyntheticLibrary:
    n: int
    root: Path
    data_dir: Path
    index: dict
    vectors_path: Path

    @property
    def uri(self) -> str:
        return str(self.data_dir / "ragkit.db")

    def vectors(self) -> np.ndarray:
        return np.load(self.vectors_path, mmap_mode="r")

    def ids(self) -> list[str]:
        return [asset_id(self.n, i) for i in range(self.n)]


def synthetic_library(n: int, index: dict | None = None, thumbnails: int = 1000, log=print) -> SyntheticLibrary:
    """A ragkit library of n synthetic assets (cached under bench/.cache/lib-*).

    Rows go through ragkit's own AssetStore.upsert and flush, in batches of 5000; thumbnails
    (real small JPEGs) are written for the newest `thumbnails` assets only, which is every
    page a benchmark opens, without writing n files. With a benchmark server (bench/run.py
    --uri), the same rows go there instead; the files and vectors stay in the cache.
    """
    from ragkit.library import Library
    from ragkit.storage.store import DEFAULT_INDEX

    index = index or DEFAULT_INDEX
    root = CACHE_DIR / f"lib-{n}-{index_key(index)}-l{LIBRARY_VERSION}"
    marker = root / "done.json"
    lib = SyntheticLibrary(n, root, root / "data", index, root / "vectors.npy")
    if bench_server():
        _on_server(lib, log)
        return lib
    if marker.exists():
        return lib
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    log(f"  building a synthetic library of {n} assets, index {index_key(index)} (once) ...")
    start = time.perf_counter()
    vectors = VECTORS.assets(n)
    np.save(lib.vectors_path, vectors)
    library = Library.open(bench_settings(lib.data_dir), index=index)
    try:
        _fill(library, lib, vectors)
        _thumbnails(library, lib, thumbnails)
    finally:
        library.close()  # stops the Lite server: waits for its background index build
    marker.write_text(json.dumps({"n": n, "index": index, "seconds": round(time.perf_counter() - start, 1)}))
    log(f"  ... done in {time.perf_counter() - start:.0f} s")
    return lib


def _fill(library, lib: SyntheticLibrary, vectors: np.ndarray, batch: int = 5000) -> None:
    """Every asset of the synthetic library, through ragkit's store, then a flush."""
    labels = asset_labels(lib.n)
    for begin in range(0, lib.n, batch):
        end = min(lib.n, begin + batch)
        library.store.upsert(synthetic_assets(lib.n, begin, end, labels), np.asarray(vectors[begin:end]))
    library.store.flush()


BASE_MS = 1_700_000_000_000  # 2023-11-14 22:13 UTC: the oldest asset
YEAR_MS = 365 * 86_400_000


def synthetic_assets(n: int, begin: int, end: int, labels) -> list:
    """Assets begin..end-1 of the synthetic library of n, added evenly over a year, 10 % generated,
    in the types and shapes of a real archive (asset_file_facts)."""
    from ragkit.records import SOURCE_GENERATED, Asset
    assets = []
    for i in range(begin, end):
        tags, source = labels[i]
        generated = source == SOURCE_GENERATED
        mime, width, height = asset_file_facts(i)
        assets.append(Asset(
            sha256=asset_id(n, i), filename=f"photo_{i:06d}.jpg", mime=mime,
            width=width, height=height, size_bytes=150_000 + i % 5000, tags=tags, source=source,
            created_at=asset_created_at(n, i),
            prompt=PROMPT if generated else "", model="gemini-2.5-flash-image" if generated else ""))
    return assets


def asset_created_at(n: int, i: int) -> int:
    return BASE_MS + i * max(1000, YEAR_MS // max(n, 1))


def asset_file_facts(i: int) -> tuple[str, int, int]:
    """(mime, width, height) of asset i: 70 % JPEG, 20 % PNG, 10 % WebP; 4 in 7 landscape 800x600,
    1 in 7 each portrait 1080x1920, square 2048x2048 and landscape 4000x3000."""
    mime = "image/png" if i % 10 in (0, 1) else "image/webp" if i % 10 == 2 else "image/jpeg"
    width, height = {0: (1080, 1920), 1: (2048, 2048), 2: (4000, 3000)}.get(i % 7, (800, 600))
    return mime, width, height


def _thumbnails(library, lib: SyntheticLibrary, count: int) -> None:
    thumb = _thumbnail_bytes()
    for i in range(max(0, lib.n - count), lib.n):
        library.blobs.put_thumbnail(asset_id(lib.n, i), thumb)


SERVER_MARK = "ragkit.bench_library"  # a collection property: which synthetic library the server holds


def _on_server(lib: SyntheticLibrary, log=print) -> None:
    """Make the benchmark server hold exactly this library (one per model: a collection is per model):
    kept if it already does, rebuilt otherwise, straight from the generator (no embedded copy needed,
    so sizes that Milvus Lite could not hold work too). Then wait until its vector index is built."""
    from ragkit.library import Library
    lib.data_dir.mkdir(parents=True, exist_ok=True)
    mark = lib.root.name
    library = Library.open(bench_settings(lib.data_dir), index=lib.index)
    try:
        client, collection = library._client, library.store.collection  # noqa: SLF001
        if client.describe_collection(collection).get("properties", {}).get(SERVER_MARK) == mark \
                and library.store._rows() == lib.n:  # noqa: SLF001
            return
        log(f"  putting the synthetic library of {lib.n} assets on the server ...")
        start = time.perf_counter()
        client.drop_collection(collection)
    finally:
        library.close()
    library = Library.open(bench_settings(lib.data_dir), index=lib.index)
    try:
        client, collection = library._client, library.store.collection  # noqa: SLF001
        labels = asset_labels(lib.n)
        keep = None if lib.vectors_path.exists() else np.lib.format.open_memmap(
            lib.vectors_path, mode="w+", dtype=np.float32, shape=(lib.n, VECTORS.dim))  # for recall, later
        for begin, chunk in VECTORS.asset_chunks(lib.n):
            if keep is not None:
                keep[begin:begin + len(chunk)] = chunk
            for sub in range(0, len(chunk), 5000):
                stop = min(len(chunk), sub + 5000)
                library.store.upsert(synthetic_assets(lib.n, begin + sub, begin + stop, labels), chunk[sub:stop])
        client.flush(collection)
        _wait_for_index(client, collection, lib.n, log)
        client.alter_collection_properties(collection, properties={SERVER_MARK: mark})
        _thumbnails(library, lib, 1000)
        if keep is not None:
            keep.flush()
    finally:
        library.close()
    log(f"  ... done in {time.perf_counter() - start:.0f} s")


def _wait_for_index(client, collection: str, n: int, log=print, timeout: float = 3600) -> None:
    """A server builds its vector index in the background after a flush: time searches only after."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        info = client.describe_index(collection, "vector") or {}
        indexed = int(info.get("indexed_rows", 0) or 0)
        if indexed >= n or (info.get("state") == "Finished" and not int(info.get("pending_index_rows", 0) or 0)):
            return
        if indexed != last:
            log(f"    index: {indexed} of {n} rows")
            last = indexed
        time.sleep(5)
    raise TimeoutError(f"the server's index of {collection} was not built after {timeout:.0f}s")


def asset_labels(n: int) -> list[tuple[tuple[str, ...], str]]:
    """(tags, source) of asset i of a synthetic library of n (deterministic: ground truth for filters)."""
    from ragkit.records import SOURCE_GENERATED, SOURCE_UPLOAD

    shares = np.array(list(TAG_SHARES.values()))
    has_tag = np.random.default_rng([n, 7]).random((n, len(TAG_WORDS))) < shares
    return [(tuple(TAG_WORDS[j] for j in np.flatnonzero(row)),
             SOURCE_GENERATED if i % GENERATED_EVERY == 0 else SOURCE_UPLOAD)
            for i, row in enumerate(has_tag)]


def _thumbnail_bytes() -> bytes:
    from ragkit.ingest.images import make_thumbnail
    return make_thumbnail(textured_image(512, 384, seed=42))


TEXT_QUERIES = [
    "a red silk cape with gold trim", "a golden watch on dark velvet", "white sneakers on a concrete floor",
    "a knight in silver armour at dusk", "a leather handbag in warm studio light", "a dragon over a forest",
    "summer campaign banner with palm trees", "a product shot of a perfume bottle", "a blue denim jacket",
    "a cosy living room with plants", "a character concept in a cyberpunk city", "a bowl of ramen from above",
    "a mountain lake at sunrise", "a black sports car in the rain", "a minimalist poster with bold type",
    "a child flying a kite on the beach", "a castle on a hill, fantasy art", "a close-up of a diamond ring",
    "a coffee cup on a wooden table", "neon signs in a night market",
]
