"""Brand kits (ragkit.studio.kits, `python -m ragkit brand-kit`): stored next to the blobs, versioned,
safe with two editors; generating with a kit sends its style and references and records it."""
from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from ragkit import studio
from ragkit.errors import InvalidInputError, KitConflictError, KitNotFoundError
from ragkit.ingest.pipeline import Upload
from ragkit.studio import ImageGenerator, kits
from tests.conftest import GEMINI_TEST_KEY
from tests.support.cli import run_cli_inprocess
from tests.images_factory import jpeg_bytes

KEY = GEMINI_TEST_KEY


@pytest.fixture
def store(tmp_path) -> kits.KitStore:
    return kits.KitStore(tmp_path / "data")


def test_saving_bumps_the_version_and_every_store_on_the_folder_sees_it(store, tmp_path):
    first = store.save(kits.make_kit("Acme Summer", style="pastel", avoid=["text, logos", "watermarks"],
                                     aspect="4:5"))
    assert (first.version, first.avoid, first.aspect) == (1, ("text", "logos", "watermarks"), "4:5")
    second = store.save(dataclasses.replace(first, style="pastel, flat light"), expected_version=1)
    assert second.version == 2
    other_process = kits.KitStore(tmp_path / "data")  # another app instance on the shared RAGKIT_DATA_DIR
    assert other_process.get("acme summer") == second  # names are case-insensitive
    assert [k.name for k in other_process.list()] == ["Acme Summer"]
    assert not list(store.folder.glob(".tmp-*"))


def test_two_editors_the_second_save_is_refused_and_says_what_to_do(store):
    opened = store.save(kits.make_kit("Acme", style="v1"))
    mine, theirs = dataclasses.replace(opened, style="mine"), dataclasses.replace(opened, style="theirs")
    store.save(theirs, expected_version=opened.version)
    with pytest.raises(KitConflictError, match=r"Someone else saved .* \(now version 2, you opened version 1\)"):
        store.save(mine, expected_version=opened.version)
    assert store.get("Acme").style == "theirs"  # nothing overwritten
    with pytest.raises(KitConflictError, match="created a brand kit named 'Acme'"):
        store.save(kits.make_kit("ACME", style="new"), expected_version=0)


def test_renaming_keeps_the_kit_follows_the_name_rules_and_refuses_a_taken_name(store):
    acme = store.save(kits.make_kit("Acme", style="pastel", avoid=["text"], aspect="4:5"))
    store.save(kits.make_kit("Straße", style="other"))
    renamed = store.rename("acme", "  Acme   Winter ", expected_version=acme.version)
    assert (renamed.name, renamed.style, renamed.avoid, renamed.aspect, renamed.version) == \
        ("Acme Winter", "pastel", ("text",), "4:5", 2)
    assert store.find("Acme") is None and store.get("acme winter") == renamed
    assert sorted(k.name for k in store.list()) == ["Acme Winter", "Straße"]
    assert len(list(store.folder.glob("*.json"))) == 2  # the old file is gone, not left as a twin
    with pytest.raises(KitConflictError, match="'Straße' exists already"):  # NFC + casefold: the same name
        store.rename("Acme Winter", "STRASSE", expected_version=2)
    with pytest.raises(KitConflictError, match=r"now version 2, you opened version 1"):
        store.rename("Acme Winter", "Acme Autumn", expected_version=1)
    assert store.get("Acme Winter").version == 2  # nothing changed by the refusals
    recased = store.rename("Acme Winter", "ACME winter", expected_version=2)  # the same kit, other case
    assert recased.name == "ACME winter" and [k.name for k in store.list()] == ["ACME winter", "Straße"]
    with pytest.raises(KitNotFoundError):
        store.rename("Nope", "Other")
    with pytest.raises(InvalidInputError):
        store.rename("ACME winter", "   ")


