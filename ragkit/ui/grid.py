"""Thumbnail grids and image helpers: thumbnails in grids (never full-size originals), cached
so a rerun reads nothing from disk twice.
"""
from __future__ import annotations

from typing import Callable, Iterable, TypeVar

import streamlit as st

from ragkit.errors import RagkitError
from ragkit.ingest.images import decode_image, make_thumbnail
from ragkit.library import Library
from ragkit.records import Asset
from ragkit.ui.markdown import md_escape

T = TypeVar("T")

PREVIEW_SIDE = 1024
GRID_MIN_COLUMN_PX = 150
TILE_NAME_CHARS = 48  # two lines of a tile; longer names are cut in the middle (whole on hover)
TILE_TAGS = 3

# Square tiles with the whole picture visible (contain, not crop) keep a grid of mixed
# portrait and landscape shots tidy. Scoped to ragkit grids by their key class.
_GRID_CSS = """
<style>
div[class*="st-key-ragkit-grid"] [data-testid="stImage"] img,
div[class*="st-key-ragkit-tray"] [data-testid="stImage"] img {
  aspect-ratio: 1 / 1; object-fit: contain; width: 100%;
  background: var(--st-secondary-background-color, #F1EEE8); border-radius: 6px;
}
div[class*="st-key-ragkit-grid"] [data-testid="stCaptionContainer"] p {
  overflow-wrap: anywhere;
}
</style>
"""


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumbnail(data_dir: str, sha256: str, _library: Library) -> bytes:
    # Keyed by data dir + id: content-addressed, so a cached thumbnail is never stale.
    # A missing file raises, and exceptions are not cached: `doctor --repair` fixes it live.
    return _library.thumbnail_bytes(sha256)


@st.cache_data(max_entries=64, show_spinner=False)
def _preview(data_dir: str, sha256: str, side: int, _library: Library) -> bytes:
    decoded = decode_image(_library.original_bytes(sha256), max_pixels=_library.settings.max_image_pixels,
                           min_long=side)
    return make_thumbnail(decoded.image, side=side, quality=88)


def thumbnail_bytes(library: Library, sha256: str) -> bytes | None:
    try:
        return _thumbnail(str(library.settings.data_dir), sha256, library)
    except RagkitError:
        return None


def preview_bytes(library: Library, sha256: str, side: int = PREVIEW_SIDE) -> bytes | None:
    """A larger JPEG for the details view (a downscaled original, never the original itself)."""
    try:
        return _preview(str(library.settings.data_dir), sha256, side, library)
    except RagkitError:
        return thumbnail_bytes(library, sha256)


@st.cache_data(max_entries=16, show_spinner=False)
def _small_preview(data: bytes, max_pixels: int, side: int) -> bytes:
    return make_thumbnail(decode_image(data, max_pixels=max_pixels, min_long=side).image, side=side)


def example_preview(library: Library, data: bytes, side: int = 320) -> bytes:
    """A small JPEG of a query image; InvalidImageError (with the reason) if it isn't usable."""
    from ragkit.errors import InvalidImageError
    try:
        return _small_preview(data, library.settings.max_image_pixels, side)
    except InvalidImageError as exc:
        raise InvalidImageError(f"The example image can't be used: {exc}") from None


def show_thumbnail(library: Library, asset: Asset, *, width="stretch") -> None:
    data = thumbnail_bytes(library, asset.sha256)
    if data is None:
        st.caption(":material/broken_image: thumbnail missing — run `python -m ragkit doctor --repair`")
    else:
        st.image(data, width=width, alt=asset.filename)


def rights_badges(asset: Asset, now: int) -> None:
    """Badges on a tile: expired usage rights, "not as a reference" (nothing for an asset without limits)."""
    from ragkit.records import last_usable_day
    badges = []
    if asset.expired(now):
        day = last_usable_day(asset.usable_until)
        badges.append(f":red-badge[:material/event_busy: Expired{f' {day.isoformat()}' if day else ''}]")
    if asset.no_reference:
        badges.append(":gray-badge[:material/block: Not as reference]")
    if badges:
        st.markdown(" ".join(badges), help=md_escape(asset.licence) if asset.licence else None)


def inject_css() -> None:
    st.html(_GRID_CSS)


def grid(items: Iterable[T], render_cell: Callable[[T], None], *, key: str,
         min_column_width: int = GRID_MIN_COLUMN_PX, columns: int | str = "auto") -> None:
    """A responsive grid, one bordered cell per item, each drawn by ``render_cell(item)``."""
    inject_css()
    container = st.grid(columns, min_column_width=min_column_width, border=True, gap="small",
                        key=f"ragkit-grid-{key}")
    for item in items:
        with container.cell():
            render_cell(item)


def human_size(size_bytes: int) -> str:
    size = float(size_bytes)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size_bytes} bytes"


def human_date(asset: Asset) -> str:
    """The date it was added, in the local time zone ("date unknown" for an implausible stored date)."""
    created = asset.created
    return created.astimezone().strftime("%Y-%m-%d %H:%M") if created else "date unknown"


def score_label(score: float) -> str:
    """Cosine similarity as people read it: two decimals."""
    return f"{score:.2f}"


def short_name(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def middle_name(name: str, limit: int = TILE_NAME_CHARS) -> str:
    """A long file name cut in the middle: its start and its end (where SKU codes and the
    extension are) stay readable, "watch_silver_SK…U-88231-blue.jpg" rather than "watch_silver_SK…"."""
    if len(name) <= limit:
        return name
    tail = (limit - 1) // 2
    return name[: limit - 1 - tail] + "…" + name[-tail:]


def name_caption(asset: Asset, prefix: str = "", limit: int = TILE_NAME_CHARS) -> None:
    """A tile's file name: wrapped (not cut) up to `limit` characters, cut in the middle beyond,
    and the whole name on hover of its (?)."""
    name = asset.filename
    st.caption(prefix + md_escape(middle_name(name, limit)), help=md_escape(name) if len(name) > limit else None)


def tags_caption(asset: Asset, shown: int = TILE_TAGS) -> None:
    """A tile's tags, the first few and how many more (nothing for an untagged image)."""
    if not asset.tags:
        return
    more = len(asset.tags) - shown
    text = " · ".join(md_escape(t) for t in asset.tags[:shown]) + (f" · +{more}" if more > 0 else "")
    st.caption(f":material/sell: {text}", help=md_escape(", ".join(asset.tags)) if more > 0 else None)

