"""State files are input (issue 19, items 4, 12, 13, 19, 20): kits, the model record, the prices and
the data folder itself, damaged in the ways a person, a full disk or a hostile hand leaves them. Each
gives one clear line naming the file and what to do, and everything else keeps working."""
from __future__ import annotations

import json
import os
import unicodedata

import pytest

from tests.support.cli import run_cli_captured as run
from ragkit.errors import KitConflictError, StateFileError
from ragkit.studio import kits




@pytest.fixture
def store(tmp_path) -> kits.KitStore:
    return kits.KitStore(tmp_path / "data")


# ----------------------------------------------------------------------------- item 4: names that fold
def test_a_name_that_folds_onto_another_kit_is_refused_not_a_silent_replacement(store):
    store.save(kits.make_kit("Straße", style="first"))
    with pytest.raises(KitConflictError, match="A brand kit named 'Straße' exists, and 'STRASSE' is the same name"):
        store.save(kits.make_kit("STRASSE", style="second"))
    [kit] = store.list()
    assert (kit.name, kit.style, kit.version) == ("Straße", "first", 1)
    assert store.save(kits.make_kit("Straße", style="edited")).version == 2  # its exact name edits it


def test_a_name_typed_in_nfc_and_in_nfd_is_one_kit(store):
    nfc, nfd = unicodedata.normalize("NFC", "Café"), unicodedata.normalize("NFD", "Café")
    assert nfc != nfd
    store.save(kits.make_kit(nfc, style="one"))
    store.save(kits.make_kit(nfd, style="two"))
    [kit] = store.list()
    assert (kit.name, kit.style, kit.version) == (nfc, "two", 2)
    assert store.find(nfd) == kit


# ----------------------------------------------------------------------------- items 12, 20: damaged kits
def damage(store: kits.KitStore) -> dict[str, str]:
    """Five damaged kit files beside one good kit; their file names."""
    store.save(kits.make_kit("Good", style="fine"))
    truncated = store.path_for("Truncated")
    truncated.write_text('{"format": 1, "name": "Trunc')
    string_refs = store.path_for("Stringy")
    string_refs.write_text(json.dumps({"name": "Stringy", "reference_ids": "abc"}))
    a_list = store.path_for("Listy")
    a_list.write_text("[1, 2]")
    zero = store.path_for("Zero")
    zero.symlink_to("/dev/zero")
    store.save(kits.make_kit("Original"))
    renamed = store.path_for("Original")
    renamed.write_text(renamed.read_text().replace('"Original"', '"Other name"'))
    return {"truncated": truncated.name, "string_refs": string_refs.name, "list": a_list.name,
            "zero": zero.name}


def test_damaged_kit_files_are_listed_as_damaged_and_never_hide_the_good_ones(store):
    files = damage(store)
    found, damaged = store.scan()
    assert [k.name for k in found] == ["Good", "Other name"]
    reasons = {d.path.name: d.reason for d in damaged}
    assert set(reasons) == set(files.values())
    assert "not valid JSON" in reasons[files["truncated"]]
    assert "reference_ids is not a list of strings" in reasons[files["string_refs"]]
    assert "JSON list, not a kit's object" in reasons[files["list"]]
    assert "not a regular file" in reasons[files["zero"]]
    assert all("brand-kit delete" in d.describe() for d in damaged)


def test_every_damaged_kit_can_be_deleted_by_name_or_file_name_and_set_replaces_one(store):
    files = damage(store)
    assert store.delete("Truncated")                  # by the kit's name: its own file
    assert store.delete("Stringy")                    # a damaged file that still names the kit
    assert store.delete(files["list"])                # by the file name `list` shows
    assert store.delete(files["zero"]) and os.path.exists("/dev/zero")  # the link, not its target
    assert store.delete("Other name")                 # renamed inside its file
    assert store.scan() == ([store.find("Good")], [])
    store.path_for("Truncated").write_text("{")
    assert store.save(kits.make_kit("Truncated", style="fixed")).version == 1
    assert [k.name for k in store.list()] == ["Good", "Truncated"]


