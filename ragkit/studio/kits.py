"""Brand kits: a style, fixed references and words to avoid, added to every brief that uses the kit.

A kit is a name, a style text appended to every brief, up to MAX_KIT_REFERENCES library assets (logo,
palette, mascot) sent with every request after the request's own references, words to avoid (turned
into an instruction in the text), a default aspect ratio, and a version that goes up by one on every
save. Generating with a kit records its name and version in the provenance.

**Where kits live: one JSON file per kit in ``RAGKIT_DATA_DIR/kits/``, next to the blobs**, not in
Milvus. RAGKIT_DATA_DIR is already the folder every process of a library shares (the originals are
there; in team mode every app instance and CLI points at the same one), so every person sees the same
kits, and an embedded library's kits work while another process holds the Milvus Lite file. Milvus
would need a dummy vector field per collection (2.3), a collection per embedding model (kits would
vanish on a model change) and its eventual consistency for a read-your-write record; a kit is a few
hundred bytes that nobody searches by vector. Export/backup of a library's folder carries them along.

Writes are atomic (a temp file renamed into place) and serialised by an advisory lock on
``kits/.lock``. Two people editing one kit: the Studio saves with the version it opened
(optimistic concurrency), so the second save is refused with a KitConflictError that says who won and
what to do; the CLI's `brand-kit set` is last-write-wins, and the version it prints tells.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import re
import time
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ragkit.storage.blobs import write_atomic
from ragkit.errors import DiskFullError, InvalidInputError, KitConflictError, KitNotFoundError, StateFileError
from ragkit.storage.files import is_disk_full, read_json_file
from ragkit.storage.filters import validate_sha256
from ragkit.studio.models import ASPECT_RATIOS
from ragkit.studio.usability import not_usable_reason

log = logging.getLogger(__name__)

KITS_DIR = "kits"
FORMAT = 1
MAX_KIT_REFERENCES = 6   # logo, palette, mascot, ...; the model's limit is checked when a kit is used
MAX_NAME_CHARS = 60
MAX_STYLE_CHARS = 2000
MAX_AVOID = 20
MAX_AVOID_CHARS = 100
MAX_KIT_FILE_BYTES = 256 * 1024  # a kit is a few hundred bytes


@dataclass(frozen=True)
class Kit:
    name: str
    style: str = ""
    reference_ids: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    aspect: str | None = None
    version: int = 0        # 0: never saved
    updated_at: int = 0     # epoch ms of the last save
    extra: dict = field(default_factory=dict, hash=False, compare=False)  # fields of a newer ragkit, kept

    def prompt_for(self, brief: str) -> str:
        """The text sent to the model: the brief, then the kit's style and what to avoid."""
        parts = [brief.strip()]
        if self.style:
            parts.append(f"Brand style: {self.style}")
        if self.avoid:
            parts.append(f"Do not show or include: {', '.join(self.avoid)}.")
        return "\n\n".join(p for p in parts if p)

    def provenance(self) -> dict:
        """What a generated image records about the kit it was made with."""
        return {"kit": self.name, "kit_version": self.version}

    def to_dict(self) -> dict:
        return {**self.extra, "format": FORMAT, "name": self.name, "style": self.style,
                "reference_ids": list(self.reference_ids), "avoid": list(self.avoid), "aspect": self.aspect,
                "version": self.version, "updated_at": self.updated_at}


def make_kit(name: str, style: str = "", reference_ids: Iterable[str] = (), avoid: Iterable[str] = (),
             aspect: str | None = None) -> Kit:
    """A kit from what a person typed, validated (InvalidInputError says what to fix)."""
    return Kit(name=clean_name(name), style=_clean_style(style), reference_ids=_clean_references(reference_ids),
               avoid=_clean_avoid(avoid), aspect=_clean_aspect(aspect))


def clean_name(name: str) -> str:
    """A kit's name as stored: whitespace collapsed, NFC (so "Café" typed in NFC or NFD is one name)."""
    cleaned = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not cleaned:
        raise InvalidInputError("A brand kit needs a name, e.g. \"Acme summer\".")
    if len(cleaned) > MAX_NAME_CHARS or not cleaned.isprintable():
        raise InvalidInputError(f"A brand kit's name must be printable text of at most {MAX_NAME_CHARS} characters.")
    return cleaned


