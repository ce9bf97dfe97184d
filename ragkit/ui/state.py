"""The per-process library and Gemini client, and the session keys the pages share.

One ``Library`` per configuration per process (``st.cache_resource``): the Milvus client
and, once loaded, the CLIP model live as long as the server; likewise one Gemini client (its
connection pool) per API key and endpoint. A rerun, a page switch or a second browser tab
reuses them. A failure to open is *not* cached (Streamlit never caches an exception), so the
user can fix the cause and simply reload.
"""
from __future__ import annotations

import gc
import hashlib
import logging
import threading
from pathlib import Path
from collections import defaultdict

import streamlit as st

from ragkit.lifecycle.active_model import read_record
from ragkit.config import Settings
from ragkit.ingest.embedder import model_identity
from ragkit.errors import RagkitError
from ragkit.storage.app_record import write_app_record
from ragkit.library import Library
from ragkit.storage.connection import quiet_milvus_logging
from ragkit.studio import ImageGenerator
from ragkit.ui.errors import show_error

log = logging.getLogger("ragkit.ui")

APP_ICON = Path(__file__).parent / "assets" / "icon.png"  # the browser tab's icon (no outside host)

# Pages, as st.switch_page / st.page_link take them (relative to app.py).
LIBRARY_PAGE = "app_pages/library.py"
SEARCH_PAGE = "app_pages/search.py"
STUDIO_PAGE = "app_pages/studio.py"

# Session-state keys that cross pages.
OPEN_ASSET = "library.open"          # sha256 shown in the Library's details dialog
SIMILAR_TO = "search.similar"        # sha256 the Search page uses as its query ("find similar")
SEARCH_MODE = "search.mode"          # the Search page's query mode widget

MODE_TEXT = "Words"
MODE_IMAGE = "Example image"
MODE_SIMILAR = "Similar image"

_revisions: dict[str, int] = defaultdict(int)
_revisions_lock = threading.Lock()


def library_key(settings: Settings) -> str:
    """What makes two configurations the same library (the token only as a digest). It names the model
    the library records too: after a reindex switched it, the next page view opens it on the new model."""
    token = hashlib.sha256(settings.milvus_token.encode()).hexdigest()[:16] if settings.milvus_token else ""
    recorded = read_record(settings.data_dir).active  # a new library records the configured model: same key
    in_use = recorded.model_id if recorded else model_identity(settings.clip_model, settings.clip_pretrained)
    return "|".join([str(settings.data_dir), settings.milvus_uri, token, settings.clip_model,
                     settings.clip_pretrained, in_use, settings.device, str(settings.max_image_pixels)])


def _release(library: Library) -> None:
    library.close()


def _warm_up_model(library: Library) -> None:
    """Load CLIP in the background so the first search or upload doesn't wait for it."""
    try:
        library.embedder  # noqa: B018 - the property loads and keeps the model
        library.embedder.embed_texts(["warm up"])  # the first forward allocates; no one waits for it
    except RagkitError as exc:
        # Not lost: the same error is raised, and shown, when a search or an upload needs the model.
        log.warning("CLIP model not loaded: %s", exc)
    except Exception:  # noqa: BLE001
        log.exception("loading the CLIP model failed")
    freeze_long_lived_objects()


def freeze_long_lived_objects() -> None:
    """Move what is alive now (torch, the model, Streamlit, the engine's client) out of the garbage
    collector's sight. Streamlit runs a full gc.collect() after every script run (runner.postScriptGC);
    it walked ~475,000 objects here, 1.6 s per rerun on a loaded 2-core machine, and ~0 ms after the freeze.
    Reruns' own garbage is still collected; only objects alive at the freeze are never freed (a
    one-off: the process keeps them anyway)."""
    gc.collect()
    gc.freeze()


@st.cache_resource(show_spinner="Opening the image library…", max_entries=8, on_release=_release)
def _open_library(key: str, _settings: Settings) -> Library:
    quiet_milvus_logging()
    library = Library.open(_settings)
    if _settings.is_embedded_db:
        _note_app_address(_settings.milvus_uri)
    threading.Thread(target=_warm_up_model, args=(library,), name="ragkit-model-warm-up",
                     daemon=True).start()
    return library


