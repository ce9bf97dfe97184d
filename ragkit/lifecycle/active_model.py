"""Which embedding model a library uses: recorded in the library itself, not only in the environment.

The record is a small JSON file in the library's data folder, ``RAGKIT_DATA_DIR/model.json``,
replaced atomically (a temp file renamed over it) whenever it changes:

    {"active":  {"model": "ViT-B-16", "pretrained": "/models/b16.bin", "model_id": "ViT-B-16/file:b16.bin",
                 "since": 1764669600},
     "reindex": {"model": "...", "pretrained": "...", "model_id": "...", "from": "<the active model_id>",
                 "started_at": 1764669000, "done": 1200, "total": 3000, "updated_at": 1764669590}}

Why a file there rather than Milvus collection properties: every process of a library already
shares that folder (it holds the originals; README › Team mode), so they all see one record; it
can be read without a database round trip and before the model is known (opening a library needs
the model to name its collection); and one atomic rename switches the model, where properties would
be spread over one collection per model (the "active" one found by comparing marks on each, changed
by two writes that are not atomic together). The collections still carry what belongs to them
(model, schema, complete, superseded: ragkit.storage.schema).

Precedence, the one rule:
1. The recorded active model is the library's model, whatever RAGKIT_CLIP_MODEL says.
2. RAGKIT_CLIP_MODEL / RAGKIT_CLIP_PRETRAINED choose the model of a *new* library, recorded once
   its collection holds a vector (not at its first open: a first upload that fails for want of
   weights must not pin the library to them). An empty library follows the configured model. When they name the recorded model, RAGKIT_CLIP_PRETRAINED is where its weights are
   on this machine (a checkpoint may sit in another folder on each machine; a model is identified by
   its architecture and the file's name). When they name another model, `stats` and the sidebar say
   so: `python -m ragkit reindex` is how a library changes model.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ragkit.storage.blobs import write_atomic
from ragkit.storage.files import read_json_file
from ragkit.config import Settings
from ragkit.ingest.embedder import _is_checkpoint_path, model_identity
from ragkit.errors import ConfigError, ModelMismatchError, ModelUnavailableError

RECORD_NAME = "model.json"
STALLED_SECONDS = 120  # a reindex that has not reported progress for this long was probably stopped


@dataclass(frozen=True)
class ModelChoice:
    """An open_clip architecture and its weights (a pretrained tag, a checkpoint path, or none)."""
    model: str
    pretrained: str

    @property
    def model_id(self) -> str:
        return model_identity(self.model, self.pretrained)

    def to_dict(self) -> dict:
        return {"model": self.model, "pretrained": self.pretrained, "model_id": self.model_id}


def choice(model: str, pretrained: str) -> ModelChoice:
    """A model as a person names it; a checkpoint path made absolute, so that every process finds it."""
    pretrained = pretrained.strip()
    if _is_checkpoint_path(pretrained):
        pretrained = os.path.abspath(os.path.expanduser(pretrained))
    return ModelChoice(model.strip(), pretrained)


@dataclass(frozen=True)
class ReindexState:
    """A reindex started and not finished (running, or stopped: run it again to resume)."""
    target: ModelChoice
    source_id: str
    started_at: int
    done: int = 0
    total: int = 0
    updated_at: int = 0

    @property
    def stalled(self) -> bool:
        return time.time() - max(self.updated_at, self.started_at) > STALLED_SECONDS

    def to_dict(self) -> dict:
        return {**self.target.to_dict(), "from": self.source_id, "started_at": self.started_at,
                "done": self.done, "total": self.total, "updated_at": self.updated_at}


@dataclass(frozen=True)
class ModelRecord:
    active: ModelChoice | None = None
    reindex: ReindexState | None = None


def record_path(data_dir: Path) -> Path:
    return Path(data_dir) / RECORD_NAME


def read_record(data_dir: Path) -> ModelRecord:
    """The library's record; an empty one for a library that has none yet."""
    path = record_path(data_dir)
    fix = ("It records which embedding model the library uses: restore it from a backup, or delete it (the "
           "library then uses RAGKIT_CLIP_MODEL / RAGKIT_CLIP_PRETRAINED).")
    check_data_folder(data_dir)
    try:
        data = read_json_file(path, what="the library's model record", fix=fix, max_bytes=64 * 1024)
    except FileNotFoundError:
        return ModelRecord()
    try:
        if not isinstance(data, dict):
            raise ValueError(f"it holds a JSON {type(data).__name__}, not an object")
        active, reindex = data.get("active"), data.get("reindex")
        return ModelRecord(
            active=_choice_from(active, "active") if active else None,
            reindex=ReindexState(_choice_from(reindex, "reindex"), _text(reindex, "from", "reindex"),
                                 _count(reindex, "started_at"), _count(reindex, "done"),
                                 _count(reindex, "total"), _count(reindex, "updated_at"))
            if reindex else None)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} can't be read ({exc}). {fix}") from None


def check_data_folder(data_dir: Path) -> None:
    """RAGKIT_DATA_DIR must be a folder (or not exist yet): a regular file there is named as such."""
    folder = Path(data_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"The data folder RAGKIT_DATA_DIR={folder} is a file, not a folder. Point "
                          "RAGKIT_DATA_DIR at a folder (ragkit creates it if it does not exist), or move the "
                          "file away.")


def _choice_from(entry: object, key: str) -> ModelChoice:
    if not isinstance(entry, dict):
        raise ValueError(f"its {key!r} entry is not an object")
    return ModelChoice(_text(entry, "model", key), _text(entry, "pretrained", key))


def _text(entry: dict, field: str, key: str) -> str:
    value = entry[field]
    if not isinstance(value, str):
        raise ValueError(f"{key}.{field} is {type(value).__name__} {value!r:.40}, not a string")
    return value