def name_key(name: str) -> str:
    """What makes two names the same kit: NFC, then casefold ("Straße" and "STRASSE" are one kit)."""
    return unicodedata.normalize("NFC", clean_name(name).casefold())


@dataclass(frozen=True)
class DamagedKit:
    """A kit file that can't be read: listed as damaged (with the fix), never hiding the others."""
    path: Path
    reason: str
    name: str | None = None   # the name inside, when that much could be read

    def describe(self) -> str:
        named = f" (kit {self.name!r})" if self.name else ""
        return (f"{self.path.name}{named} is damaged: {self.reason}. Remove it with `python -m ragkit brand-kit "
                f"delete {self.path.name}`, or restore it from a backup.")


def _clean_style(style: str) -> str:
    cleaned = str(style or "").strip()
    if len(cleaned) > MAX_STYLE_CHARS:
        raise InvalidInputError(f"The style text has {len(cleaned)} characters; keep it under {MAX_STYLE_CHARS}.")
    return cleaned


def _clean_references(reference_ids: Iterable[str]) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(validate_sha256(str(r).strip().lower()) for r in reference_ids))
    if len(ids) > MAX_KIT_REFERENCES:
        raise InvalidInputError(f"A brand kit holds at most {MAX_KIT_REFERENCES} reference images "
                                f"({len(ids)} given): keep the logo, palette or mascot that matter most.")
    return ids


def _clean_avoid(avoid: Iterable[str]) -> tuple[str, ...]:
    """Words to avoid: each entry may itself be a comma-separated list."""
    words = [w.strip() for entry in avoid for w in str(entry).split(",")]
    words = list(dict.fromkeys(" ".join(w.split()) for w in words if w.strip()))
    if len(words) > MAX_AVOID or any(len(w) > MAX_AVOID_CHARS or not w.isprintable() for w in words):
        raise InvalidInputError(f"Give at most {MAX_AVOID} words or phrases to avoid, each at most "
                                f"{MAX_AVOID_CHARS} printable characters.")
    return tuple(words)


def _clean_aspect(aspect: str | None) -> str | None:
    if not aspect:
        return None
    if aspect not in ASPECT_RATIOS:
        raise InvalidInputError(f"Aspect ratio {aspect!r} is not one Gemini offers; use one of "
                                f"{', '.join(ASPECT_RATIOS)}.")
    return aspect


