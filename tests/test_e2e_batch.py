"""A batch promo job in a real browser: start it on the Studio's Batch tab, watch it, leave for the
Library and come back, review and approve.

`streamlit run app.py` against the local Gemini-format server (devtools/fake_gemini.py, in this process,
answering each request after a short delay with the product it was sent, on a pastel podium), driven by
Playwright in headless Chromium. Screenshots: test-artifacts/e2e/batch-*.png; with
RAGKIT_UPDATE_SCREENSHOTS=1 also docs/screenshots/batch-progress.png and batch-review.png.
"""
from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image, ImageDraw, ImageFilter

from ragkit.config import Settings
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from ragkit.studio import kits
from tests.conftest import free_port
from tests.e2e_support import (ARTIFACTS, chromium_page, images_loaded, product_jpeg, product_set, require_browser,
                               shot, streamlit_server, wait_for_app_idle)
from devtools.fake_gemini import FakeGemini, image_reply, slow_reply, usage_metadata

pytestmark = pytest.mark.browser

KEY = "sk-e2e-batch-8a7b6c5d4e3f"
BRIEF = "The product on a pastel podium, soft studio light, spring flowers"
PRODUCTS = 4
VARIATIONS = 2
ANSWER_S = 0.5   # the fake model's time per image (one request at a time)
HELD_AFTER = 3   # the later answers wait until the test has seen the batch go on from the Library page
BUDGET_S = 150  # about 50 s on a quiet machine; 95 s at a load average of 11 on the 2 cores