def _count(entry: dict, field: str) -> int:
    value = entry.get(field, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"reindex.{field} is not a whole number")
    return value


def _serialise(record: ModelRecord, since: int | None = None) -> bytes:
    data: dict = {}
    if record.active:
        data["active"] = {**record.active.to_dict(), "since": since or int(time.time())}
    if record.reindex:
        data["reindex"] = record.reindex.to_dict()
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_record(data_dir: Path, record: ModelRecord) -> None:
    """Replace the record atomically: a reader sees the old one or the new one, never half of one."""
    path = record_path(data_dir)
    since = None
    if path.is_file():  # keep the date the active model became active
        try:
            old = read_json_file(path, what="the model record", fix="", max_bytes=64 * 1024).get("active") or {}
            if record.active and old.get("model_id") == record.active.model_id:
                since = old.get("since")
        except (OSError, ValueError, AttributeError, ConfigError):
            pass  # a damaged old record is being replaced anyway
    write_atomic(path, _serialise(record, since))


def record_if_absent(data_dir: Path, model: ModelChoice) -> bool:
    """Record `model` as a new library's model, unless a record exists (another process was first).
    True if this call wrote it."""
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{RECORD_NAME}.{os.getpid()}.tmp")
    write_atomic(temp, _serialise(ModelRecord(active=model)))
    try:
        os.link(temp, path)  # fails if the record exists: never overwrites another process's
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: check, then rename (a narrow race, same model)
        if path.exists():
            return False
        os.replace(temp, path)
        return True
    finally:
        temp.unlink(missing_ok=True)


@dataclass(frozen=True)
class ActiveModel:
    """The model a library uses (`choice`) and what the environment names (`configured`)."""
    choice: ModelChoice
    configured: ModelChoice
    recorded: bool  # the choice comes from the library's record
    replaces: ModelChoice | None = None  # a recorded model set aside: its collection holds no vector

    @property
    def model_id(self) -> str:
        return self.choice.model_id

    @property
    def differs(self) -> bool:
        """RAGKIT_CLIP_MODEL / RAGKIT_CLIP_PRETRAINED name another model than the library's."""
        return self.configured.model_id != self.choice.model_id

    def apply(self, settings: Settings) -> Settings:
        """`settings` with the library's model in place of the configured one."""
        return replace(settings, clip_model=self.choice.model, clip_pretrained=self.choice.pretrained)

    def check_embedder(self, embedder) -> None:
        """A model handed in (tests, benchmarks) must be the library's."""
        given = getattr(embedder, "model_id", None)
        if given is not None and given != self.model_id:
            raise ModelMismatchError(
                f"This library uses the embedding model {self.model_id} (recorded in {RECORD_NAME} in its data "
                f"folder), not {given}. To change a library's model, run `python -m ragkit reindex`.")

    def check_weights(self) -> None:
        """Before loading: the recorded checkpoint must be on this machine (it may be elsewhere here)."""
        pretrained = self.choice.pretrained
        if self.recorded and _is_checkpoint_path(pretrained) and not os.path.isfile(pretrained):
            raise ModelUnavailableError(
                f"This library uses the model {self.model_id}, whose checkpoint {pretrained} is not on this "
                f"machine. Copy the file here and set RAGKIT_CLIP_MODEL={self.choice.model} and "
                f"RAGKIT_CLIP_PRETRAINED=/path/to/{Path(pretrained).name} (the same file name).")


def resolve(settings: Settings) -> ActiveModel:
    """The library's model: the recorded one, else the configured one (see the module docstring)."""
    configured = choice(settings.clip_model, settings.clip_pretrained)
    recorded = read_record(settings.data_dir).active
    if recorded is None:
        return ActiveModel(configured, configured, recorded=False)
    if recorded.model_id == configured.model_id:
        recorded = configured  # the same weights, where this machine keeps them
    return ActiveModel(recorded, configured, recorded=True)


def unpinned(active: ActiveModel) -> ActiveModel:
    """The configured model in place of a recorded one whose collection holds no vector."""
    return ActiveModel(active.configured, active.configured, recorded=False, replaces=active.choice)


def record_new_library(library) -> bool:
    """Record the model of a library that has no record yet, once its collection holds a vector
    (at an open, after an ingest). True if the library's model is recorded now.

    Only then: a first upload that fails (no weights yet) must not pin the library to a model it
    never used, or doing what the message says (set RAGKIT_CLIP_PRETRAINED, restart) would fail
    the same way. An empty library follows the configured model. This also leaves alone a library
    made by an older ragkit whose RAGKIT_CLIP_MODEL was changed (its model's collection is empty,
    another's holds the assets): setting the variable back finds them (`stats` says so)."""
    if library.store.is_empty():
        return False
    data_dir, model = library.settings.data_dir, library.active_model.choice
    stale = library.active_model.replaces
    if stale is not None and read_record(data_dir).active == stale:
        write_record(data_dir, ModelRecord(active=model))  # the record of a model that never held a vector
        return True
    return record_if_absent(data_dir, model) or read_record(data_dir).active == model


def describe(library) -> dict:
    """What `stats` adds about models: the configured one when it differs, the reindex in progress
    (done of total), and the collections of other models (model, rows)."""
    record = read_record(library.settings.data_dir)
    reindex = None
    if record.reindex is not None:
        reindex = {**record.reindex.to_dict(), "stalled": record.reindex.stalled}
    others = [{"model": c.model_id, "collection": c.name, "count": c.count, "complete": c.complete}
              for c in library.store.other_collections()]
    return {"configured_model": library.active_model.configured.model_id if library.active_model.differs else "",
            "reindex": reindex, "other_collections": others}
