"""Helpers for the app tests: product-like pictures, a `streamlit run` server, headless Chromium,
and the AppTest fixtures; helpers for the reliability tests (a killable server, several sessions).

    python -m tests.e2e_support pictures DIR    # 16 product pictures to try the app with
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# --- pictures a person can tell apart in a screenshot -------------------------------------------
COLOURS = {
    "red": (206, 52, 44), "blue": (44, 92, 186), "green": (46, 140, 87), "yellow": (235, 186, 38),
    "black": (40, 40, 44), "white": (236, 234, 228), "pink": (226, 120, 160), "teal": (32, 146, 150),
}
BACKDROPS = [(246, 241, 232), (229, 236, 242), (240, 232, 236), (232, 240, 230), (244, 238, 222)]


def _shade(colour, factor):
    return tuple(max(0, min(255, int(c * factor))) for c in colour)


def _backdrop(size, seed):
    w, h = size
    top = np.array(BACKDROPS[seed % len(BACKDROPS)], dtype=np.float32)
    bottom = top * 0.86
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = top * (1 - ramp) + bottom * ramp
    return Image.fromarray(np.broadcast_to(arr, (h, w, 3)).astype(np.uint8))


def _shadow(canvas, box, blur=12):
    layer = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(layer).ellipse(box, fill=110)
    layer = layer.filter(ImageFilter.GaussianBlur(blur))
    canvas.paste(Image.new("RGB", canvas.size, (60, 55, 50)), (0, 0), layer)


def _sneaker(d, c, w, h):
    d.rounded_rectangle((w * .18, h * .62, w * .84, h * .72), 14, fill=(245, 245, 240))  # sole
    d.polygon([(w * .2, h * .63), (w * .24, h * .38), (w * .42, h * .34), (w * .56, h * .48),
               (w * .8, h * .52), (w * .84, h * .63)], fill=c)
    d.polygon([(w * .24, h * .38), (w * .42, h * .34), (w * .44, h * .42), (w * .27, h * .46)], fill=_shade(c, .75))
    for i in range(4):
        x = w * (.43 + .04 * i)
        d.line((x, h * (.44 + .015 * i), x + w * .04, h * (.47 + .015 * i)), fill=(250, 250, 250), width=4)


def _mug(d, c, w, h):
    d.ellipse((w * .6, h * .38, w * .78, h * .62), outline=c, width=int(w * .035))
    d.rounded_rectangle((w * .28, h * .3, w * .66, h * .72), 18, fill=c)
    d.ellipse((w * .28, h * .26, w * .66, h * .34), fill=_shade(c, .6))
    d.rectangle((w * .32, h * .34, w * .38, h * .68), fill=_shade(c, 1.2))


def _watch(d, c, w, h):
    d.rounded_rectangle((w * .43, h * .08, w * .57, h * .92), 10, fill=_shade(c, .8))
    d.ellipse((w * .31, h * .3, w * .69, h * .7), fill=(200, 170, 90))
    d.ellipse((w * .34, h * .34, w * .66, h * .66), fill=(250, 248, 240))
    d.line((w * .5, h * .5, w * .5, h * .38), fill=(30, 30, 30), width=4)
    d.line((w * .5, h * .5, w * .6, h * .52), fill=(30, 30, 30), width=3)


def _bottle(d, c, w, h):
    d.rounded_rectangle((w * .4, h * .3, w * .6, h * .82), 20, fill=c)
    d.rectangle((w * .46, h * .16, w * .54, h * .32), fill=_shade(c, .8))
    d.rectangle((w * .45, h * .12, w * .55, h * .18), fill=(60, 60, 60))
    d.rectangle((w * .4, h * .48, w * .6, h * .62), fill=(248, 246, 238))


def _handbag(d, c, w, h):
    d.arc((w * .36, h * .2, w * .64, h * .55), 180, 360, fill=_shade(c, .7), width=int(w * .025))
    d.rounded_rectangle((w * .24, h * .38, w * .76, h * .76), 22, fill=c)
    d.rectangle((w * .46, h * .44, w * .54, h * .5), fill=(210, 180, 100))


def _sunglasses(d, c, w, h):
    d.line((w * .2, h * .45, w * .8, h * .45), fill=(30, 30, 30), width=6)
    for x in (.22, .54):
        d.ellipse((w * x, h * .38, w * (x + .24), h * .62), fill=_shade(c, .5), outline=(30, 30, 30), width=5)


def _cap(d, c, w, h):
    d.chord((w * .26, h * .3, w * .7, h * .74), 180, 360, fill=c)
    d.rectangle((w * .26, h * .51, w * .7, h * .55), fill=_shade(c, .7))
    d.polygon([(w * .62, h * .52), (w * .86, h * .56), (w * .84, h * .6), (w * .6, h * .56)], fill=_shade(c, .8))
    d.ellipse((w * .46, h * .28, w * .5, h * .32), fill=_shade(c, .6))


def _lamp(d, c, w, h):
    d.polygon([(w * .36, h * .2), (w * .64, h * .2), (w * .72, h * .44), (w * .28, h * .44)], fill=c)
    d.rectangle((w * .485, h * .44, w * .515, h * .78), fill=(90, 90, 90))
    d.ellipse((w * .36, h * .76, w * .64, h * .84), fill=(70, 70, 70))


PRODUCTS = {"sneaker": _sneaker, "mug": _mug, "watch": _watch, "bottle": _bottle, "handbag": _handbag,
            "sunglasses": _sunglasses, "cap": _cap, "lamp": _lamp}


def product_picture(product: str, colour: str, seed: int = 0, size=(640, 480)) -> Image.Image:
    canvas = _backdrop(size, seed)
    w, h = size
    _shadow(canvas, (w * .22, h * .76, w * .82, h * .88))
    PRODUCTS[product](ImageDraw.Draw(canvas), COLOURS[colour], w, h)
    return canvas


def product_jpeg(product: str, colour: str, seed: int = 0, size=(640, 480)) -> bytes:
    buffer = io.BytesIO()
    product_picture(product, colour, seed, size).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def product_set(count: int = 12) -> list[tuple[str, bytes]]:
    """(filename, JPEG bytes) of distinct product shots: 'red-sneaker.jpg', 'blue-mug.jpg', ..."""
    names = list(PRODUCTS)
    colours = list(COLOURS)
    out = []
    for i in range(count):
        product = names[i % len(names)]
        colour = colours[(i * 3 + i // len(names)) % len(colours)]
        out.append((f"{colour}-{product}.jpg", product_jpeg(product, colour, seed=i)))
    return out


# --- text a user controls that Streamlit's Markdown would act on --------------------------------
def hostile_texts(trap: str) -> dict[str, str]:
    """What a file name, a tag, a brief or an imported model name can hold to become a link, an
    image (a request to `trap`), a formula, an icon or styled text wherever Streamlit renders
    Markdown. `trap` is the base URL ("http://127.0.0.1:PORT") of a server that must never be asked."""
    return {
        "link": "[x](javascript:alert(1))",
        "image": f"![m]({trap}/image.png)",
        "www autolink": "www.attacker-example.com.png",
        "email autolink": "admin@attacker-example.com.png",
        "url autolink": f"{trap}/autolink",
        "angle autolink": f"<{trap}/angle>",
        "html": f"<img src={trap}/html.png>",
        "reference link": f"[a][r] [r]: {trap}/reference",
        "latex": "$x^2$ and $$\\frac{a}{b}$$",
        "icons": ":material/bug_report: :streamlit: :smile:",
        "directives": ":red[HOSTILE] :blue-background[x] :small[y] :help[tip]",
        "emphasis": "**bold** _it_ `code` ~~strike~~",
        "typography": "a -> b -- c >= d",
        "blocks": "# heading\n- item\n> quote\n    code\n| t |",
        "entities": "&lt;b&gt; &amp;",
    }


# --- AppTest: the real app.py, in this process, on a library in a temp dir ------------------------
import pytest  # noqa: E402

APP = REPO / "app.py"
RUN_TIMEOUT = 90.0  # seconds per script run: 2 shared cores, and the first run opens Milvus


@pytest.fixture
def app_env(monkeypatch, tmp_path, ragkit_env) -> dict[str, str]:
    """The app's settings point at a fresh library in tmp_path (and nothing from the outside)."""
    for name in list(os.environ):
        if name.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_")):
            monkeypatch.delenv(name)
    for name, value in ragkit_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml of the repo or a developer
    return ragkit_env