def podium_png(product: bytes, variation_seed: int, size=(640, 800)) -> bytes:
    """What the fake model 'draws': the product it was sent, cut out on a pastel podium (4:5)."""
    w, h = size
    hues = [(247, 214, 224), (214, 232, 247), (222, 247, 214), (247, 238, 208)]
    top = hues[variation_seed % len(hues)]
    scene = Image.new("RGB", size, top)
    draw = ImageDraw.Draw(scene)
    for y in range(h):
        t = y / h
        draw.line((0, y, w, y), fill=tuple(int(c * (1 - 0.12 * t)) for c in top))
    draw.ellipse((w * .12, h * .68, w * .88, h * .84), fill=(250, 250, 252))
    draw.rectangle((w * .12, h * .6, w * .88, h * .76), fill=(244, 244, 248))
    draw.ellipse((w * .12, h * .52, w * .88, h * .68), fill=(255, 255, 255))
    for i in range(5):  # a few "flowers"
        x, y = w * (.08 + .2 * i), h * (.86 + .03 * (i % 2))
        draw.ellipse((x - 16, y - 16, x + 16, y + 16), fill=(255, 180 - 20 * i, 120 + 20 * i))
    picture = Image.open(io.BytesIO(product)).convert("RGB")
    picture.thumbnail((int(w * .62), int(h * .5)))
    mask = Image.new("L", picture.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((6, 6, picture.width - 6, picture.height - 6), 28, fill=255)
    scene.paste(picture, ((w - picture.width) // 2, int(h * .6) - picture.height), mask.filter(ImageFilter.GaussianBlur(4)))
    buffer = io.BytesIO()
    scene.save(buffer, "PNG")
    return buffer.getvalue()


def test_start_watch_leave_come_back_review_and_approve(ragkit_env, tmp_path, tiny_embedder):
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    settings = Settings.load(env=ragkit_env, cwd=tmp_path, secrets_files=[])
    library = Library.open(settings, embedder=tiny_embedder)  # closed before the app opens it
    try:
        library.ingest_uploads([Upload(name, data) for name, data in product_set(PRODUCTS)], tags=["spring"])
        logo_id = library.ingest_uploads([Upload("logo.jpg", product_jpeg("cap", "black", seed=99))]).added[0][1].sha256
    finally:
        library.close()
    kits.kit_store(settings).save(kits.make_kit("Acme spring", style="pastel colours, soft daylight",
                                                reference_ids=[logo_id], avoid=["text"], aspect="4:5"))
    drawn = iter(range(10_000))
    held = threading.Event()

    def answer(request):
        turn = next(drawn)
        if turn >= HELD_AFTER:
            held.wait(60)  # (in the fake server's thread for this request: the app just sees a slow model)
        return slow_reply(ANSWER_S, image_reply("Here it is.", podium_png(request.images[0][1], turn),
                                                usage=usage_metadata(prompt=30, reference_images=2)))

    log_path = tmp_path / "streamlit.log"
    page_errors: list[str] = []
    with FakeGemini() as fake:
        fake.always(answer)
        env = {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake.url}
        with streamlit_server(env, free_port(), log_path) as url, chromium_page(viewport=(1440, 1000)) as page:
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            try:
                journey(page, url, release=held.set)
            except BaseException:
                page.screenshot(path=str(ARTIFACTS / "batch-failure.png"))
                raise
            assert page.locator('[data-testid="stException"]').count() == 0
            assert KEY not in page.content()
            assert not page_errors, page_errors
        assert len(fake.requests) == PRODUCTS * VARIATIONS  # each request once, none twice
        originals = {data for _, data in product_set(PRODUCTS)}
        for request in fake.requests:
            assert request.images[0][1] in originals  # the product first ...
            assert len(request.images) == 2 and "Brand style: pastel colours" in request.brief  # ... the kit after
            assert request.aspect_ratio == "4:5"
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert time.monotonic() - started < BUDGET_S


def journey(page, url: str, release) -> None:
    sidebar = page.locator('[data-testid="stSidebar"]')
    total = PRODUCTS * VARIATIONS
    page.goto(url)
    wait_for_app_idle(page, 90)
    page.get_by_role("link", name="Studio").click()
    page.get_by_role("heading", name="Studio").wait_for()
    wait_for_app_idle(page)
    page.get_by_role("tab", name="Batch").click()
    wait_for_app_idle(page)

    # A new batch: the brief, the products by tag, the brand kit.
    page.get_by_label("Brief for every product").fill(BRIEF)
    page.get_by_label("Brief for every product").press("Control+Enter")
    wait_for_app_idle(page)
    choose(page, "Tag", f"spring ({PRODUCTS})")
    choose(page, "Brand kit", "Acme spring")
    page.get_by_text(f"= {total} requests").wait_for()  # two variations each: the default
    at_a_time = page.get_by_label("Requests at a time", exact=True)
    at_a_time.fill("1")  # slow enough to watch, and to leave for the Library while it runs
    at_a_time.press("Enter")
    wait_for_app_idle(page)
    page.get_by_role("button", name="Start the batch").click()

    # Progress: overall, per product, while the first images land.
    progress = page.locator('[data-testid="stProgress"]')
    progress.first.wait_for(timeout=30_000)
    page.get_by_text(f"of {total} images").first.wait_for()
    page.get_by_text("Queued").first.wait_for()  # requests waiting their turn
    page.get_by_text(f"{HELD_AFTER} of {total} images").first.wait_for(timeout=60_000)
    shot(page, "batch-progress", height=1750, top=page.get_by_role("tab", name="Batch"))

    # The Library while it runs: instant, and the sidebar counts on.
    page.get_by_role("link", name="Library").click()
    page.get_by_text("images, newest first").wait_for(timeout=30_000)
    sidebar.get_by_text("goes on while you browse").wait_for(timeout=10_000)
    release()  # (no wait for an idle app here: the sidebar's note redraws itself every second)
    sidebar.get_by_role("link", name="Watch it in the Studio").click()
    page.get_by_role("heading", name="Studio").wait_for()
    page.get_by_text(f"{total} of {total} images").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    assert page.get_by_role("tab", name="Batch", selected=True).is_visible()

    # Review: a dense grid of product tiles; approve one, reject one and undo it, reject another, then
    # approve all the others. Each click redraws its tile only (a fragment), so the bar has no counts.
    results = '[class*="st-key-batch-grid"] [data-testid="stImage"] img'
    assert images_loaded(page, results, total) == total
    page.get_by_role("button", name="Approve", exact=True).first.click()
    page.get_by_text("In the library").first.wait_for(timeout=30_000)
    wait_for_app_idle(page)
    page.get_by_role("button", name="Reject", exact=True).nth(2).click()
    page.get_by_role("button", name="Undo").wait_for(timeout=30_000)
    page.get_by_role("button", name="Undo").click()
    page.get_by_role("button", name="Undo").wait_for(state="detached", timeout=30_000)
    assert images_loaded(page, results, total) == total
    page.get_by_role("button", name="Reject", exact=True).nth(2).click()
    page.get_by_role("button", name="Undo").wait_for(timeout=30_000)
    wait_for_app_idle(page)
    assert images_loaded(page, results, total - 1) == total - 1
    tiles = page.locator('[class*="st-key-batch-tiles"]').bounding_box()
    print(f"batch review: {PRODUCTS} products x {total // PRODUCTS}: tiles {tiles['height']:.0f} px high "
          f"at {tiles['width']:.0f} px wide")
    page.locator('[data-testid="stToast"]').first.wait_for(state="detached", timeout=15_000)  # not in the picture
    shot(page, "batch-review", height=1500, top=page.locator('[class*="st-key-batch-job-card"]'))
    page.get_by_role("button", name="Approve all the rest").click()
    kept = total - 1
    sidebar.get_by_text(str(PRODUCTS + 1 + kept), exact=True).wait_for(timeout=60_000)  # the library holds them now
    wait_for_app_idle(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the approved as zip").click()
    assert download.value.suggested_filename.startswith("batch-") and download.value.path().stat().st_size > 0


def choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).click()
    wait_for_app_idle(page)
