"""The Studio loop without the UI: references -> Nano Banana (real google-genai client, local
Gemini-format server) -> images saved back with provenance; and `python -m ragkit generate`."""
import io
import json

from PIL import Image

from ragkit import studio
from ragkit.studio import ImageGenerator
from ragkit.ingest.pipeline import Upload
from tests.support.cli import run_cli_inprocess
from devtools.fake_gemini import blocked_reply, error_reply
from tests.images_factory import jpeg_bytes

KEY = "test-key-ab12cd34ef56"


def test_references_generate_and_save_with_provenance(library, image_folder, fake_gemini):
    report = library.ingest_paths([image_folder])
    big = library.ingest_uploads([Upload("huge.jpg", jpeg_bytes(77, (3000, 2000)))]).added[0][1]
    refs = [report.added[0][1].sha256, big.sha256]
    references = studio.load_references(library, refs)
    assert [r.sha256 for r in references] == refs
    assert max(Image.open(io.BytesIO(references[1].data)).size) <= 1536

    generator = ImageGenerator(KEY, base_url=fake_gemini.url, sleep=lambda s: None)
    generation = generator.generate("a clean hero shot", references, aspect_ratio="16:9", variations=2)
    assert len(generation.images) == 2 and generation.reference_ids == refs
    sent = fake_gemini.requests[0]
    assert sent.brief == "a clean hero shot" and len(sent.images) == 2

    saved = [studio.save_generated_image(library, generation, image, tags=["promo"])
             for image in generation.images]
    stored = library.get(saved[0].sha256)
    assert stored.source == "generated" and stored.prompt == "a clean hero shot"
    assert list(stored.reference_ids) == refs and stored.tags == ("promo",)
    assert [a.sha256 for a in studio.recent_generated(library)][:1] == [saved[-1].sha256]
    suggestions = studio.suggest_references(library, "a clean hero shot", k=3, exclude=refs)
    assert len(suggestions) == 3 and not {h.asset.sha256 for h in suggestions} & set(refs)


def test_presets_are_real_briefs():
    assert len(studio.PRESET_BRIEFS) >= 3
    assert all(len(p.text) > 60 for p in studio.PRESET_BRIEFS)


def test_cli_generate_writes_saves_and_reports(tmp_path, ragkit_env, image_folder, fake_gemini):
    env = {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake_gemini.url}
    ingest = run_cli_inprocess(["ingest", str(image_folder), "--json"], env, tmp_path)
    refs = [a["sha256"] for a in json.loads(ingest.stdout)["added"][:2]]
    out = run_cli_inprocess(["generate", "a model wearing these on the beach", "--ref", refs[0], "--ref", refs[1],
                   "--aspect", "9:16", "-n", "2", "--save", "--out", str(tmp_path / "out"), "--json"],
                  env, tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["images"]) == 2 and result["text"]
    for image in result["images"]:
        assert Image.open(image["path"]).size[1] > Image.open(image["path"]).size[0]  # 9:16 is portrait
        assert len(image["sha256"]) == 64
    assert fake_gemini.requests[0].aspect_ratio == "9:16"
    assert fake_gemini.requests[0].headers.get("x-goog-api-key") == KEY
    assert KEY.encode() not in out.stderr and KEY.encode() not in out.stdout
    found = run_cli_inprocess(["search", "beach", "--source", "generated", "-k", "5", "--json"], env, tmp_path)
    hits = json.loads(found.stdout)["hits"]
    assert {h["sha256"] for h in hits} == {i["sha256"] for i in result["images"]}
    assert all(h["prompt"] == "a model wearing these on the beach" for h in hits)


def test_cli_generate_failures_are_one_clear_line(tmp_path, ragkit_env, fake_gemini):
    no_key = run_cli_inprocess(["generate", "anything"], ragkit_env, tmp_path)
    assert no_key.returncode == 1 and b"GEMINI_API_KEY" in no_key.stderr
    assert len(no_key.stderr.strip().splitlines()) == 1

    env = {**ragkit_env, "GEMINI_API_KEY": KEY, "RAGKIT_GEMINI_BASE_URL": fake_gemini.url}
    fake_gemini.enqueue(blocked_reply("PROHIBITED_CONTENT"))
    blocked = run_cli_inprocess(["generate", "something forbidden", "--json"], env, tmp_path)
    assert blocked.returncode == 1 and blocked.stdout == b""
    assert b"PROHIBITED_CONTENT" in blocked.stderr and b"Traceback" not in blocked.stderr

    fake_gemini.enqueue(error_reply(400, "API key not valid: {api_key}", "INVALID_ARGUMENT"))
    invalid = run_cli_inprocess(["generate", "x"], env, tmp_path)
    assert invalid.returncode == 1 and KEY.encode() not in invalid.stderr
    assert b"Traceback" not in invalid.stderr
