"""User text never acts on the page: Markdown in Chromium, with hostile names, tags, briefs and models.

1. Each kind of Streamlit element the app puts user text into (markdown, captions, alerts, help
   tooltips, image captions, progress texts, toasts, labels, badges), in a small app of its own:
   through ragkit.ui.markdown.md_escape nothing in the text becomes a link, an image, a formula,
   an icon or coloured text, and the page asks nothing of anyone; raw, the same texts do all of
   that (so the checks can see it).
2. The real app on a library seeded with hostile file names, tags, a generated image with a
   hostile brief and model, and an imported export whose metadata.json carries the same: the
   Library (grid, Details, delete), Search (results, references) and the Studio (tray, History,
   its tooltip) show all of it literally.

The hostile URLs point at a local HTTP server that records every request: it must get none.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from ragkit.ui.markdown import WORD_JOINER
from tests.conftest import free_port, wait_for_port
from tests.e2e_support import (REPO, chromium_browser, clean_env, hostile_texts, killable_streamlit_server,
                               new_session_page, product_jpeg, require_browser, stop_process_group,
                               wait_for_app_idle)

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "test-artifacts" / "e2e"
# Links the app itself draws: Streamlit's "Skip to main content", the Studio's how-to (without a key).
OWN_LINKS = {"#stMain", "https://aistudio.google.com/apikey"}


# --- a server that must never be asked for anything --------------------------------------------
@contextlib.contextmanager
def trap_server():
    """Yields (base URL, list of paths requested from it)."""
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            requested.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


# --- what the page shows, and what of it came from user text ----------------------------------
PAGE_FACTS = """() => {
  const within = (a, selector) => !!a.closest(selector);
  return {
    links: [...document.querySelectorAll('a')].map(a => ({
      href: a.getAttribute('href') || '', text: a.innerText,
      anchor: within(a, '[data-testid="stHeaderActionElements"]'),
      navigation: within(a, '[data-testid="stSidebarNav"], [data-testid="stPageLink"]')})),
    // the viewer's own picture (ragkit/ui/viewer.py draws the original's bytes itself) is not user text
    images: [...document.querySelectorAll('img')].filter(i => !i.closest('.ragkit-viewer-frame'))
             .map(i => i.getAttribute('src') || ''),
    formulas: document.querySelectorAll('.katex, math').length,
    icons: [...document.querySelectorAll('[data-testid="stMarkdownContainer"] span[role="img"]')]
             .map(s => s.innerText),
    styled: [...document.querySelectorAll(
      '.stMarkdownColoredText, .stMarkdownColoredBackground, .stMarkdownBadge, ' +
      '[data-testid="stMarkdownContainer"] :is(strong, em, del, code, h1, h2, h3, h4, li, blockquote, table)')]
             .map(e => e.innerText),
    text: document.body.innerText,
  };
}"""


def page_facts(page) -> dict:
    facts = page.evaluate(PAGE_FACTS)
    facts["text"] = facts["text"].replace(WORD_JOINER, "")
    return facts


def what_user_text_did(facts: dict, app_url: str) -> list[str]:
    """Everything on the page that user text made: links, images, formulas, icons, styled text."""
    markers = ("HOSTILE", "bold", "heading", "item")  # what the hostile texts would colour, bold or list
    found = []
    for link in facts["links"]:
        if link["anchor"] and link["href"].startswith("#"):
            continue  # a heading's own anchor (Streamlit's), not a link in the text
        if link["navigation"] or link["href"] in OWN_LINKS:
            continue  # the app's own page links, and its own how-to link
        found.append(f"link {link['href']!r} ({link['text'][:40]!r})")
    found += [f"image {src[:80]!r}" for src in facts["images"] if not src.startswith(f"{app_url}/media/")]
    if facts["formulas"]:
        found.append(f"{facts['formulas']} formula(s)")
    found += [f"icon {name!r}" for name in facts["icons"] if name in ("bug_report", "home")]
    found += [f"styled {text!r}" for text in facts["styled"] if text.strip() in markers]
    return found


# Streamlit fetches the current page's icon (st.Page icon=":material/…:") as the tab's favicon
# from Google's icon font service. The app's own constants, not user text (and offline it just fails).
OWN_FAVICONS = {f"https://fonts.gstatic.com/s/i/short-term/release/materialsymbolsrounded/{name}/default/24px.svg"
                for name in ("photo_library", "image_search", "auto_awesome")}


def requests_elsewhere(requests: list[str], app_url: str) -> list[str]:
    return [url for url in requests
            if not url.startswith((app_url, "data:")) and url not in OWN_FAVICONS]


# --- 1. every kind of element, with and without md_escape ---------------------------------------
SINK_APP = """
import sys
import streamlit as st
from ragkit.ui.markdown import md_escape
from tests.e2e_support import hostile_texts, product_jpeg