def open_buttons(at):
    return [b for b in at.button if b.key and b.key.startswith("library.open.")]


@pytest.fixture
def streamlit_warnings(monkeypatch):
    """Everything Streamlit's widget-policy checks log (e.g. "created with a default value but also had
    its value set via the Session State API"). Streamlit logs that one once per process, so re-arm it."""
    from streamlit.elements.lib import policies
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    policies._LOGGER.addHandler(handler)  # noqa: SLF001 - streamlit's loggers don't propagate
    try:
        yield records
    finally:
        policies._LOGGER.removeHandler(handler)  # noqa: SLF001


def no_streamlit_warnings(at, records) -> None:
    logged = [r.getMessage() for r in records]
    assert not logged, logged
    assert not any("Session State API" in w for w in texts(at.warning)), texts(at.warning)


@pytest.fixture
def with_key(app_env, fake_gemini, monkeypatch):
    """The app gets a Gemini key (tests.conftest.GEMINI_TEST_KEY) and talks to the local fake Gemini server."""
    from tests.conftest import GEMINI_TEST_KEY
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_TEST_KEY)
    monkeypatch.setenv("RAGKIT_GEMINI_BASE_URL", fake_gemini.url)
    return fake_gemini


@pytest.fixture
def seed(settings, tiny_embedder, app_env):
    """seed(uploads) -> IngestReport: put images in the app's library before the app opens it."""
    from ragkit.library import Library

    def add(uploads, tags=()):
        library = Library.open(settings, embedder=tiny_embedder)
        try:
            return library.ingest_uploads(list(uploads), tags=tags)
        finally:
            library.close()
    return add


