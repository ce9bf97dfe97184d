"""A newcomer's first run on a machine without the model hub (issue 21, item 1): the first upload
fails with a message that says what to do; doing exactly that and restarting works, with nothing to
clean up. The library records its model (data/model.json) only once it holds a vector.

The tiny random-weight architecture stands in for ViT-B-32 once the "downloaded" file is given
(a real ViT-B-32 checkpoint is 600 MB); the failing first run uses the real defaults."""
from __future__ import annotations

import json
import shutil

from ragkit.config import Settings
from ragkit.ingest.embedder import model_identity
from ragkit.lifecycle import active_model
from ragkit.lifecycle.active_model import ModelChoice, ModelRecord
from ragkit.library import Library
from tests.conftest import TINY_MODEL, run_cli
from tests.images_factory import jpeg_bytes

README_FILE_NAME = "open_clip_pytorch_model.bin"  # README › Offline weights


def _no_hub(tmp_path, data_dir) -> dict[str, str]:
    """The quick start's environment (the default model) on a machine without the model hub."""
    return {"RAGKIT_DATA_DIR": str(data_dir), "RAGKIT_DEVICE": "cpu",
            "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-cache")}


def _downloaded(tmp_path, tiny_checkpoint):
    """The checkpoint a person copied over, under the README's file name."""
    target = tmp_path / "models" / README_FILE_NAME
    target.parent.mkdir()
    shutil.copyfile(tiny_checkpoint, target)
    return target


def test_doing_what_the_first_failure_says_works_with_no_clean_up(tmp_path, tiny_checkpoint):
    data = tmp_path / "data"
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"shot-{i}.jpg").write_bytes(jpeg_bytes(i))

    first = run_cli(["ingest", str(photos)], _no_hub(tmp_path, data), tmp_path, timeout=180)
    assert first.returncode == 1 and b"RAGKIT_CLIP_PRETRAINED=/path/to/that/file" in first.stderr
    assert not (data / "model.json").exists()  # nothing pinned by a library that holds nothing

    weights = _downloaded(tmp_path, tiny_checkpoint)
    told = {**_no_hub(tmp_path, data), "RAGKIT_CLIP_MODEL": TINY_MODEL, "RAGKIT_CLIP_PRETRAINED": str(weights)}
    second = run_cli(["ingest", str(photos), "--json"], told, tmp_path, timeout=180)
    assert second.returncode == 0, second.stderr.decode()
    assert len(json.loads(second.stdout)["added"]) == 3
    recorded = json.loads((data / "model.json").read_text())["active"]
    assert recorded["model_id"] == model_identity(TINY_MODEL, str(weights))
    stats = json.loads(run_cli(["stats", "--json"], told, tmp_path).stdout)
    assert stats["assets"] == 3 and stats["configured_model"] == ""


def test_a_model_recorded_without_a_vector_no_longer_pins_the_library(tmp_path, tiny_checkpoint, tiny_embedder):
    """A library an older ragkit pinned at its failed first run: the configured model takes over,
    and the record is replaced once the library holds a vector."""
    data = tmp_path / "data"
    pinned = ModelChoice("ViT-B-32", "laion2b_s34b_b79k")
    stale = Library.open(Settings.load(env=_no_hub(tmp_path, data), cwd=tmp_path, secrets_files=[]))
    stale.close()  # its (empty) collection exists, as the failed first run left it
    active_model.write_record(data, ModelRecord(active=pinned))

    weights = _downloaded(tmp_path, tiny_checkpoint)
    told = Settings.load(env={**_no_hub(tmp_path, data), "RAGKIT_CLIP_MODEL": TINY_MODEL,
                              "RAGKIT_CLIP_PRETRAINED": str(weights)}, cwd=tmp_path, secrets_files=[])
    library = Library.open(told)
    try:
        assert library.model_id == model_identity(TINY_MODEL, str(weights)) and not library.active_model.differs
        report = library.ingest_paths([])  # nothing added: nothing recorded
        assert not report.added and active_model.read_record(data).active == pinned
        from ragkit.ingest.pipeline import Upload
        library.ingest_uploads([Upload("shot.jpg", jpeg_bytes(1))])
        assert active_model.read_record(data).active.model_id == library.model_id
        assert library.search_text("shot", k=1)
    finally:
        library.close()
    # The next process sees the new record.
    again = Library.open(told)
    try:
        assert again.active_model.recorded and again.count() == 1
    finally:
        again.close()