def app_url() -> str:
    """This app's address as a browser on this machine reaches it (from the Streamlit options)."""
    host = st.get_option("browser.serverAddress") or "localhost"
    port = st.get_option("server.port") or 8501
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"http://{host}:{port}/{base}".rstrip("/")


def _note_app_address(db_path: str) -> None:
    """So a CLI command that finds the embedded database taken can name this app (ragkit.storage.app_record)."""
    try:
        write_app_record(db_path, app_url())
    except OSError as exc:  # a read-only data folder: the CLI then says "another process", no harm
        log.info("could not note the app's address next to %s: %s", db_path, exc)


def _close_client(generator: ImageGenerator) -> None:
    generator.close()


@st.cache_resource(max_entries=4, show_spinner=False, on_release=_close_client)
def _client(key_digest: str, base_url: str, _api_key: str) -> ImageGenerator:
    # Cached per (key, endpoint); the model is chosen per generate() call. The key itself is an
    # underscore argument, so it is never part of the cache key; its SHA-256 digest tells keys apart.
    return ImageGenerator(_api_key, base_url=base_url or None)


def generator(settings: Settings) -> ImageGenerator:
    """The process-wide Gemini client for this key and endpoint (MissingApiKeyError without a key)."""
    if not settings.gemini_api_key:
        return ImageGenerator.from_settings(settings)  # raises MissingApiKeyError with the how-to
    digest = hashlib.sha256(settings.gemini_api_key.encode("utf-8")).hexdigest()
    return _client(digest, settings.gemini_base_url, settings.gemini_api_key)


def settings() -> Settings:
    """Settings from the environment and .streamlit/secrets.toml (read on every run: cheap)."""
    return Settings.load()


def library() -> Library:
    """The process-wide library; on a ragkit error, show it with its fix and stop the page."""
    try:
        current = settings()
        return _open_library(library_key(current), current)
    except RagkitError as exc:
        stop_with(exc)


def stop_with(exc: RagkitError) -> None:
    """Show a set-up problem with its fix and stop the page; a reload retries."""
    show_error(exc)
    st.info("Fix the cause above, then reload the page to try again.", icon=":material/refresh:")
    st.stop()


def random_weights(library: Library) -> bool:
    """True when the model is untrained (demo/test); the library remembers the answer."""
    return library.random_weights


def revision(library: Library) -> int:
    """A number that changes whenever this process changed the library (caches key on it)."""
    return _revisions[library_key(library.settings)]


def mark_changed(library: Library) -> None:
    """Call after any write (ingest, tag edit, delete, a generated image saved)."""
    with _revisions_lock:
        _revisions[library_key(library.settings)] += 1


FLASH = "ragkit.flash"  # a toast for the next run: (message, icon)


def flash(message: str, icon: str) -> None:
    """Show `message` as a toast on the next run: a toast sent just before st.rerun() can be lost."""
    st.session_state[FLASH] = (message, icon)


def show_flash() -> None:
    """The toast left by flash(), once (every page calls this, through the sidebar)."""
    waiting = st.session_state.pop(FLASH, None)
    if waiting:
        message, icon = waiting
        st.toast(message, icon=icon)


def find_similar(sha256: str) -> None:
    """Open the Search page with this asset as the query: a new search, no words or filters of an earlier one."""
    from ragkit.ui import search_extras
    search_extras.start_fresh(keep_filters=False)
    st.session_state[SIMILAR_TO] = sha256
    st.session_state[SEARCH_MODE] = MODE_SIMILAR
    st.session_state.pop(OPEN_ASSET, None)
    st.switch_page(SEARCH_PAGE)


def all_tags(library: Library) -> list[tuple[str, int]]:
    """Every tag with its count, most used first (the store's catalog keeps it current)."""
    return library.all_tags()
