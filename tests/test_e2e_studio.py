"""The whole retrieve-then-generate loop in a real browser.

`streamlit run app.py` with a Gemini key and RAGKIT_GEMINI_BASE_URL pointing at the local
Gemini-format server (devtools/fake_gemini.py, in this process so the test can read what the real
google-genai client sent), driven by Playwright in headless Chromium: upload product shots in the
Library, search, pick two references, open the Studio, generate, see the image, download it, save
it, and find it in the Library with its provenance (brief, model, reference thumbnails).

Screenshots go to test-artifacts/e2e/studio-*.png; with RAGKIT_UPDATE_SCREENSHOTS=1 they also
replace docs/screenshots/studio-*.png (the convention of tests/test_e2e_browser.py).
"""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageDraw, ImageFilter

from tests.conftest import free_port
from tests.e2e_support import (ARTIFACTS, GRID_IMAGES, chromium_page, images_loaded, product_set,
                               require_browser, shot, streamlit_server, wait_for_app_idle)

from devtools.fake_gemini import FakeGemini, blocked_reply, image_reply, slow_reply

pytestmark = pytest.mark.browser

KEY = "sk-e2e-2b7c9d0e1f3a4b5c6d7e"
BRIEF = "A model wearing these products on a sunny beach at golden hour"


