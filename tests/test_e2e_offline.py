"""Offline, the pages ask nothing of an outside host (issue 21, item 4): Streamlit turns a
`:material/…:` page icon into a favicon fetched from fonts.gstatic.com, the only request that failed
on a machine without internet. Every request the browser makes here goes to the app itself."""
from __future__ import annotations

from urllib.parse import urlsplit

from tests.conftest import free_port
from tests.e2e_support import (app_env, chromium_browser, new_session_page, require_browser, seed,  # noqa: F401
                               streamlit_server, wait_for_app_idle)
from tests.images_factory import jpeg_bytes
from ragkit.ingest.pipeline import Upload


def test_no_page_asks_an_outside_host_for_anything(ragkit_env, tmp_path, seed):
    require_browser()
    seed([Upload(f"shot-{i}.jpg", jpeg_bytes(i)) for i in range(3)])
    outside: list[str] = []
    favicons: list[str] = []
    with streamlit_server(ragkit_env, free_port(), tmp_path / "server.log") as url:
        with chromium_browser() as browser:
            page = new_session_page(browser)
            page.on("request", lambda request: None if urlsplit(request.url).hostname in ("127.0.0.1", "localhost")
                    or urlsplit(request.url).scheme in ("data", "blob") else outside.append(request.url))
            for path in ("", "search", "studio"):
                page.goto(f"{url}/{path}")
                wait_for_app_idle(page, 90)
                favicons.append(page.eval_on_selector("link[rel='shortcut icon']", "link => link.href"))
            page.screenshot(path=str(tmp_path / "studio.png"))
    assert outside == [], outside
    assert all(urlsplit(icon).hostname in ("127.0.0.1", "localhost") or icon.startswith("data:")
               for icon in favicons), favicons
