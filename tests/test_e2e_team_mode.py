"""Team mode for real: `streamlit run app.py` and the CLI on one Milvus server, at once (the test runs on
`milvus-lite server` and on the real Milvus engine).

A person uploads six product shots in Chromium while a colleague's `python -m ragkit ingest` adds
eighty more through the same server. Both finish without an error; the app's Library then shows
all of them, search in the app finds a CLI image, and the
CLI's `stats` and `doctor` agree with it: nothing lost, nothing doubled.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import time

import pytest

from ragkit.ui.grid import short_name
from tests.conftest import free_port, run_cli
from tests.e2e_support import (COLOURS, PRODUCTS, REPO, chromium_page, clean_env, product_jpeg, product_set, require_browser,
                               streamlit_server, wait_for_app_idle)

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "test-artifacts" / "e2e"
COLLEAGUE = 80  # the CLI's share: enough to keep it writing while the browser uploads


def test_app_and_cli_write_to_one_milvus_server_at_once(server, ragkit_env, tmp_path):
    require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {**ragkit_env, **server.env}
    data_dir = Path(env["RAGKIT_DATA_DIR"])
    # The colleague's folder: a shoot of COLLEAGUE pictures the browser does not upload.
    folder = tmp_path / "colleague"
    folder.mkdir()
    products, colours = list(PRODUCTS), list(COLOURS)
    for i in range(COLLEAGUE):
        product, colour = products[i % len(products)], colours[(i * 5 + i // len(products)) % len(colours)]
        (folder / f"cli-{i:03d}-{colour}-{product}.jpg").write_bytes(
            product_jpeg(product, colour, seed=100 + i, size=(320, 240)))
    uploads = product_set(6)
    log_path = tmp_path / "streamlit.log"

    with streamlit_server(env, free_port(), log_path) as url, chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.get_by_text("Your library is empty").wait_for(timeout=90_000)
        wait_for_app_idle(page, 60)
        assert page.get_by_text("Database (server)").is_visible()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            [{"name": name, "mimeType": "image/jpeg", "buffer": data} for name, data in uploads])
        add = page.get_by_role("button", name="Add 6 images to the library")
        add.wait_for()
        wait_for_app_idle(page)

        # Both writers at once: the CLI starts; once its first files land, the upload is clicked.
        cli = subprocess.Popen([sys.executable, "-m", "ragkit", "ingest", str(folder), "--json"], cwd=tmp_path,
                               env=clean_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        originals = data_dir / "originals"
        deadline = time.monotonic() + 120
        while not (originals.is_dir() and any(originals.rglob("*"))) and time.monotonic() < deadline:
            assert cli.poll() is None, cli.communicate()
            time.sleep(0.05)
        add.click()
        assert cli.poll() is None, "the CLI ended before the upload began: nothing ran at once"
        page.locator('[class*="st-key-library-report"]').get_by_text("6 added").wait_for(timeout=120_000)
        out, err = cli.communicate(timeout=180)
        assert cli.returncode == 0, err.decode(errors="replace")
        assert len(json.loads(out)["added"]) == COLLEAGUE

        # The app sees the colleague's images on its next view: no restart, no waiting for a cache.
        page.get_by_role("link", name="Search").click()
        page.get_by_role("link", name="Library").click()
        page.get_by_text(f"{COLLEAGUE + 6} images, newest first").wait_for(timeout=60_000)
        wait_for_app_idle(page)
        captions = page.locator('[class*="st-key-ragkit-grid-library"] [data-testid="stCaptionContainer"]')
        names = [c.strip() for c in captions.all_inner_texts()]
        assert len(names) == 24 and all(n.startswith("cli-") or n in dict(uploads) for n in names)
        page.screenshot(path=str(ARTIFACTS / "team-mode-library.png"))

        # Searching in the app finds a CLI image by its own pixels (example-image search).
        probe = sorted(folder.iterdir())[7]
        page.get_by_role("link", name="Search").click()
        page.get_by_text("Example image", exact=True).click()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            str(probe))
        page.get_by_text(f"images like {probe.name}").wait_for(timeout=60_000)
        wait_for_app_idle(page)
        top = page.locator('[class*="st-key-ragkit-grid-search"] [data-testid="stCaptionContainer"]').first
        assert top.inner_text().strip() == short_name(probe.name, 24)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert not errors, errors

    # The CLI, through the same server, counts what the app showed, and the doctor finds it healthy.
    stats = json.loads(run_cli(["stats", "--json"], env, tmp_path).stdout)
    assert stats["assets"] == COLLEAGUE + 6 and stats["db_uri"] == server.uri
    doctor = run_cli(["doctor", "--json"], env, tmp_path)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
