"""End to end in a real browser: `streamlit run app.py` driven by Playwright in headless Chromium.

Upload through the file input, see the thumbnails, open an image, search by text, pick two
results as references and find them in the tray and on the Studio page. Screenshots go to
test-artifacts/e2e/; with RAGKIT_UPDATE_SCREENSHOTS=1 they also replace docs/screenshots/.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.conftest import free_port
from tests.e2e_support import (ARTIFACTS, GRID_IMAGES, chromium_page, image_sizes, product_set,
                               require_browser, shot, streamlit_server, wait_for_app_idle)

pytestmark = pytest.mark.browser


def test_upload_browse_search_and_pick_references_in_chromium(ragkit_env, tmp_path):
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    products = product_set(12)
    log_path = tmp_path / "streamlit.log"
    page_errors: list[str] = []

    with streamlit_server(ragkit_env, free_port(), log_path) as url, chromium_page() as page:
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        try:
            _walk_through(page, url, products)
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))  # what the browser showed
            raise
        assert page.locator('[data-testid="stException"]').count() == 0
        assert not page_errors, page_errors

    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert time.monotonic() - started < 90


def _walk_through(page, url: str, products: list[tuple[str, bytes]]) -> None:
    # 1. A new user lands on an empty library that says what to do.
    page.goto(url)
    page.get_by_text("Your library is empty").wait_for(timeout=90_000)
    wait_for_app_idle(page, 60)
    assert page.get_by_text("Demo model with random weights").is_visible()
    shot(page, "empty-library")

    # 2. Drag-and-drop is a file input underneath: twelve product shots and one text file.
    files = [{"name": name, "mimeType": "image/jpeg", "buffer": data} for name, data in products]
    files.append({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"})
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(files)
    add = page.get_by_role("button", name="Add 13 images to the library")
    add.wait_for()
    tags = page.get_by_label("Tags for these images (optional, comma-separated)")
    tags.fill("summer, catalogue")
    tags.press("Enter")
    wait_for_app_idle(page)
    add.click()
    page.locator('[class*="st-key-library-report"]').get_by_text("12 added").wait_for(timeout=90_000)
    wait_for_app_idle(page, 60)
    assert page.locator('[class*="st-key-library-report"]').get_by_text("1 rejected").is_visible()

    # 3. The grid shows twelve thumbnails (never the 640-px originals), newest first.
    sizes = image_sizes(page, GRID_IMAGES.format("library"), 12)
    assert len(sizes) == 12
    assert all(max(s["w"], s["h"]) <= 384 for s in sizes), sizes
    assert page.get_by_text("12 images, newest first").is_visible()
    captions = page.locator('[class*="st-key-ragkit-grid-library"] [data-testid="stCaptionContainer"]')
    assert captions.first.inner_text().strip() == products[-1][0]
    page.get_by_role("button", name="Dismiss").click()
    wait_for_app_idle(page)
    shot(page, "library", height=1300)

    # 4. Details open in a dialog; closing it keeps it closed on later reruns.
    page.get_by_role("button", name="Details").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    wait_for_app_idle(page)
    assert dialog.get_by_text(products[-1][0]).first.is_visible()
    assert dialog.get_by_role("button", name="Download original").is_visible()
    assert dialog.get_by_role("button", name="Find similar").is_visible()
    image_sizes(page, '[role="dialog"] .ragkit-viewer-frame img', 1)  # the viewer's full-resolution picture
    shot(page, "details")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    wait_for_app_idle(page)

    # 5. Search by words: six scored thumbnails.
    page.get_by_role("link", name="Search").click()
    query = page.get_by_label("Describe what you are looking for")
    query.wait_for()
    wait_for_app_idle(page)
    assert page.get_by_role("dialog").count() == 0  # the closed dialog did not come back
    query.fill("a red sneaker")
    query.press("Enter")
    page.get_by_text("results for “a red sneaker”").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    image_sizes(page, GRID_IMAGES.format("search"), 6)
    grid_text = page.locator('[class*="st-key-ragkit-grid-search"]').inner_text()
    assert len(re.findall(r"^\s*-?\d\.\d\d\s*$", grid_text, re.M)) == 6, grid_text  # scores as 0.83

    # 6. Pick two hits as references: they show in the sidebar tray.
    switches = page.locator('[class*="st-key-ragkit-grid-search"] [data-testid="stCheckbox"]').filter(has_text="Reference")
    for index in (0, 1):
        switches.nth(index).get_by_text("Reference").click()
        wait_for_app_idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("References · 2").wait_for()
    image_sizes(page, '[class*="st-key-ragkit-tray-sidebar"] img', 2)
    shot(page, "search", height=1200)

    # 7. Open Studio with the two references (the tray's grid, whatever else the Studio shows).
    sidebar.get_by_role("button", name="Open Studio").click()
    page.get_by_role("heading", name="Studio", exact=True).wait_for()
    wait_for_app_idle(page)
    image_sizes(page, GRID_IMAGES.format("tray-studio"), 2)
    assert sidebar.get_by_role("button", name="Open Studio").count() == 0  # already there
    shot(page, "references-in-studio")