TEXTS = list(hostile_texts(sys.argv[1]).values())
escape = md_escape if st.query_params.get("escape") == "yes" else (lambda text: text)
shown = " · ".join(escape(text) for text in TEXTS)
st.markdown(shown)
st.caption(shown)
st.warning(shown)
st.error(shown)
with st.container(key="help-sink"):
    st.markdown("Help", help=shown)
st.image(product_jpeg("mug", "red", size=(64, 48)), caption=shown)
st.progress(0.5, text=shown)
st.toggle(escape(TEXTS[1]) + " " + escape(TEXTS[2]))
st.markdown(f":violet-badge[{escape(TEXTS[1])}] :small[{shown}]")
st.toast(escape(" ".join(TEXTS[:9])), duration="infinite")
"""


@contextlib.contextmanager
def script_server(script: Path, argument: str, log_path: Path):
    """`streamlit run SCRIPT -- ARGUMENT` on a free port; yields its URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--", argument],
            cwd=REPO, env=clean_env({}), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(port, timeout=60, process=server)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process_group(server)


def test_every_kind_of_element_shows_escaped_user_text_literally(tmp_path):
    require_browser()
    started = time.monotonic()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app = tmp_path / "sinks.py"
    app.write_text(SINK_APP)
    with trap_server() as (trap, trapped), chromium_browser() as browser, \
            script_server(app, trap, tmp_path / "streamlit.log") as app_url:
        outcome, trapped_raw = {}, []
        for escaped in ("no", "yes"):
            page = new_session_page(browser)
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{app_url}/?escape={escaped}")
            wait_for_app_idle(page, 60)
            page.locator('[data-testid="stToast"]').wait_for()
            page.locator('[class*="st-key-help-sink"] [data-testid="stTooltipIcon"]').hover()
            page.locator('[data-testid="stTooltipContent"]').wait_for()
            time.sleep(0.5)  # images in the text would be requested by now
            facts = page_facts(page)
            outcome[escaped] = (what_user_text_did(facts, app_url), requests_elsewhere(requests, app_url),
                                facts["text"])
            page.screenshot(path=str(ARTIFACTS / f"hostile-sinks-escape-{escaped}.png"), full_page=True)
            page.context.close()
            trapped_raw = trapped_raw or list(trapped)

    raw_did, raw_requests, _ = outcome["no"]
    print(f"\nraw: {len(raw_did)} things made from user text, e.g. {raw_did[:6]}; requests {raw_requests[:3]}")
    # Raw, the texts act (this is what the checks below would see if an element missed md_escape).
    assert any(item.startswith("link 'http://www.attacker-example.com") for item in raw_did), raw_did
    assert any(item.startswith("link 'mailto:") for item in raw_did), raw_did
    assert any(item.startswith(f"image '{trap}/image.png") for item in raw_did), raw_did
    assert any("formula" in item for item in raw_did) and "icon 'bug_report'" in raw_did, raw_did
    assert any(url.startswith(trap) for url in raw_requests), raw_requests

    did, requests, text = outcome["yes"]
    assert did == [], did
    assert requests == [], requests
    for source in hostile_texts(trap).values():  # every element shows each text as written
        assert " ".join(source.split()) in text
    assert trapped_raw and trapped == trapped_raw, trapped  # the escaped page asked the trap nothing
    print(f"test took {time.monotonic() - started:.1f} s")


