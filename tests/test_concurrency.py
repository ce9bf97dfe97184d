"""Several users at once: concurrent uploads and searches on one library; CLI and app on one server."""
import json
import threading

from ragkit import doctor
from ragkit.config import Settings
from ragkit.ingest import Upload
from ragkit.library import Library
from tests.conftest import run_cli
from tests.images_factory import jpeg_bytes


def test_concurrent_uploads_and_searches_lose_nothing(library):
    errors: list[BaseException] = []
    writers, per_writer = 4, 10

    def upload(worker: int) -> None:
        try:
            for i in range(0, per_writer, 2):  # two files per request, like a small drag-and-drop
                batch = [Upload(f"w{worker}-{j}.jpg", jpeg_bytes(5000 + worker * 100 + j)) for j in (i, i + 1)]
                report = library.ingest_uploads(batch, tags=[f"writer-{worker}"])
                assert len(report.added) == 2, report
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    def search() -> None:
        try:
            for _ in range(15):
                library.search_text("red silk cape", k=5)
                library.page(0, 24)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=search) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors
    assert library.count() == writers * per_writer
    for w in range(writers):
        assert library.count(tags=[f"writer-{w}"]) == per_writer
    assert doctor.check(library).healthy


def test_cli_and_app_share_one_milvus_server(milvus_server, tmp_path, tiny_checkpoint, tiny_embedder, image_folder):
    env = {"RAGKIT_DATA_DIR": str(tmp_path / "shared"), "RAGKIT_MILVUS_URI": milvus_server,
           "RAGKIT_CLIP_MODEL": "ragkit-tiny", "RAGKIT_CLIP_PRETRAINED": str(tiny_checkpoint)}
    app_library = Library.open(Settings.load(env=env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    try:
        app_library.ingest_uploads([Upload("from-app.jpg", jpeg_bytes(9000))])
        cli = run_cli(["ingest", str(image_folder), "--json"], env, tmp_path)  # while the app holds a client
        assert cli.returncode == 0, cli.stderr
        assert len(json.loads(cli.stdout)["added"]) == 8
        assert app_library.count() == 9
        hits = app_library.search_image((image_folder / "sub" / "photo_3.jpg").read_bytes(), k=1)
        assert hits[0].asset.filename == "photo_3.jpg"
        stats = json.loads(run_cli(["stats", "--json"], env, tmp_path).stdout)
        assert stats["assets"] == 9 and stats["db_uri"] == milvus_server
        assert doctor.check(app_library).healthy
    finally:
        app_library.close()