def test_kits_as_a_regular_file_is_one_clear_line(store):
    store.folder.parent.mkdir(parents=True)
    store.folder.write_text("oops")
    found, [damaged] = store.scan()
    assert found == [] and "is a file where the folder of brand kits should be" in damaged.reason
    with pytest.raises(StateFileError, match="should be the folder of brand kits but is a file"):
        store.save(kits.make_kit("Acme"))


def test_cli_lists_damaged_kits_exits_non_zero_and_deletes_them(tmp_path, ragkit_env, monkeypatch, capsys):
    store = kits.KitStore(tmp_path / "data")
    files = damage(store)
    code, out, err = run(["brand-kit", "list"], ragkit_env, monkeypatch, capsys)
    assert code == 1 and "Good" in out and "Other name" in out
    for name in files.values():
        assert f"damaged: {name}" in err
    code, out, err = run(["brand-kit", "list", "--json"], ragkit_env, monkeypatch, capsys)
    assert code == 1 and len(json.loads(out)["damaged"]) == 4
    code, _, err = run(["brand-kit", "delete", files["truncated"]], ragkit_env, monkeypatch, capsys)
    assert code == 0 and f"deleted the damaged brand kit file {files['truncated']}" in err
    code, _, err = run(["brand-kit", "delete", "Other name"], ragkit_env, monkeypatch, capsys)
    assert code == 0 and "deleted brand kit 'Other name'" in err
    code, _, err = run(["brand-kit", "set", "Stringy", "--style", "mended"], ragkit_env, monkeypatch, capsys)
    assert code == 0 and "saved brand kit 'Stringy', version 1" in err
    for name in (files["list"], files["zero"]):
        assert run(["brand-kit", "delete", name], ragkit_env, monkeypatch, capsys)[0] == 0
    code, out, err = run(["brand-kit", "list"], ragkit_env, monkeypatch, capsys)
    assert code == 0 and "damaged" not in err and "Good" in out and "Stringy" in out


# ----------------------------------------------------------------------------- items 13, 19, 20: the model record
@pytest.mark.parametrize("content, reason", [
    ('{"active": {"model": 5, "pretrained": 7}}', "active.model is int 5, not a string"),  # was AttributeError
    ('{"active": ["ViT-B-32"]}', "its 'active' entry is not an object"),
    ('["active"]', "it holds a JSON list, not an object"),
    ('{"active": {"model": "ViT-B-32", "pretrained": "x"}, "reindex": {"model": "a", "pretrained": "b", '
     '"from": "c", "started_at": "yesterday"}}', "reindex.started_at is not a whole number"),
    ("[" * 50_000, "nested too deeply"),                                                   # was RecursionError
])
def test_a_damaged_model_record_is_one_clear_line(tmp_path, ragkit_env, monkeypatch, capsys, content, reason):
    data = tmp_path / "data"
    data.mkdir()
    (data / "model.json").write_text(content)
    code, _, err = run(["stats"], ragkit_env, monkeypatch, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert f"{data / 'model.json'}" in err and reason in err and "restore it from a backup, or delete it" in err
    assert "unexpected" not in err


def test_a_model_record_linked_to_a_device_is_refused_not_read(tmp_path, ragkit_env, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "model.json").symlink_to("/dev/zero")
    code, _, err = run(["stats"], ragkit_env, monkeypatch, capsys)
    assert code == 1 and "is not a regular file" in err and "unexpected" not in err


def test_a_data_folder_that_is_a_regular_file_is_named_as_such(tmp_path, ragkit_env, monkeypatch, capsys):
    (tmp_path / "data").write_text("not a folder")
    for command in (["stats"], ["brand-kit", "list"]):
        code, _, err = run(command, ragkit_env, monkeypatch, capsys)
        assert code == 1 and f"RAGKIT_DATA_DIR={tmp_path / 'data'} is a file, not a folder" in err, err
        assert "model.json" not in err