def _kit_from_dict(data: object) -> Kit:
    """A kit from its file's JSON; InvalidInputError says what is wrong with it."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"it holds a JSON {type(data).__name__}, not a kit's object")
    known = {"format", "name", "style", "reference_ids", "avoid", "aspect", "version", "updated_at"}
    if not isinstance(data.get("name"), str):
        raise InvalidInputError("it has no name")
    for key in ("reference_ids", "avoid"):
        if not isinstance(data.get(key, []), list) or not all(isinstance(v, str) for v in data.get(key, [])):
            raise InvalidInputError(f"its {key} is not a list of strings")
    for key in ("style", "aspect"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InvalidInputError(f"its {key} is not a string")
    for key in ("version", "updated_at"):
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"its {key} is not a whole number")
    kit = make_kit(data["name"], data.get("style") or "", data.get("reference_ids", ()), data.get("avoid", ()),
                   data.get("aspect"))
    return replace(kit, version=data.get("version", 0), updated_at=data.get("updated_at", 0),
                   extra={k: v for k, v in data.items() if k not in known})


# ----------------------------------------------------------------------------- the store
class KitStore:
    """The brand kits of one library: RAGKIT_DATA_DIR/kits/*.json."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / KITS_DIR

    def path_for(self, name: str) -> Path:
        """A kit's file: derived from its name (case-insensitive), never a path a name could steer."""
        key = name_key(name)
        slug = "-".join(re.findall(r"[a-z0-9]+", key))[:40] or "kit"
        return self.folder / f"{slug}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across processes (an advisory lock; released if the process dies)."""
        self._check_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self, path: Path) -> Kit | DamagedKit | None:
        """The kit in `path`, a DamagedKit saying what is wrong with it, or None if there is no file."""
        try:
            data = read_json_file(path, what="a brand kit", fix="Remove it or restore it from a backup.",
                                  max_bytes=MAX_KIT_FILE_BYTES)
            return _kit_from_dict(data)
        except FileNotFoundError:
            return None
        except StateFileError as exc:
            return DamagedKit(path, _reason(exc, path))
        except InvalidInputError as exc:
            name = data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else None
            return DamagedKit(path, str(exc).rstrip("."), name[:MAX_NAME_CHARS] if name else None)

    def _check_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise StateFileError(f"{self.folder} should be the folder of brand kits but is a file. Move it away "
                                 "(ragkit then makes the folder), or restore the folder from a backup.")

    def scan(self) -> tuple[list[Kit], list[DamagedKit]]:
        """Every kit by name, and every damaged kit file: one bad file never hides the others."""
        if self.folder.exists() and not self.folder.is_dir():
            return [], [DamagedKit(self.folder, "it is a file where the folder of brand kits should be")]
        kits, damaged = [], []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            found = self._read(path)
            if isinstance(found, DamagedKit):
                log.warning("the brand kit file %s is damaged: %s", path, found.reason)
                damaged.append(found)
            elif found is not None:
                kits.append(found)
        return sorted(kits, key=lambda k: k.name.casefold()), damaged

    def _locate(self, name: str) -> tuple[Path, Kit] | None:
        """The file and kit of this name: its own file, else any file whose kit has the name (a file
        renamed by hand, or written by an older ragkit under another file name)."""
        key = name_key(name)
        own = self.path_for(name)
        found = self._read(own)
        if isinstance(found, Kit) and name_key(found.name) == key:
            return own, found
        for kit_path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            if kit_path != own:
                other = self._read(kit_path)
                if isinstance(other, Kit) and name_key(other.name) == key:
                    return kit_path, other
        return None

    def find(self, name: str) -> Kit | None:
        located = self._locate(name)
        return located[1] if located else None

    def damaged_file(self, name_or_file: str) -> DamagedKit | None:
        """The damaged kit file a person means: by its file name (as `brand-kit list` shows it), or by
        the kit's name (its own file, or a damaged file that still names it)."""
        _, damaged = self.scan()
        wanted = Path(str(name_or_file)).name
        for entry in damaged:
            if entry.path.name in (wanted, f"{wanted}.json"):
                return entry
        try:
            own, key = self.path_for(name_or_file), name_key(name_or_file)
        except InvalidInputError:
            return None
        return next((e for e in damaged if e.path == own or (e.name and name_key(e.name) == key)), None)

    def get(self, name: str) -> Kit:
        kit = self.find(name)
        if kit is None:
            known = ", ".join(k.name for k in self.list()) or "none yet"
            raise KitNotFoundError(f"No brand kit named {clean_name(name)!r} (kits: {known}). Create it with "
                                   "`python -m ragkit brand-kit set NAME --style TEXT` or in the Studio.")
        return kit

    def list(self) -> list[Kit]:
        """Every readable kit, by name (`scan` tells about the damaged ones too)."""
        return self.scan()[0]

    def save(self, kit: Kit, expected_version: int | None = None) -> Kit:
        """Store `kit` as the next version of its name. With `expected_version` (the version the
        editor opened; 0 for a new kit), refuse if someone saved or deleted it meanwhile.

        A name that folds to an existing kit's but is spelled otherwise ("STRASSE" when "Straße" exists)
        is refused: it would silently replace that kit. A damaged file in the kit's place is replaced."""
        with self._locked():
            located = self._locate(kit.name)
            current = located[1] if located else None
            current_version = current.version if current else 0
            if expected_version is not None and expected_version != current_version:
                raise KitConflictError(_conflict_message(kit.name, expected_version, current))
            if current is not None and current.name != kit.name:
                raise KitConflictError(
                    f"A brand kit named {current.name!r} exists, and {kit.name!r} is the same name in other "
                    f"letters or case, so saving would replace it. To change that kit, give its name exactly as "
                    f"{current.name!r}; for a new kit, choose another name.")
            saved = replace(kit, version=current_version + 1, updated_at=int(time.time() * 1000),
                            extra=current.extra if current else kit.extra)
            data = json.dumps(saved.to_dict(), ensure_ascii=False, indent=2).encode("utf-8")
            target = located[0] if located else self.path_for(kit.name)
            try:
                write_atomic(target, data)
            except OSError as exc:
                if is_disk_full(exc):
                    raise DiskFullError(f"The disk holding {self.folder} is full: the brand kit {kit.name!r} was "
                                        "not saved (its previous version is kept). Free some space and save "
                                        "again.") from None
                raise
            return saved

    def delete(self, name: str, expected_version: int | None = None) -> bool:
        """Remove a kit; False if there was none. Images made with it keep its name in their provenance.
        `name` may also be the file name of a damaged kit, as `brand-kit list` shows it."""
        with self._locked():
            located = self._locate(name) if _is_valid_name(name) else None
            if located is None:
                damaged = self.damaged_file(name)
                if damaged is None or damaged.path == self.folder:
                    return False
                damaged.path.unlink(missing_ok=True)
                return True
            path, current = located
            if expected_version is not None and expected_version != current.version:
                raise KitConflictError(_conflict_message(current.name, expected_version, current))
            path.unlink(missing_ok=True)
            return True


def _is_valid_name(name: str) -> bool:
    try:
        clean_name(name)
        return True
    except InvalidInputError:
        return False


def _reason(exc: StateFileError, path: Path) -> str:
    """A StateFileError's message without the file name and the fix (a DamagedKit adds its own)."""
    text = str(exc).replace(f"{path} (a brand kit) ", "")
    return text.split(". Remove it")[0].rstrip(".")


def _conflict_message(name: str, expected: int, current: Kit | None) -> str:
    if current is None:
        return (f"The brand kit {name!r} was deleted by someone else while you edited it. Save again to "
                "create it anew with your changes.")
    if expected == 0:
        return (f"Someone else created a brand kit named {current.name!r} meanwhile (version {current.version}). "
                "Open it to edit it, or choose another name.")
    return (f"Someone else saved the brand kit {name!r} while you edited it (now version {current.version}, "
            f"you opened version {expected}). Reload it, apply your change again and save.")


# ----------------------------------------------------------------------------- using a kit
def reference_problems(library, kit: Kit, now_ms: int | None = None) -> list[str]:
    """What stops the kit's references from being sent: deleted, in the trash, or not usable."""
    found = {asset.sha256: asset for asset in library.get_many(list(kit.reference_ids))}
    problems = []
    for sha in kit.reference_ids:
        asset = found.get(sha)
        if asset is None:
            problems.append(f"reference {sha[:12]}… was deleted from the library")
        elif asset.trashed:
            problems.append(f"reference {asset.filename} is in the trash")
        elif reason := not_usable_reason(asset, now_ms):
            problems.append(reason)
    return problems


def unusable_kit_message(library, kit: Kit | None, saving: bool = False) -> str | None:
    """The one rule "a kit's references must be usable": why they can't be sent, as one line, or None."""
    if kit is None:
        return None
    problems = reference_problems(library, kit)
    if not problems:
        return None
    return (f"The brand kit {kit.name!r} can't be {'saved' if saving else 'used'}: {'; '.join(problems)}. "
            "Replace or remove those references (Studio › Brand kits, or `python -m ragkit brand-kit set`).")


def check_usable(library, kit: Kit, saving: bool = False) -> None:
    """Refuse (InvalidInputError) a kit whose references can't be sent, saying which and why."""
    message = unusable_kit_message(library, kit, saving)
    if message:
        raise InvalidInputError(message)


def references_with_kit(reference_ids: Sequence[str], kit: Kit | None) -> list[str]:
    """A request's own references first, then the kit's (each asset once)."""
    return list(dict.fromkeys([*reference_ids, *(kit.reference_ids if kit else ())]))


def kit_store(settings) -> KitStore:
    return KitStore(settings.data_dir)