def beach_png(references: list[bytes], size=(960, 540)) -> bytes:
    """What the fake model 'generates': the references it was sent, on a beach at golden hour."""
    w, h = size
    scene = Image.new("RGB", size)
    draw = ImageDraw.Draw(scene)
    for y in range(h):
        t = y / h
        colour = (int(120 + 110 * t), int(180 + 40 * t), int(235 - 20 * t)) if t < 0.58 else \
            (int(236 - 20 * (t - .58)), int(210 - 30 * (t - .58)), int(160 - 40 * (t - .58)))
        draw.line((0, y, w, y), fill=colour)
    draw.ellipse((w * .76, h * .1, w * .88, h * .31), fill=(255, 214, 120))  # the sun
    draw.line((0, h * .58, w, h * .58), fill=(250, 250, 245), width=3)        # the surf line
    slot = w // max(1, len(references))
    for index, data in enumerate(references):
        picture = Image.open(io.BytesIO(data)).convert("RGB")
        picture.thumbnail((min(slot - 40, 380), 300))
        mask = Image.new("L", picture.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle((4, 4, picture.width - 4, picture.height - 4), 24, fill=255)
        x = index * slot + (slot - picture.width) // 2
        scene.paste(picture, (x, int(h * .62) - picture.height // 2), mask.filter(ImageFilter.GaussianBlur(3)))
    buffer = io.BytesIO()
    scene.save(buffer, "PNG")
    return buffer.getvalue()


def test_search_pick_generate_save_and_find_with_provenance(ragkit_env, tmp_path):
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / "streamlit.log"
    page_errors: list[str] = []
    products = product_set(6)
    with FakeGemini() as fake:
        fake.enqueue(blocked_reply("PROHIBITED_CONTENT"))  # the first try fails, the second works
        fake.always(lambda request: slow_reply(  # slow enough to see the progress
            2.0, image_reply("Here is your beach shot.", beach_png([d for _, d in request.images]))))
        env = {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake.url}
        with streamlit_server(env, free_port(), log_path) as url, chromium_page() as page:
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            try:
                picked = journey(page, url, products)
            except BaseException:
                page.screenshot(path=str(ARTIFACTS / "studio-failure.png"))  # what the browser showed
                raise
            assert page.locator('[data-testid="stException"]').count() == 0
            assert KEY not in page.content()
            assert not page_errors, page_errors

        # What the real google-genai client sent (twice): the typed brief and the two picked references
        # (small JPEGs go as they are, byte for byte), in the order they were picked.
        assert len(fake.requests) == 2
        originals = dict(products)
        for request in fake.requests:
            assert request.brief == BRIEF
            assert [data for _, data in request.images] == [originals[name] for name in picked]
            assert request.model == "gemini-nano-banana-2.1" and request.aspect_ratio == "16:9"
            assert request.headers.get("x-goog-api-key") == KEY

    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert KEY not in log


def journey(page, url: str, products: list[tuple[str, bytes]]) -> list[str]:
    """The user's walk through the app; returns the file names picked as references, in order."""
    sidebar = page.locator('[data-testid="stSidebar"]')

    # 1. Library: drop six product shots.
    page.goto(url)
    page.get_by_text("Your library is empty").wait_for(timeout=90_000)
    wait_for_app_idle(page, 60)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        [{"name": name, "mimeType": "image/jpeg", "buffer": data} for name, data in products])
    add = page.get_by_role("button", name="Add 6 images to the library")
    add.wait_for()
    wait_for_app_idle(page)
    add.click()
    page.locator('[class*="st-key-library-report"]').get_by_text("6 added").wait_for(timeout=60_000)
    wait_for_app_idle(page, 60)

    # 2. Search by words and switch on the first two hits as references.
    page.get_by_role("link", name="Search").click()
    query = page.get_by_label("Describe what you are looking for")
    query.wait_for()
    wait_for_app_idle(page)
    query.fill("a red sneaker")
    query.press("Enter")
    page.get_by_text("results for “a red sneaker”").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    images_loaded(page, GRID_IMAGES.format("search"), 6)
    captions = page.locator('[class*="st-key-ragkit-grid-search"] [data-testid="stCaptionContainer"]')
    # A caption per hit: its file name (after the score, if the page puts the score there).
    picked = [re.sub(r"^-?\d\.\d\d\s+", "", captions.nth(i).inner_text().strip()) for i in (0, 1)]
    switches = page.locator('[class*="st-key-ragkit-grid-search"] [data-testid="stCheckbox"]').filter(has_text="Reference")
    for index in (0, 1):
        switches.nth(index).get_by_text("Reference").click()
        wait_for_app_idle(page)
    sidebar.get_by_text("References · 2").wait_for()

    # 3. Studio: the two references are in the tray; write the brief, pick 16:9, generate.
    sidebar.get_by_role("button", name="Open Studio").click()
    page.get_by_role("heading", name="Studio").wait_for()
    wait_for_app_idle(page)
    assert page.get_by_text("Add a Gemini API key").count() == 0
    assert images_loaded(page, GRID_IMAGES.format("tray-studio"), 2) == 2
    tray_captions = page.locator('[class*="st-key-ragkit-grid-tray-studio"] [data-testid="stCaptionContainer"]')
    assert sorted(t.strip() for t in tray_captions.all_inner_texts()) == sorted(picked)
    brief = page.get_by_label("What should the new image show?")
    brief.fill(BRIEF)
    page.get_by_label("Aspect ratio").click()
    page.get_by_role("option", name="16:9 banner / video").click()
    wait_for_app_idle(page)
    assert page.get_by_label("What should the new image show?").input_value() == BRIEF
    # Retrieval for the brief itself: the other four library images, none switched on yet.
    page.get_by_role("button", name="Suggest references").click()
    page.get_by_text("Library images that match").wait_for()
    wait_for_app_idle(page)
    assert images_loaded(page, GRID_IMAGES.format("studio-suggest"), 4) == 4
    shot(page, "studio-brief")

    # 4. The first try is refused: the reason is shown; the brief and the tray are still there.
    page.get_by_role("button", name="Generate 1 image").click()
    page.get_by_text("blocked the brief").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    assert page.get_by_text("PROHIBITED_CONTENT").first.is_visible()
    assert page.get_by_label("What should the new image show?").input_value() == BRIEF
    assert page.locator(GRID_IMAGES.format("tray-studio")).count() == 2
    shot(page, "studio-error")
    page.get_by_role("button", name="Generate 1 image").click()
    page.get_by_text("Generating 1 image with Nano Banana").wait_for()
    assert page.locator('[class*="st-key-studio-progress"] [data-testid="stProgress"]').is_visible()
    page.wait_for_timeout(300)
    shot(page, "studio-progress")

    # 5. The second try: the image, Save to library and Download; the error is gone.
    results = '[class*="st-key-studio-results"] [data-testid="stImage"] img'
    page.get_by_role("button", name="Save to library").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    images_loaded(page, results, 1)
    assert page.get_by_text("blocked the brief").count() == 0
    size = page.eval_on_selector(results, "i => [i.naturalWidth, i.naturalHeight]")
    assert size == [960, 540], size  # the generated image itself, full size
    with page.expect_download() as download:
        page.get_by_role("button", name="Download", exact=True).click()
    assert download.value.suggested_filename == "a-model-wearing-these-products-on-1.png"
    assert download.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.get_by_role("button", name="Save to library").click()
    page.get_by_role("button", name="In the library", exact=True).wait_for(timeout=60_000)
    wait_for_app_idle(page)
    sidebar.get_by_text("7", exact=True).wait_for()  # the library count includes it
    history = GRID_IMAGES.format("studio-history")
    images_loaded(page, history, 1)
    shot(page, "studio-results", height=1500, top=page.get_by_role("heading", name="Results"))

    # 6. Library: the newest image is the generated one; its details show how it was made.
    page.get_by_role("link", name="Library").click()
    page.get_by_text("7 images, newest first").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    first_caption = page.locator('[class*="st-key-ragkit-grid-library"] [data-testid="stCaptionContainer"]').first
    assert "a-model-wearing-these-produ" in first_caption.inner_text()  # (shortened to fit the cell)
    page.locator('[class*="st-key-ragkit-grid-library"]').get_by_role("button", name="Details").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    wait_for_app_idle(page)
    dialog.get_by_text("How it was made").wait_for()
    assert dialog.get_by_text(BRIEF).is_visible()
    assert dialog.get_by_text("gemini-nano-banana-2.1").is_visible()
    assert dialog.get_by_text("2 reference image(s)").is_visible()
    refs = '[role="dialog"] [class*="st-key-ragkit-tray-refs"] [data-testid="stImage"] img'
    assert images_loaded(page, refs, 2) == 2
    ref_captions = page.locator('[role="dialog"] [class*="st-key-ragkit-tray-refs"] [data-testid="stImage"]')
    assert len(ref_captions.all_inner_texts()) == 2
    shot(page, "studio-provenance")
    return picked
