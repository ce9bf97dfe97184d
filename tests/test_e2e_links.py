"""A search link in a real browser: what one Chromium session searched, another session opened from
the URL shows the same results. Also draws the composed search and the Duplicates view for the
docs (test-artifacts/e2e/; with RAGKIT_UPDATE_SCREENSHOTS=1 also docs/screenshots/)."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from ragkit.ingest.pipeline import Upload
from tests.conftest import free_port
from tests.e2e_support import (ARTIFACTS, chromium_browser, image_sizes, new_session_page, product_set,
                               require_browser, shot, streamlit_server, wait_for_app_idle)
from tests.images_factory import encode, picture

pytestmark = pytest.mark.browser
GRID_CAPTIONS = '[class*="st-key-ragkit-grid-search"] [data-testid="stCaptionContainer"]'
# With the tests' random-weight model only exact copies score this high (product shots reach 0.999).
DUPLICATE_THRESHOLD = "0.9995"


def _library_with_copies(library) -> dict[str, str]:
    """Eight product shots and three campaign pictures, each with a web-size copy: {name: sha256}."""
    uploads = [Upload(name, data) for name, data in product_set(8)]
    for i in range(3):
        image = picture(700 + i, (800, 600))
        uploads += [Upload(f"campaign-{i}.jpg", encode(image, "JPEG", quality=92)),
                    Upload(f"campaign-{i}-web.jpg", encode(image.resize((400, 300)), "JPEG", quality=70))]
    report = library.ingest_uploads(uploads)
    library.close()  # the app's process opens the file next
    return {name: asset.sha256 for name, asset in report.added}


def _results(page) -> list[str]:
    page.locator(GRID_CAPTIONS).first.wait_for(timeout=60_000)
    wait_for_app_idle(page)
    return [c.inner_text().strip() for c in page.locator(GRID_CAPTIONS).all()]


def test_a_search_link_opens_the_same_results_in_another_browser_session(ragkit_env, library, tmp_path):
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ids = _library_with_copies(library)
    started = time.monotonic()
    with streamlit_server(ragkit_env, free_port(), tmp_path / "streamlit.log") as url, chromium_browser() as browser:
        first = new_session_page(browser)
        first.goto(f"{url}/search")
        query = first.get_by_label("Describe what you are looking for")
        query.wait_for(timeout=90_000)
        query.fill("a red sneaker")
        query.press("Enter")
        shown_first = _results(first)
        first.wait_for_function("() => location.search.includes('q=')")
        link = first.url
        assert parse_qs(urlsplit(link).query) == {"q": ["a red sneaker"], "k": ["6"]}

        second = new_session_page(browser)  # another person, another session
        second.goto(link)
        assert _results(second) == shown_first and len(shown_first) == 6
        assert second.get_by_label("Describe what you are looking for").input_value() == "a red sneaker"

        # For the docs: "like this, but red" from a link, and the Duplicates view.
        second.goto(f"{url}/search?similar={ids['yellow-mug.jpg']}&with=red&weight=0.6&not=people&k=8")
        _results(second)
        image_sizes(second, '[class*="st-key-ragkit-grid-search"] [data-testid="stImage"] img', 8)
        shot(second, "composed-search", height=1250)
        second.goto(url)
        second.get_by_text("Duplicates", exact=True).wait_for(timeout=60_000)
        wait_for_app_idle(second)
        second.get_by_text("Duplicates", exact=True).click()
        threshold = second.get_by_label("Similarity at least", exact=True)
        threshold.wait_for()
        threshold.fill(DUPLICATE_THRESHOLD)
        threshold.press("Enter")
        wait_for_app_idle(second)
        second.get_by_role("button", name="Find duplicates").click()
        second.get_by_text("3 groups of near-duplicates").wait_for(timeout=60_000)
        wait_for_app_idle(second)
        image_sizes(second, '[class*="st-key-library-dup-group"] [data-testid="stImage"] img', 6)
        shot(second, "duplicates", height=1400)
        for page in (first, second):
            assert page.locator('[data-testid="stException"]').count() == 0
    assert time.monotonic() - started < 120
