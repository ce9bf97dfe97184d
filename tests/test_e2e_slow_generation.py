"""A slow image API freezes nothing: not the other users' pages, not the user's own other pages.

`streamlit run app.py` against the local Gemini-format server (devtools/fake_gemini.py) answering
after SLOW_S seconds, driven in headless Chromium with two browser contexts (two users):

- user A generates, then goes to the Library while the request is out: the page comes at once
  and its sidebar says the images are on their way; back in the Studio they arrive, sent once;
- user B, meanwhile, opens the Library and searches, all before A's answer comes back;
- A generates again, saves the first image while the second is on its way, then clicks "Stop
  waiting": Generate is back at once.
"""
from __future__ import annotations

import time

import pytest

from tests.conftest import free_port, run_cli
from tests.e2e_support import (REPO, chromium_browser, new_session_page, product_set, require_browser,
                               streamlit_server, wait_for_app_idle)
from devtools.fake_gemini import FakeGemini, image_reply, make_png, slow_reply

pytestmark = pytest.mark.browser

KEY = "sk-slow-5e4d3c2b1a0f9e8d7c6b"
BRIEF = "The teal mug on a wooden table, morning light"
SLOW_S = 15.0          # how long the fake model takes to answer
PAGE_BOUND_S = 8.0     # a page that is not waiting on the model comes within this, on 2 shared cores
ARTIFACTS = REPO / "test-artifacts" / "e2e"


def test_a_slow_model_freezes_neither_other_users_nor_other_pages(ragkit_env, tmp_path):
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    folder = tmp_path / "products"
    folder.mkdir()
    for name, data in product_set(8):
        (folder / name).write_bytes(data)
    ingest = run_cli(["ingest", str(folder), "--json"], ragkit_env, tmp_path)
    assert ingest.returncode == 0, ingest.stderr

    log_path = tmp_path / "streamlit.log"
    errors: list[str] = []
    with FakeGemini() as fake:
        fake.always(slow_reply(SLOW_S, image_reply("Here it is.", make_png("mug", "1:1"))))
        env = {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake.url}
        with streamlit_server(env, free_port(), log_path) as url, chromium_browser() as browser:
            pages = [new_session_page(browser, errors, viewport=(1440, 1600)) for _ in range(2)]
            user_a, user_b = pages
            try:
                journeys(user_a, user_b, url, fake)
            except BaseException:
                for name, page in zip("ab", pages):
                    page.screenshot(path=str(ARTIFACTS / f"slow-generation-failure-{name}.png"))
                raise
            for page in pages:
                assert page.locator('[data-testid="stException"]').count() == 0
                assert KEY not in page.content()
            assert not errors, errors
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert KEY not in log


def journeys(user_a, user_b, url: str, fake: FakeGemini) -> None:
    sidebar_a = user_a.locator('[data-testid="stSidebar"]')

    # A opens the Studio (while B opens the Library: both sessions start together).
    user_a.goto(f"{url}/studio")
    user_b.goto(url)
    user_a.get_by_role("heading", name="Studio", exact=True).wait_for(timeout=90_000)
    wait_for_app_idle(user_a, 60)
    user_a.get_by_label("What should the new image show?").fill(BRIEF)
    wait_for_app_idle(user_a)
    user_a.get_by_role("button", name="Generate 1 image").click()
    user_a.get_by_text("Generating 1 image with Nano Banana").wait_for()
    sent = time.monotonic()
    assert user_a.get_by_role("button", name="Generate 1 image").is_disabled()  # no double spend

    # A goes to the Library while the model works: the page comes at once, the sidebar says why.
    user_a.get_by_role("link", name="Library").click()
    user_a.get_by_text("8 images, newest first").wait_for(timeout=PAGE_BOUND_S * 1000)
    sidebar_a.get_by_text("Generating 1 image with Nano Banana").wait_for(timeout=PAGE_BOUND_S * 1000)
    a_library_s = time.monotonic() - sent
    assert a_library_s < PAGE_BOUND_S, a_library_s
    user_a.screenshot(path=str(ARTIFACTS / "slow-generation-library.png"))

    # B browses and searches meanwhile; all of it before A's answer has come back.
    user_b.get_by_text("8 images, newest first").wait_for(timeout=60_000)
    wait_for_app_idle(user_b, 30)
    before_search = time.monotonic()
    user_b.get_by_role("link", name="Search").click()
    query = user_b.get_by_label("Describe what you are looking for")
    query.wait_for(timeout=PAGE_BOUND_S * 1000)
    query.fill("a teal mug")
    query.press("Enter")
    user_b.get_by_text("results for “a teal mug”").wait_for(timeout=PAGE_BOUND_S * 1000)
    b_search_s = time.monotonic() - before_search
    assert b_search_s < PAGE_BOUND_S, b_search_s
    assert time.monotonic() - sent < SLOW_S, "B's pages came only after A's answer: they waited on it"
    print(f"\nwhile the model took {SLOW_S:.0f} s: A's Library came {a_library_s:.1f} s after Generate; "
          f"B's search page + query took {b_search_s:.1f} s")
    assert fake.requests and len(fake.requests) == 1

    # Back in the Studio, A finds the generation still running, then its image; sent exactly once.
    sidebar_a.get_by_role("link", name="Go to the Studio").click()
    user_a.get_by_role("heading", name="Studio", exact=True).wait_for(timeout=PAGE_BOUND_S * 1000)
    user_a.get_by_role("button", name="Stop waiting").wait_for()
    user_a.screenshot(path=str(ARTIFACTS / "slow-generation-studio.png"))
    user_a.get_by_role("button", name="Save to library").wait_for(timeout=(SLOW_S + 30) * 1000)
    wait_for_app_idle(user_a)
    assert time.monotonic() - sent >= SLOW_S - 1  # it really was the slow answer
    assert user_a.get_by_label("What should the new image show?").input_value() == BRIEF
    assert len(fake.requests) == 1
    assert user_a.get_by_role("button", name="Generate 1 image").is_enabled()

    # A second try. While it runs the page is usable: saving the first result works at once.
    user_a.get_by_role("button", name="Generate 1 image").click()
    user_a.get_by_text("Generating 1 image with Nano Banana").wait_for()
    clicked = time.monotonic()
    user_a.get_by_role("button", name="Save to library").click()
    user_a.get_by_role("button", name="In the library", exact=True).wait_for(timeout=PAGE_BOUND_S * 1000)
    user_a.get_by_text("Generating 1 image with Nano Banana").wait_for()  # still waiting for the second
    assert time.monotonic() - clicked < PAGE_BOUND_S
    # "Stop waiting" gives Generate back at once; the first result stays.
    clicked = time.monotonic()
    user_a.get_by_role("button", name="Stop waiting").click()
    user_a.get_by_text("Stopped waiting").wait_for(timeout=PAGE_BOUND_S * 1000)
    user_a.get_by_role("button", name="Generate 1 image").wait_for()
    wait_for_app_idle(user_a)
    assert user_a.get_by_role("button", name="Generate 1 image").is_enabled()
    assert time.monotonic() - clicked < PAGE_BOUND_S
    assert user_a.get_by_role("button", name="In the library", exact=True).count() == 1
    assert len(fake.requests) == 2
