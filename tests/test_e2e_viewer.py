"""The image viewer (ragkit/ui/viewer.py; issue 21, item 5) in Chromium, in the Library and on Search:
the picture at full resolution (not a stretched thumbnail), zoom, previous / next, and the image's details and actions beside it. Screenshots go to test-artifacts/e2e/;
with RAGKIT_UPDATE_SCREENSHOTS=1 the viewer's also replaces docs/screenshots/viewer.png."""
from __future__ import annotations

import os
import shutil

from ragkit.ingest.pipeline import Upload
from tests.conftest import REPO, free_port
from tests.e2e_support import (app_env, chromium_browser, new_session_page, product_jpeg, require_browser,  # noqa: F401
                               seed, streamlit_server, wait_for_app_idle)

ARTIFACTS = REPO / "test-artifacts" / "e2e"
FULL = (1600, 1200)  # bigger than the 1024 px preview the old details dialog showed
PRODUCTS = [("red", "sneaker"), ("blue", "mug"), ("green", "watch"), ("yellow", "bottle")]
DIALOG = '[data-testid="stDialog"]'
PICTURE = f'{DIALOG} .ragkit-viewer-frame img'
NAME = f'{DIALOG} [data-testid="stMarkdownContainer"] h3'  # the file name (the dialog's own title is a heading too)


def _dialog_title(page) -> str:
    return page.locator(NAME).first.inner_text()


def _wait_until_showing(page, name: str, showing: bool = True) -> None:
    """Until the viewer shows the image `name` (or, showing=False, another one)."""
    check = "e.innerText.includes" if showing else "!e.innerText.includes"
    page.wait_for_function(f"() => {{ const e = document.querySelector('{NAME}'); return e && {check}({name!r}); }}",
                           timeout=60_000)
    wait_for_app_idle(page)


def _picture_size(page) -> tuple[int, int, int]:
    """(natural width, natural height, drawn width) of the viewer's picture."""
    return tuple(page.eval_on_selector(PICTURE, "img => [img.naturalWidth, img.naturalHeight, img.width]"))


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.mouse.move(2, 2)
    page.screenshot(path=str(path))
    if os.environ.get("RAGKIT_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(path, REPO / "docs" / "screenshots" / path.name)


def test_one_viewer_for_the_library_and_search(ragkit_env, tmp_path, seed):
    require_browser()
    seed([Upload(f"{colour}-{product}-SKU-{i:04d}.jpg", product_jpeg(product, colour, seed=i, size=FULL))
          for i, (colour, product) in enumerate(PRODUCTS)], tags=["catalogue"])
    with streamlit_server(ragkit_env, free_port(), tmp_path / "server.log") as url, chromium_browser() as browser:
        page = new_session_page(browser, viewport=(1440, 1000))
        page.goto(url)
        wait_for_app_idle(page, 90)
        page.get_by_role("button", name="Details").first.click(timeout=90_000)
        page.locator(PICTURE).wait_for(timeout=60_000)
        wait_for_app_idle(page)
        first = _dialog_title(page)
        assert _picture_size(page)[:2] == FULL  # the original's pixels, not a preview or a thumbnail
        assert "1 of 4" in page.locator(DIALOG).inner_text()
        _shot(page, "viewer")

        dialog = page.locator(DIALOG)
        dialog.get_by_role("button", name="Next").click()  # the next image of the grid
        _wait_until_showing(page, first, showing=False)
        second = _dialog_title(page)
        assert second != first and "2 of 4" in dialog.inner_text()
        assert _picture_size(page)[:2] == FULL
        dialog.get_by_role("button", name="Previous").click()
        _wait_until_showing(page, first)
        page.locator(NAME).click()  # nothing focused that takes keys
        page.keyboard.press("ArrowRight")  # the → key moves on too
        _wait_until_showing(page, second)

        drawn_fit = _picture_size(page)[2]
        page.locator(DIALOG).get_by_text("2×", exact=True).click()
        wait_for_app_idle(page)
        page.locator(PICTURE).wait_for()
        assert _picture_size(page)[2] == 2 * FULL[0] > drawn_fit  # zoomed: twice its own pixels, in a pannable frame
        assert page.eval_on_selector(f"{DIALOG} .ragkit-viewer-frame", "f => f.scrollWidth > f.clientWidth")
        _shot(page, "viewer-zoomed")
        # Details and actions beside the picture.
        text = page.locator(DIALOG).inner_text()
        assert "1600 × 1200 px" in text and "Use as a reference" in text and "Download original" in text
        page.keyboard.press("Escape")
        wait_for_app_idle(page)

        # The same viewer on the Search page, opened from a result.
        page.goto(f"{url}/search")
        wait_for_app_idle(page, 60)
        page.get_by_placeholder("red silk cape or SKU-4471").fill("a red sneaker")
        page.keyboard.press("Enter")
        wait_for_app_idle(page, 60)
        page.locator('[class*="st-key-search-view"] button').first.click()
        page.locator(PICTURE).wait_for(timeout=60_000)
        wait_for_app_idle(page)
        assert _picture_size(page)[:2] == FULL
        text = page.locator(DIALOG).inner_text()
        assert "similarity to the query" in text and "More like this" in text and "of 4" in text
        _shot(page, "viewer-search")