def test_concurrent_saves_lose_no_version(store):
    store.save(kits.make_kit("Busy"))
    threads = [threading.Thread(target=lambda i=i: store.save(kits.make_kit("Busy", style=f"edit {i}")))
               for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("Busy").version == 13  # last write wins, and the version tells how many there were


def test_bad_input_is_refused_with_the_fix_and_a_damaged_file_is_skipped(store):
    with pytest.raises(InvalidInputError, match="needs a name"):
        kits.make_kit("  ")
    with pytest.raises(InvalidInputError, match="at most 6 reference images"):
        kits.make_kit("Many", reference_ids=[f"{i:064x}" for i in range(7)])
    with pytest.raises(InvalidInputError, match="Aspect ratio '7:3'"):
        kits.make_kit("Odd", aspect="7:3")
    store.save(kits.make_kit("Good"))
    (store.folder / "broken-0123456789ab.json").write_text("{not json")
    assert [k.name for k in store.list()] == ["Good"]
    path = store.path_for("../../etc/passwd")
    assert path.parent == store.folder and path.name.startswith("etc-passwd-")
    with pytest.raises(KitNotFoundError, match="No brand kit named 'Nope' \\(kits: Good\\)"):
        store.get("Nope")


def test_the_prompt_carries_the_brief_the_style_and_what_to_avoid():
    kit = kits.make_kit("Acme", style="pastel colours", avoid=["text", "people"])
    assert kit.prompt_for("  A mug on a table ") == (
        "A mug on a table\n\nBrand style: pastel colours\n\nDo not show or include: text, people.")
    assert kits.make_kit("Plain").prompt_for("A mug") == "A mug"


# ----------------------------------------------------------------------------- generating with a kit
@pytest.fixture
def lib(gemini_library):
    """This module's name for the shared Gemini-backed library (tests/conftest.py)."""
    return gemini_library


def test_generating_with_a_kit_sends_it_and_records_its_name_and_version(lib, fake_gemini):
    added = lib.ingest_uploads([Upload(f"{n}.jpg", jpeg_bytes(i)) for i, n in enumerate(["shoe", "logo", "palette"])])
    shoe, logo, palette = (a.sha256 for _, a in added.added)
    store = kits.kit_store(lib.settings)
    store.save(kits.make_kit("Acme", style="pastel", reference_ids=[logo]))
    kit = store.save(kits.make_kit("Acme", style="pastel", reference_ids=[logo, palette], aspect="1:1"))
    generator = ImageGenerator(KEY, base_url=fake_gemini.url, sleep=lambda s: None)

    generation = studio.generate_from(lib, generator, "A shoe on sand", [shoe], kit=kit)

    (request,) = fake_gemini.requests
    assert [data for _, data in request.images] == [lib.original_bytes(s) for s in (shoe, logo, palette)]
    assert request.brief == "A shoe on sand\n\nBrand style: pastel" and request.aspect_ratio == "1:1"
    saved = studio.save_generated_image(lib, generation, generation.images[0])
    assert saved.details["kit"] == "Acme" and saved.details["kit_version"] == 2
    assert saved.details["brief"] == "A shoe on sand" and saved.details["cost_usd"] > 0
    assert list(saved.reference_ids) == [shoe, logo, palette]


def test_a_kit_whose_reference_was_deleted_says_so_and_is_not_used(lib, fake_gemini):
    added = lib.ingest_uploads([Upload(f"{n}.jpg", jpeg_bytes(i)) for i, n in enumerate(["shoe", "logo"])])
    shoe, logo = (a.sha256 for _, a in added.added)
    kit = kits.kit_store(lib.settings).save(kits.make_kit("Acme", reference_ids=[logo]))
    lib.delete([logo])
    assert kits.reference_problems(lib, kit) == [f"reference {logo[:12]}… was deleted from the library"]
    generator = ImageGenerator(KEY, base_url=fake_gemini.url, sleep=lambda s: None)
    with pytest.raises(InvalidInputError, match="brand kit 'Acme' can't be used: reference .* was deleted"):
        studio.generate_from(lib, generator, "A shoe", [shoe], kit=kit)
    assert fake_gemini.requests == []


# ----------------------------------------------------------------------------- the command
def test_cli_set_list_delete(tmp_path, ragkit_env, image_folder):
    ingest = run_cli_inprocess(["ingest", str(image_folder), "--json"], ragkit_env, tmp_path)
    added = json.loads(ingest.stdout)["added"][:2]
    logo, palette = [a["sha256"] for a in added]

    made = run_cli_inprocess(["brand-kit", "set", "Acme", "--style", "pastel, flat light", "--ref", logo, "--ref", palette,
                    "--avoid", "text", "--aspect", "4:5", "--json"], ragkit_env, tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["version"] == 1 and b"version 1" in made.stderr
    folded = run_cli_inprocess(["brand-kit", "set", "acme", "--aspect", "1:1"], ragkit_env, tmp_path)
    assert folded.returncode == 1 and b"give its name exactly as 'Acme'" in folded.stderr  # never a silent rename
    changed = run_cli_inprocess(["brand-kit", "set", "Acme", "--aspect", "1:1", "--json"], ragkit_env, tmp_path)
    kit = json.loads(changed.stdout)
    assert (kit["version"], kit["aspect"], kit["style"], kit["reference_ids"]) == (2, "1:1", "pastel, flat light",
                                                                                  [logo, palette])
    listed = json.loads(run_cli_inprocess(["brand-kit", "list", "--json"], ragkit_env, tmp_path).stdout)
    assert [(k["name"], k["version"], k["problems"]) for k in listed["kits"]] == [("Acme", 2, [])]

    run_cli_inprocess(["delete", logo], ragkit_env, tmp_path)  # to the trash: the kit says where it went
    human = run_cli_inprocess(["brand-kit", "list"], ragkit_env, tmp_path)
    assert f"can't be used: reference {added[0]['filename']} is in the trash" in human.stdout.decode()
    run_cli_inprocess(["trash", "empty"], ragkit_env, tmp_path)
    human = run_cli_inprocess(["brand-kit", "list"], ragkit_env, tmp_path)
    assert f"can't be used: reference {logo[:12]}… was deleted from the library" in human.stdout.decode()
    missing = run_cli_inprocess(["brand-kit", "set", "Other", "--ref", logo], ragkit_env, tmp_path)
    assert missing.returncode == 1 and b"was deleted from the library" in missing.stderr

    assert run_cli_inprocess(["brand-kit", "delete", "ACME"], ragkit_env, tmp_path).returncode == 0
    gone = run_cli_inprocess(["brand-kit", "delete", "Acme"], ragkit_env, tmp_path)
    assert gone.returncode == 1 and b"No brand kit named 'Acme'" in gone.stderr