# --- 2. the app on a hostile library -------------------------------------------------------------
def hostile_names(trap: str) -> dict[str, str]:
    """File names a browser upload can carry (no slashes: only the last part of a path is kept)."""
    return {
        "www": "www.attacker-example.com.png",
        "email": "admin@attacker-example.com.png",
        "link": "[x](javascript:alert(1)).png",
        "image": "![m](trap.png) :streamlit:.png",
        "markup": "$x^2$ :red[HOSTILE] **bold** :smile:.png",  # (:material/…: needs a slash)
    }


def long_brief(trap: str) -> str:
    brief = (f"![p]({trap}/brief.png) [l]({trap}/brief-link) $$x^2$$ www.attacker-example.com "
             f"admin@attacker-example.com :material/bug_report: :red[HOSTILE] {trap}/brief-autolink")
    return brief + " on a sunny beach" * 4  # over 120 characters: the History puts it in a tooltip


def crafted_export(path: Path, trap: str, picture: bytes) -> Path:
    """An export zip whose metadata.json was edited by someone hostile."""
    sha = hashlib.sha256(picture).hexdigest()
    entry = {"file": f"originals/{sha}.jpg", "sha256": sha, "filename": "admin@imported-example.com.jpg",
             "tags": ["www.attacker-example.com", "$x$"], "source": "generated",
             "prompt": f"$x$ [i]({trap}/imported-link) {trap}/imported-autolink " + "x" * 120,
             "model": f"![m]({trap}/model.png)", "reference_ids": [],
             "created_at": "2026-11-30T10:00:00+00:00"}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(entry["file"], picture)
        archive.writestr("metadata.json", json.dumps({"format": "ragkit-export", "version": 1,
                                                      "assets": [entry]}))
    return path


def seed_hostile_library(settings, embedder, trap: str, tmp_path: Path) -> dict[str, str]:
    """Hostile uploads, a generated image with a hostile brief and model, a crafted import.
    Returns the sha256 of the assets the test opens."""
    from ragkit.ingest.pipeline import Provenance, Upload
    from ragkit.library import Library
    from ragkit.ingest.portable import import_library
    library = Library.open(settings, embedder=embedder)
    try:
        names = hostile_names(trap)
        pictures = {key: product_jpeg(product, colour, seed=i) for i, (key, product, colour) in enumerate(
            [("www", "mug", "red"), ("email", "cap", "blue"), ("link", "lamp", "green"),
             ("image", "watch", "pink"), ("markup", "bottle", "teal")])}
        report = library.ingest_uploads([Upload(names[key], data) for key, data in pictures.items()],
                                        tags=["www.attacker-example.com", "[t](javascript:alert(1))", "$x$"])
        assert len(report.added) == len(names), report
        ids = {key: hashlib.sha256(data).hexdigest() for key, data in pictures.items()}
        generated = library.save_generated(
            product_jpeg("handbag", "yellow", seed=9), "image/jpeg",
            Provenance(long_brief(trap), f"![m]({trap}/model.png) [m]({trap}/model-link)",
                       (ids["www"], ids["markup"])),
            name="www.generated-example.com.jpg")
        ids["generated"] = generated.sha256
        imported = import_library(library, crafted_export(tmp_path / "crafted.zip", trap,
                                                          product_jpeg("sneaker", "white", seed=11)))
        assert len(imported.added) == 1, imported
        ids["imported"] = imported.added[0][1].sha256
        return ids
    finally:
        library.close()


def test_hostile_names_briefs_and_models_show_literally_in_every_page(settings, tiny_embedder, ragkit_env,
                                                                        tmp_path):
    require_browser()
    started = time.monotonic()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / "streamlit.log"
    with trap_server() as (trap, trapped):
        ids = seed_hostile_library(settings, tiny_embedder, trap, tmp_path)
        with killable_streamlit_server(ragkit_env, free_port(), log_path) as (app_url, _), \
                chromium_browser() as browser:
            page = new_session_page(browser)
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            checked: dict[str, list[str]] = {}

            def check(where: str) -> None:
                time.sleep(0.3)  # an image in the text would be requested by now
                checked[where] = what_user_text_did(page_facts(page), app_url)

            try:
                _visit_every_page(page, app_url, trap, ids, check)
            except BaseException:
                page.screenshot(path=str(ARTIFACTS / "hostile-failure.png"))
                raise
            finally:
                print("\n" + "\n".join(f"{where}: {found}" for where, found in checked.items()))
    assert "Traceback" not in log_path.read_text(errors="replace")
    assert {where: found for where, found in checked.items() if found} == {}
    assert requests_elsewhere(requests, app_url) == []
    assert trapped == []
    print(f"test took {time.monotonic() - started:.1f} s")


