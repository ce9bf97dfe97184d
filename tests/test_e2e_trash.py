"""Acting on many assets in a real browser: `streamlit run app.py` in headless Chromium. Select tiles,
tag them at once, move them to the trash, restore one from the Trash view and empty the rest, on a
real Milvus Lite library. Screenshots of the selection bar and the Trash view go to test-artifacts/e2e/
(and, with RAGKIT_UPDATE_SCREENSHOTS=1, to docs/screenshots/)."""
from __future__ import annotations

import time

import pytest

from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from ragkit.rights import rights_change
from tests.conftest import free_port
from tests.e2e_support import (ARTIFACTS, GRID_IMAGES, blob_counts, chromium_page, image_sizes, product_set,
                               require_browser, shot, streamlit_server, wait_for_app_idle)

pytestmark = pytest.mark.browser

TILE_CHECKBOXES = '[class*="st-key-ragkit-grid-{}"] [data-testid="stCheckbox"]'


def _seed(settings, tiny_embedder) -> list[str]:
    """Twelve product shots, newest last; the oldest one's usage rights ended."""
    library = Library.open(settings, embedder=tiny_embedder)
    try:
        report = library.ingest_uploads([Upload(name, data) for name, data in product_set(12)], tags=["catalogue"])
        ids = [asset.sha256 for _, asset in report.added]
        library.set_rights([ids[0]], rights_change(until="2025-08-31", note="Summer 2025 shoot, web only"))
        return ids
    finally:
        library.close()


def test_select_tag_delete_restore_and_empty_in_chromium(ragkit_env, settings, tiny_embedder, tmp_path):
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ids = _seed(settings, tiny_embedder)
    log_path = tmp_path / "streamlit.log"
    page_errors: list[str] = []
    started = time.monotonic()
    with streamlit_server(ragkit_env, free_port(), log_path) as url, chromium_page() as page:
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        try:
            _walk_through(page, url)
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "trash-failure.png"))
            raise
        assert page.locator('[data-testid="stException"]').count() == 0
        assert not page_errors, page_errors
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    print(f"select, tag, delete, restore and empty in Chromium: {time.monotonic() - started:.1f} s")

    library = Library.open(settings, embedder=tiny_embedder)
    try:
        assert library.count() == 10 and library.trash_count() == 0
        restored = [a for a in library.page(0, 50).assets if "hero" in a.tags]  # three tagged, two emptied
        assert len(restored) == 1 and restored[0].sha256 in ids[-3:]
        assert restored[0].tags == ("catalogue", "hero")  # restored as it was, the new tag included
        assert blob_counts(settings.data_dir) == {"originals": 10, "thumbnails": 10, "temp": 0}
    finally:
        library.close()


def _walk_through(page, url: str) -> None:
    page.goto(url)
    page.get_by_text("12 images, newest first").wait_for(timeout=90_000)
    wait_for_app_idle(page, 60)
    image_sizes(page, GRID_IMAGES.format("library"), 12)
    page.get_by_text("Expired 2025-08-31").first.wait_for()  # the badge on the oldest

    # 1. Select three tiles (the newest three): the bar counts them.
    boxes = page.locator(TILE_CHECKBOXES.format("library"))
    for index in range(3):
        boxes.nth(index).click()
        wait_for_app_idle(page)
    bar = page.locator('[class*="st-key-selection-bar-library"]')
    bar.get_by_text("3 selected").wait_for()

    # 2. Tag them at once.
    bar.get_by_role("button", name="Tags").click()
    add = page.get_by_role("combobox", name="Add tags")
    add.wait_for()
    add.fill("Hero")
    add.press("Enter")
    wait_for_app_idle(page)
    page.keyboard.press("Escape")  # close the option list, keep the popover
    add.blur()  # the multiselect sends its value when it loses focus: let that run finish first
    wait_for_app_idle(page)
    page.get_by_role("button", name="Apply to 3").click()
    page.get_by_text("Tags changed on 3 images").wait_for()
    wait_for_app_idle(page)
    filters = page.locator('[class*="st-key-library-filters"]')
    tag_picker = filters.get_by_role("combobox").first
    tag_picker.click()
    tag_picker.fill("hero")  # typing opens the option list whatever the focus did
    page.get_by_role("option", name="hero (3)").wait_for()
    page.keyboard.press("Escape")
    tag_picker.fill("")
    wait_for_app_idle(page)
    page.get_by_text("3 selected").wait_for()
    _dismiss_toasts(page)
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    shot(page, "selection", height=1000)

    # 3. Delete them: a confirmation, then they are in the trash.
    bar.get_by_role("button", name="Delete…").click()
    page.get_by_text("Move 3 images to the trash?").wait_for()
    page.get_by_role("button", name="Yes, move to the trash").click()
    page.get_by_text("9 images, newest first").wait_for()
    wait_for_app_idle(page)
    image_sizes(page, GRID_IMAGES.format("library"), 9)

    # 4. The Trash view: three thumbnails with when they were deleted; restore one.
    page.get_by_text("Trash (3)", exact=True).click()
    page.get_by_text("3 images in the trash").wait_for()
    wait_for_app_idle(page)
    image_sizes(page, GRID_IMAGES.format("trash"), 3)
    badges = page.locator('[class*="st-key-ragkit-grid-trash"] [data-testid="stMarkdown"]')
    assert badges.filter(has_text="30 days left").count() == 3
    page.locator(TILE_CHECKBOXES.format("trash")).nth(1).click()  # the trash has its own selection bar
    page.locator('[class*="st-key-selection-bar-trash"]').get_by_text("1 selected").wait_for()
    wait_for_app_idle(page)
    _dismiss_toasts(page)
    shot(page, "trash", height=1000)
    page.locator('[class*="st-key-ragkit-grid-trash"]').get_by_role("button", name="Restore").first.click()
    page.get_by_text("2 images in the trash").wait_for()
    wait_for_app_idle(page)

    # 5. Empty the trash: a confirmation, then they are gone for good.
    page.get_by_role("button", name="Empty trash…").click()
    page.get_by_role("button", name="Yes, delete 2 for good").click()
    page.get_by_text("The trash is empty").wait_for()
    wait_for_app_idle(page)
    page.get_by_text("Library (10)", exact=True).click()
    page.get_by_text("10 images, newest first").wait_for()


def _dismiss_toasts(page) -> None:
    """Close the toasts (they would cover the top of a screenshot)."""
    buttons = page.locator('[data-testid="stToast"] button')
    for index in reversed(range(buttons.count())):
        buttons.nth(index).click()
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stToast\"]')", timeout=10_000)