def test_a_library_that_holds_vectors_keeps_its_recorded_model(library, tmp_path, tiny_embedder):
    """The rule the fix must not break: a library with images keeps its model whatever the environment says."""
    from ragkit.ingest.pipeline import Upload
    library.ingest_uploads([Upload("shot.jpg", jpeg_bytes(2))])
    assert active_model.read_record(library.settings.data_dir).active.model_id == library.model_id
    other = Settings.load(env={"RAGKIT_DATA_DIR": str(library.settings.data_dir), "RAGKIT_DEVICE": "cpu",
                               "RAGKIT_CLIP_MODEL": "ViT-B-32", "RAGKIT_CLIP_PRETRAINED": "laion2b_s34b_b79k"},
                          cwd=tmp_path, secrets_files=[])
    library.close()
    reopened = Library.open(other)
    try:
        assert reopened.model_id == model_identity(TINY_MODEL, str(library.settings.clip_pretrained))
        assert reopened.active_model.differs and reopened.count() == 1
    finally:
        reopened.close()


def test_the_newcomer_path_in_the_browser(tmp_path, tiny_checkpoint):
    """The quick start on a machine without the hub: the first upload fails and says what to do;
    set RAGKIT_CLIP_PRETRAINED, restart the app, and the same upload works. Then Enter in
    Settings › Weights does not start a re-index (only the button does)."""
    from tests.conftest import free_port
    from tests.e2e_support import (chromium_browser, choose_uploads, killable_streamlit_server, new_session_page,
                                   require_browser, upload_report, wait_for_app_idle)
    require_browser()
    data = tmp_path / "data"
    files = [(f"shot-{i}.jpg", jpeg_bytes(i)) for i in range(2)]
    shots = tmp_path / "screens"
    shots.mkdir()
    with chromium_browser() as browser:
        with killable_streamlit_server(_no_hub(tmp_path, data), free_port(), tmp_path / "first.log") as (url, _):
            page = new_session_page(browser)
            page.goto(url)
            wait_for_app_idle(page, 90)
            choose_uploads(page, files).click()
            error = page.get_by_text("RAGKIT_CLIP_PRETRAINED=/path/to/that/file")
            error.first.wait_for(timeout=120_000)
            page.screenshot(path=str(shots / "first-upload.png"), full_page=True)
            page.context.close()
        assert not (data / "model.json").exists()

        weights = _downloaded(tmp_path, tiny_checkpoint)
        told = {**_no_hub(tmp_path, data), "RAGKIT_CLIP_MODEL": TINY_MODEL, "RAGKIT_CLIP_PRETRAINED": str(weights)}
        with killable_streamlit_server(told, free_port(), tmp_path / "second.log") as (url, _):
            page = new_session_page(browser)
            page.goto(url)
            wait_for_app_idle(page, 90)
            choose_uploads(page, files).click()
            page.wait_for_function("() => document.body.innerText.includes('added ·')", timeout=120_000)
            wait_for_app_idle(page, 60)
            assert upload_report(page)["added"] == 2
            assert "RAGKIT_CLIP_PRETRAINED=/path/to/that/file" not in page.locator("body").inner_text()

            page.get_by_text("Settings").first.click()
            weights_field = page.get_by_role("textbox", name="Weights")
            weights_field.fill("laion2b_s34b_b79k")
            weights_field.press("Enter")
            wait_for_app_idle(page, 30)
            page.screenshot(path=str(shots / "settings-enter.png"), full_page=True)
            assert "Re-indexing with" not in page.locator("body").inner_text()
            assert active_model.read_record(data).reindex is None
            page.context.close()
    assert json.loads((data / "model.json").read_text())["active"]["model_id"] == model_identity(TINY_MODEL,
                                                                                               str(weights))


def _non_loopback_address() -> str | None:
    import socket
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _answers(host: str, port: int) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/_stcore/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_the_quick_start_listens_on_this_computer_only(tmp_path, ragkit_env):
    """`streamlit run app.py` with the repo's .streamlit/config.toml: reachable at localhost, not from
    the network (no sign-in by default: opening it to a team is a choice, README › Sign-in)."""
    import subprocess
    import sys
    import time
    import pytest
    from tests.conftest import REPO, free_port
    from tests.e2e_support import clean_env, stop_process_group
    outside = _non_loopback_address()
    if outside is None:
        pytest.skip("this machine has no network interface besides loopback")
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]  # nothing else
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=clean_env(ragkit_env), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not _answers("127.0.0.1", port):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        assert not _answers(outside, port), f"the app answers on {outside}"
    finally:
        stop_process_group(process)


def test_the_requirements_keep_a_cpu_only_torch_installed_first():
    """README › Quick start: on a machine without a GPU, torch and torchvision come from PyTorch's CPU
    index first; requirements.txt must accept those wheels (local version +cpu), or pip would replace
    them with the 4 GB CUDA build. The two-command quick start stays as it was."""
    from packaging.requirements import Requirement
    from tests.conftest import REPO
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "pip install -r requirements.txt && streamlit run app.py\n" in quick_start
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in quick_start
    wanted = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            wanted[requirement.name] = requirement.specifier
    import torch
    import torchvision
    for name, module in (("torch", torch), ("torchvision", torchvision)):
        cpu_build = module.__version__.split("+")[0] + "+cpu"  # what the CPU index serves for this release
        assert wanted[name].contains(cpu_build), (name, cpu_build, str(wanted[name]))
