"""Edit a result in a real browser, then reload: `streamlit run app.py` against the local Gemini server
(devtools/fake_gemini.py, signing the 3.x image model's answers like the API), driven by Playwright.

Generate an image, click Edit, ask for two changes (the second turn must carry the first turn's
thought signatures back, or the server refuses it), compare before/after, save a version and see
its lineage in the Library; then reload the page (F5) and get the brief back from the server.
Screenshots: test-artifacts/e2e/studio-edit*.png (RAGKIT_UPDATE_SCREENSHOTS=1 copies them to docs/).
"""
from __future__ import annotations

import io
import time

import pytest
from PIL import Image, ImageEnhance, ImageOps

from ragkit.config import Settings
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from tests.conftest import free_port
from tests.e2e_support import chromium_page, product_jpeg, product_picture, require_browser, streamlit_server, wait_for_app_idle
from tests.e2e_support import ARTIFACTS, images_loaded, shot
from devtools.fake_gemini import FakeGemini, image_reply, signs_thoughts

pytestmark = pytest.mark.browser

KEY = "sk-e2e-edit-4c5d6e7f8a9b"
NB2 = "gemini-3.1-flash-image"
BRIEF = "The sneaker on a pastel podium, soft studio light"


def drawn(request) -> bytes:
    """The fake model's picture: the reference as it is for a generation, the last picture recoloured
    for an edit (blue for "blue", warmer otherwise), so before and after differ visibly."""
    if not request.images:  # a generation from the brief alone: the product on its backdrop
        picture = product_picture("sneaker", "red", size=(640, 480))
    else:
        picture = Image.open(io.BytesIO(request.images[-1][1])).convert("RGB")
    if request.images:  # an edit (the generation had no reference)
        if "blue" in request.texts[-1]:
            grey = ImageOps.grayscale(picture)
            picture = ImageOps.colorize(grey, black=(10, 30, 90), white=(200, 225, 255))
        else:
            picture = ImageEnhance.Contrast(ImageEnhance.Color(picture).enhance(1.8)).enhance(1.3)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def test_edit_a_result_save_a_version_and_get_the_brief_back_after_a_reload(ragkit_env, tmp_path, tiny_embedder):
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    env0 = {**ragkit_env, "RAGKIT_GEMINI_MODEL": NB2}
    library = Library.open(Settings.load(env=env0, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    library.ingest_uploads([Upload("red-sneaker.jpg", product_jpeg("sneaker", "red", size=(640, 480)))])
    library.close()
    with FakeGemini() as fake:
        fake.always(lambda request: image_reply("Done: here is the picture.", drawn(request)))
        env = {**env0, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake.url}
        with streamlit_server(env, free_port(), tmp_path / "streamlit.log") as url, chromium_page() as page:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            try:
                walk(page, url)
            except BaseException:
                page.screenshot(path=str(ARTIFACTS / "studio-edit-failure.png"))
                raise
            assert page.locator('[data-testid="stException"]').count() == 0 and not errors
            assert KEY not in page.content()
        edits = [r for r in fake.requests if r.images]
        assert signs_thoughts(NB2) and [len(r.turns) for r in edits] == [1, 3]
        assert sum("thoughtSignature" in p for role, parts in edits[-1].turns if role == "model" for p in parts) == 2
    assert time.monotonic() - started < 240


def walk(page, url: str) -> None:
    # The Studio: the product as the reference, a brief, Generate.
    page.goto(f"{url}/studio")
    page.get_by_role("heading", name="Studio").wait_for(timeout=90_000)
    wait_for_app_idle(page, 60)
    page.get_by_label("What should the new image show?").fill(BRIEF)
    wait_for_app_idle(page)
    page.get_by_role("button", name="Generate 1 image").click()
    page.get_by_role("button", name="Save to library").wait_for(timeout=60_000)
    wait_for_app_idle(page)

    # Edit the unsaved result: two instructions, one after the other.
    page.get_by_role("button", name="Edit", exact=True).click()
    panel = page.locator('[class*="st-key-studio-edit"]').first
    panel.get_by_text("A conversation with").wait_for()
    for number, instruction in enumerate(("make the background blue", "more contrast, richer colour"), start=1):
        field = page.get_by_label("What should change?")
        field.fill(instruction)
        page.get_by_role("button", name="Send").click()
        page.get_by_role("button", name=f"v{number}", exact=True).wait_for(timeout=60_000)
        wait_for_app_idle(page)
    assert page.locator('[data-testid="stChatMessage"]').count() == 4
    assert page.get_by_text("missing a thought_signature").count() == 0
    images_loaded(page, '[class*="st-key-studio-edit-versions"] [data-testid="stImage"] img', 3)
    page.get_by_role("button", name="v1", exact=True).click()  # compare v1 with the original
    wait_for_app_idle(page)
    page.get_by_text("Before (the original)").wait_for()
    before = page.locator('[data-testid="stImage"] img[alt="Before"]').first.get_attribute("src")
    after = page.locator('[data-testid="stImage"] img[alt="After"]').first.get_attribute("src")
    assert before and after and before != after
    shot(page, "studio-edit", height=1400, top=panel)

    page.get_by_role("button", name="Save this version").click()
    page.get_by_role("button", name="In the library", exact=True).first.wait_for(timeout=60_000)
    wait_for_app_idle(page)
    page.locator('[class*="st-key-studio-edit-save"]').get_by_role("button", name="In the library").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("How it was made").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    assert dialog.get_by_text("by “make the background blue”").first.is_visible()
    assert dialog.get_by_text("edited from a Studio result of").first.is_visible()

    # F5: a new session, the same browser. The brief comes back from the server.
    page.goto(f"{url}/studio")
    page.get_by_text("Your earlier work is kept").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    assert page.get_by_label("What should the new image show?").input_value() == ""
    page.get_by_role("button", name="Restore").click()
    wait_for_app_idle(page)
    assert page.get_by_label("What should the new image show?").input_value() == BRIEF
    page.get_by_role("button", name="Save to library").first.wait_for()  # the unsaved result is back
