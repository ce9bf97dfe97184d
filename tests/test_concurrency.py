"""Several users at once: concurrent uploads and searches on one library; CLI and app on one server."""
import json
import threading
import time

from ragkit.lifecycle import doctor
from ragkit.config import Settings
from ragkit.ingest.pipeline import Upload
from ragkit.library import Library
from tests.conftest import run_cli
from tests.images_factory import jpeg_bytes


def test_concurrent_uploads_and_searches_lose_nothing(any_library):
    errors: list[BaseException] = []
    writers, per_writer = 4, 10

    def upload(worker: int) -> None:
        try:
            for i in range(0, per_writer, 2):  # two files per request, like a small drag-and-drop
                batch = [Upload(f"w{worker}-{j}.jpg", jpeg_bytes(5000 + worker * 100 + j)) for j in (i, i + 1)]
                report = any_library.ingest_uploads(batch, tags=[f"writer-{worker}"])
                assert len(report.added) == 2, report
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    def search() -> None:
        try:
            for _ in range(15):
                any_library.search_text("red silk cape", k=5)
                any_library.page(0, 24)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=search) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors
    assert any_library.count() == writers * per_writer
    for w in range(writers):
        assert any_library.count(tags=[f"writer-{w}"]) == per_writer
    assert doctor.check(any_library).healthy


def test_cli_and_app_share_one_milvus_server(server, server_env, tmp_path, tiny_embedder, image_folder):
    app_library = Library.open(Settings.load(env=server_env, cwd=tmp_path, secrets_files=[]), embedder=tiny_embedder)
    try:
        app_library.ingest_uploads([Upload("from-app.jpg", jpeg_bytes(9000))])
        cli = run_cli(["ingest", str(image_folder), "--json"], server_env, tmp_path)  # while the app holds a client
        assert cli.returncode == 0, cli.stderr
        assert len(json.loads(cli.stdout)["added"]) == 8
        assert app_library.count() == 9
        hits = app_library.search_image((image_folder / "sub" / "photo_3.jpg").read_bytes(), k=1)
        assert hits[0].asset.filename == "photo_3.jpg"
        stats = json.loads(run_cli(["stats", "--json"], server_env, tmp_path).stdout)
        assert stats["assets"] == 9 and stats["db_uri"] == server.uri
        assert doctor.check(app_library).healthy
    finally:
        app_library.close()


def test_the_same_picture_dropped_in_several_sessions_at_once_is_added_once(any_library):
    """Three sessions drop the same picture at the same moment (plus one of their own each):
    exactly one reports it added, the others 'already in the library', and the stored row is the
    adder's (its tag, its name), not whichever upsert happened to come last."""
    people = ["alice", "bob", "carol"]
    for round_ in range(4):  # a race: give it several chances to show
        shared = jpeg_bytes(7000 + round_)
        barrier = threading.Barrier(len(people))
        reports, errors = {}, []

        def drop(person: str, own_seed: int) -> None:
            try:
                barrier.wait(timeout=30)
                reports[person] = any_library.ingest_uploads(
                    [Upload(f"{person}-{round_}.jpg", shared), Upload(f"{person}-own-{round_}.jpg", jpeg_bytes(own_seed))],
                    tags=[person])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=drop, args=(p, 8000 + 10 * round_ + i)) for i, p in enumerate(people)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        adders = [p for p in people if any(label == f"{p}-{round_}.jpg" for label, _ in reports[p].added)]
        assert len(adders) == 1, {p: (reports[p].added, reports[p].duplicates) for p in people}
        for person in people:
            assert len(reports[person].added) + len(reports[person].duplicates) == 2
            assert [label for label, _ in reports[person].added if "-own-" in label] == [f"{person}-own-{round_}.jpg"]
        stored = any_library.get(reports[adders[0]].added[0][1].sha256)
        assert stored.filename == f"{adders[0]}-{round_}.jpg" and list(stored.tags) == [adders[0]]
    assert any_library.count() == 4 * (1 + len(people))
    assert doctor.check(any_library).healthy


def test_when_the_run_adding_a_picture_fails_the_one_waiting_for_it_adds_it(library, monkeypatch):
    """Run A claims a picture and then fails before storing it; run B, which found it claimed and
    waited, must add it itself rather than report a duplicate that is not there."""
    import ragkit.ingest.pipeline as ingest_module
    from ragkit.ingest.pipeline import IngestPipeline

    shared = jpeg_bytes(9100)
    b_waiting = threading.Event()
    real_wait = ingest_module._claims.wait_free

    def noting_wait(*args, **kwargs):
        b_waiting.set()
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(ingest_module._claims, "wait_free", noting_wait)

    class FailingEmbedder:
        """The real model, except that this run's forward pass fails once B waits on it."""
        image_size = library.embedder.image_size

        def preprocess(self, image):
            return library.embedder.preprocess(image)

        def embed_tensors(self, batch):
            assert b_waiting.wait(30), "run B never waited for run A's claim"
            raise RuntimeError("out of memory (simulated)")

    failing = IngestPipeline(library.store, library.blobs, FailingEmbedder(), max_pixels=library.settings.max_image_pixels)
    outcome = {}

    def run_a():
        try:
            failing.run([Upload("a.jpg", shared)], tags=["a"])
        except RuntimeError as exc:
            outcome["a"] = exc

    thread = threading.Thread(target=run_a)
    thread.start()
    for _ in range(3000):  # until A holds its claim
        if ingest_module._claims._owners:  # noqa: SLF001
            break
        time.sleep(0.01)
    report = library.ingest_uploads([Upload("b.jpg", shared)], tags=["b"])
    thread.join(timeout=60)
    assert "out of memory" in str(outcome["a"])
    assert [label for label, _ in report.added] == ["b.jpg"] and not report.duplicates
    assert library.count() == 1 and list(library.get(report.added[0][1].sha256).tags) == ["b"]