def _visit_every_page(page, app_url: str, trap: str, ids: dict[str, str], check) -> None:
    names = hostile_names(trap)
    # Library: the grid's captions, then Details of each kind of hostile asset.
    page.goto(app_url)
    page.get_by_text("7 images, newest first").wait_for(timeout=90_000)
    wait_for_app_idle(page, 60)
    check("library grid")
    assert names["www"] in page_facts(page)["text"]  # (28 characters: the grid's captions are cut after that)
    page.screenshot(path=str(ARTIFACTS / "hostile-library.png"))
    for key in ("generated", "imported", "www", "markup"):
        page.locator(f'[class*="st-key-library-open-{ids[key]}"] button').click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        wait_for_app_idle(page)
        check(f"details of {key}")
        shown = page_facts(page)["text"]
        if key in names:
            assert names[key].removesuffix(".png") in shown, shown[:500]
        if key == "generated":
            page.screenshot(path=str(ARTIFACTS / "hostile-details.png"))
            assert f"![m]({trap}/model.png) [m]({trap}/model-link)" in shown
            assert "www.attacker-ex…" in shown  # a reference's caption
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        wait_for_app_idle(page)
    # Delete one: the toast names it.
    page.locator(f'[class*="st-key-library-open-{ids["email"]}"] button').click()
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Yes, delete").click()
    page.locator('[data-testid="stToast"]').get_by_text("Moved to the trash").wait_for()
    check("toast after a delete")
    assert f"Moved to the trash: {names['email']}" in page_facts(page)["text"]
    wait_for_app_idle(page)
    page.get_by_text("Trash (1)", exact=True).click()  # its name in the Trash view, literally too
    page.get_by_text("1 image in the trash").wait_for()
    wait_for_app_idle(page)
    check("trash view")
    page.get_by_text("Library (", exact=False).first.click()
    wait_for_app_idle(page)

    # Search: the query and the hits' names; pick every hit as a reference.
    page.get_by_role("link", name="Search").click()
    query = page.get_by_label("Describe what you are looking for")
    query.wait_for()
    query.fill("www.attacker-example.com $x$ :material/bug_report:")
    query.press("Enter")
    page.get_by_text("results for").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    check("search results")
    switches = page.locator('[class*="st-key-ragkit-grid-search"] [data-testid="stCheckbox"]').filter(has_text="Reference")
    for index in range(switches.count()):
        switches.nth(index).get_by_text("Reference").click()
        wait_for_app_idle(page)
    check("search with references picked")

    # Studio: the tray's captions, the History's badges, briefs and the long brief's tooltip.
    page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Open Studio").click()
    page.get_by_role("heading", name="History").wait_for()
    wait_for_app_idle(page)
    history = page.locator('[class*="st-key-ragkit-grid-studio-history"]')
    history.locator('[data-testid="stImage"] img').first.wait_for()
    check("studio tray and history")
    page.screenshot(path=str(ARTIFACTS / "hostile-studio-tray.png"))
    history.scroll_into_view_if_needed()
    tooltips = []
    for icon in history.locator('[data-testid="stTooltipIcon"]').all():  # the briefs over 120 characters
        icon.hover()
        tooltip = page.locator('[data-testid="stTooltipContent"]').last
        tooltip.wait_for()
        check("history tooltip")
        tooltips.append(tooltip.inner_text().replace(WORD_JOINER, ""))
        if len(tooltips) == 1:
            page.screenshot(path=str(ARTIFACTS / "hostile-studio-history.png"))
        page.mouse.move(2, 2)
    assert any(long_brief(trap) in text for text in tooltips), tooltips