def new_app():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)


def run(at):
    """Run and fail loudly on an exception shown on the page (the tests' tracebacks)."""
    at.run(timeout=RUN_TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def shown(markdown: str) -> str:
    """What a reader sees of Markdown whose user text went through ragkit.ui.markdown.md_escape:
    without its backslash escapes and word joiners (Markdown of the page itself stays as written)."""
    from ragkit.ui.markdown import WORD_JOINER
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")


def all_text(at) -> str:
    """Every markdown/caption/alert/heading text on the page and in the sidebar."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error",
                 "success", "code"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


MARKDOWN_FIELDS = {"body", "help", "caption", "text", "label"}  # what Streamlit renders as Markdown


def markdown_sources(at) -> list[str]:
    """Every Markdown string the last run sent: bodies of markdown/captions/alerts/toasts, help
    tooltips, image captions, progress texts, labels (widget options are plain text: not these)."""
    from google.protobuf.json_format import MessageToDict
    found: list[str] = []

    def collect(value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in MARKDOWN_FIELDS and isinstance(item, str):
                    found.append(item)
                else:
                    collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    def walk(node) -> None:
        if getattr(node, "proto", None) is not None:
            collect(MessageToDict(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)  # noqa: SLF001 - AppTest has no public walk over every element
    return found


# --- a real `streamlit run` server -----------------------------------------------------------------
def clean_env(ragkit_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGKIT_", "GEMINI_", "GOOGLE_", "STREAMLIT_"))}
    env.update(ragkit_env)
    env["PYTHONPATH"] = str(REPO)
    return env


@contextlib.contextmanager
def streamlit_server(ragkit_env: dict[str, str], port: int, log_path: Path,
                     timeout: float = 90.0) -> Iterator[str]:
    """`streamlit run app.py` on 127.0.0.1:port with this library; yields its URL."""
    with killable_streamlit_server(ragkit_env, port, log_path, timeout) as (url, _):
        yield url


def chromium_executable() -> str | None:
    return CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")


def chromium_available() -> bool:
    return chromium_executable() is not None


@contextlib.contextmanager
def chromium_page(viewport=(1440, 1000)):
    """One page in a fresh headless Chromium."""
    with chromium_browser() as browser:
        yield new_session_page(browser, viewport=viewport)


def require_browser() -> None:
    """Skip without Chromium locally; in CI (CI=true) its absence is a failure."""
    in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    problem = None
    if not chromium_available():
        problem = "Chromium is not installed at /usr/bin/chromium (Debian: sudo apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install -r requirements-dev.txt)"
    if problem:
        if in_ci:
            pytest.fail(f"CI must run the browser test, but {problem}")
        pytest.skip(f"{problem}; CI installs it and runs this test")


def wait_for_app_idle(page, timeout: float = 30.0, settle: float = 0.4) -> None:
    """Wait until Streamlit has finished its script run (stApp's data-test-script-state)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        script_state = page.get_attribute('[data-testid="stApp"]', "data-test-script-state")
        if script_state in ("notRunning", "compilationError"):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:  # a rerun may follow right away
                return
        else:
            quiet_since = None
        time.sleep(0.1)
    raise TimeoutError(f"the app was still running after {timeout:.0f} s")


# --- reliability tests: a killable server, several browser sessions, the Library's upload form -----
UPLOAD_INPUT = '[data-testid="stFileUploaderDropzoneInput"]'
UPLOAD_REPORT = '[class*="st-key-library-report"] [data-testid="stAlert"]'


def streamlit_command(port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
            "--server.address", "127.0.0.1", "--server.headless", "true",
            "--browser.gatherUsageStats", "false"]


@contextlib.contextmanager
def killable_streamlit_server(ragkit_env: dict[str, str], port: int, log_path: Path, timeout: float = 90.0,
                              *, model_images_per_second: float | None = None
                              ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Like streamlit_server, but yields (url, process) with the server in its own process group,
    so a test can `kill -9` it; whatever is left of the group is SIGKILLed on the way out.
    With `model_images_per_second`, the tiny test model encodes no faster than that (see
    model_speed_shim)."""
    from tests.conftest import wait_for_port
    env = clean_env(ragkit_env)
    if model_images_per_second:
        shim = model_speed_shim(log_path.parent / "model-speed-shim", model_images_per_second)
        env["PYTHONPATH"] = os.pathsep.join([str(shim), env["PYTHONPATH"]])
    with open(log_path, "wb") as log:
        process = subprocess.Popen(streamlit_command(port), cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(port, timeout=timeout, process=process)
            yield f"http://127.0.0.1:{port}", process
        finally:
            stop_process_group(process)


def model_speed_shim(folder: Path, images_per_second: float) -> Path:
    """A folder with a sitecustomize.py that makes image encoding take at least 1/images_per_second
    per image in a server started with it on its PYTHONPATH. The tiny test model encodes an upload
    in a blink; ViT-B-32 does 15-20 images/s on this CPU (DESIGN.md), and a test of what happens
    while an upload runs needs one that lasts as long as a real one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"""\
import time

from ragkit.ingest.embedder import ClipEmbedder

_encode = ClipEmbedder.embed_tensors


def _at_real_model_speed(self, batch):
    started = time.monotonic()
    vectors = _encode(self, batch)
    time.sleep(max(0.0, len(batch) / {images_per_second!r} - (time.monotonic() - started)))
    return vectors


ClipEmbedder.embed_tensors = _at_real_model_speed
""")
    return folder


def stop_process_group(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the process (if it still runs), then SIGKILL anything left in its process group."""
    import signal
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the group id is the leader's pid (start_new_session)


@contextlib.contextmanager
def chromium_browser() -> Iterator[object]:
    """One headless Chromium; each `new_session_page(browser)` is a separate Streamlit session."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_session_page(browser, errors: list[str] | None = None, viewport=(1440, 1000)):
    """A page in a fresh browser context (own cookies, own websocket: its own Streamlit session).
    Uncaught page errors are appended to `errors`, prefixed with the page's number."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(30_000)
    if errors is not None:
        label = f"page {len(browser.contexts)}"
        page.on("pageerror", lambda exc: errors.append(f"{label}: {exc}"))
    return page


def open_add_images(page) -> None:
    """Expand the Library's "Add images" expander (collapsed once the library has images)."""
    summary = page.locator('[data-testid="stExpander"] summary').filter(has_text="Add images")
    summary.wait_for()
    details = summary.locator("xpath=ancestor::details[1]")
    if details.get_attribute("open") is None:
        summary.click()
        wait_for_app_idle(page)


def choose_uploads(page, files: list[tuple[str, bytes]], tags: str = "", timeout: float = 60.0):
    """Put files in the Library's drop zone (and tags in its field); returns the Add button, ready."""
    open_add_images(page)
    payload = [{"name": name, "mimeType": "image/jpeg", "buffer": data} for name, data in files]
    page.locator(UPLOAD_INPUT).set_input_files(payload)
    add = page.get_by_role("button", name=f"Add {len(files)} image{'s' if len(files) != 1 else ''} to the library")
    add.wait_for(timeout=timeout * 1000)
    if tags:
        field = page.get_by_label("Tags for these images (optional, comma-separated)")
        field.fill(tags)
        field.press("Enter")
    wait_for_app_idle(page, timeout)
    return add


def upload_report(page) -> dict | None:
    """The Library's summary after an upload as numbers, or None while there is none on the page:
    {"added": 9, "duplicates": 0, "rejected": 0, "seconds": 1.2} (the server's own ingest time)."""
    alerts = page.locator(UPLOAD_REPORT)
    if alerts.count() == 0:
        return None
    text = alerts.first.inner_text()
    match = re.search(r"(\d+) added · (\d+) already in the library · (\d+) rejected · ([\d.]+) s", text)
    if not match:
        raise AssertionError(f"unexpected upload summary: {text!r}")
    added, duplicates, rejected, seconds = match.groups()
    return {"added": int(added), "duplicates": int(duplicates), "rejected": int(rejected),
            "seconds": float(seconds)}


def blob_counts(data_dir: Path) -> dict[str, int]:
    """Files under a library's data dir: finished originals and thumbnails, and unfinished writes."""
    counts = {"originals": 0, "thumbnails": 0, "temp": 0}
    for kind in ("originals", "thumbnails"):
        root = Path(data_dir) / kind
        if not root.is_dir():
            continue
        with os.scandir(root) as shards:
            for shard in shards:
                if not shard.is_dir():
                    continue
                with os.scandir(shard.path) as entries:
                    for entry in entries:
                        counts["temp" if entry.name.startswith(".tmp-") else kind] += 1
    return counts


if __name__ == "__main__":
    if sys.argv[1:2] == ["pictures"]:
        target = Path(sys.argv[2] if len(sys.argv) > 2 else "pictures")
        target.mkdir(parents=True, exist_ok=True)
        for name, data in product_set(16):
            (target / name).write_bytes(data)
        print(f"wrote 16 pictures to {target}")
    else:
        print(__doc__)


# --- screenshots and images in the browser tests ----------------------------------------------------
ARTIFACTS = REPO / "test-artifacts" / "e2e"
DOCS_SHOTS = REPO / "docs" / "screenshots"
GRID_IMAGES = '[class*="st-key-ragkit-grid-{}"] [data-testid="stImage"] img'


def shot(page, name: str, height: int | None = None, top=None) -> Path:
    """Screenshot the viewport (Streamlit scrolls inside the page: a taller viewport shows more),
    optionally scrolled so that the locator `top` is at the top."""
    if height:
        page.set_viewport_size({"width": 1440, "height": height})
        wait_for_app_idle(page)
    if top is not None:
        top.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(200)
    path = ARTIFACTS / f"{name}.png"
    page.mouse.move(2, 2)  # no hover effects or tooltips in the picture
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    if height:
        page.set_viewport_size({"width": 1440, "height": 1000})
        wait_for_app_idle(page)
    if os.environ.get("RAGKIT_UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SHOTS / path.name)
    return path


def images_loaded(page, selector: str, count: int | None = None) -> int:
    """Wait until the images matching selector (at least `count`) have loaded; how many there are."""
    page.wait_for_function(
        "([s, n]) => { const i = [...document.querySelectorAll(s)];"
        " return i.length >= n && i.every(x => x.complete && x.naturalWidth > 0); }",
        arg=[selector, count or 1])
    return page.locator(selector).count()


def image_sizes(page, selector: str, count: int) -> list[dict]:
    """naturalWidth/Height of the images matching selector, once exactly `count` of them have loaded."""
    page.wait_for_function(
        "([s, n]) => { const imgs = [...document.querySelectorAll(s)];"
        " return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=[selector, count], timeout=60_000)
    return page.eval_on_selector_all(selector, "els => els.map(i => ({w: i.naturalWidth, h: i.naturalHeight}))")
