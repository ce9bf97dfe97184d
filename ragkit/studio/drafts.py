"""Work that survives a reload: the Studio's reference tray, brief and last few unsaved results, per person.

A browser tab's session state dies with a reload (F5) or a new tab. The Studio keeps a copy of
the work in progress on the server, under DATA_DIR/drafts/<owner>/, where <owner> is a digest of
who it belongs to (the signed-in email, or the browser: see ragkit/ui/drafts.py), never the
email or the cookie itself. The page offers it back on the next visit.

Limits, stated in the UI and the README:
* the last ``KEEP_RESULTS`` generations' images, at most ``MAX_BYTES`` in all per person
  (older results are dropped first; a single generation bigger than that is not kept);
* everything expires ``EXPIRY_DAYS`` after it was last changed.

Draft files are input like any upload: reads are bounded, a damaged file gives one clear line in
``Draft.problem`` and is set aside, and the page still works.
"""
from __future__ import annotations

import binascii
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.errors import StateFileError
from ragkit.ingest.images import EXTENSION_BY_MIME
from ragkit.storage.files import read_json_file
from ragkit.studio.generation import GeneratedImage, Generation

log = logging.getLogger(__name__)

KEEP_RESULTS = 3
MAX_BYTES = 40 * 1024 * 1024
EXPIRY_DAYS = 7
MAX_RECORD_BYTES = 512 * 1024   # the JSON of one person's draft (brief, tray, result records)
MAX_BRIEF = 4000
MAX_TRAY = 64
_OWNER = re.compile(r"^[0-9a-f]{32}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_RESULT_ID = re.compile(r"^[0-9a-f]{12}$")
RECORD = "draft.json"


def owner_key(identity: str) -> str:
    """The folder name for a person: a digest, so neither an email nor a cookie lands on disk."""
    return hashlib.sha256(f"ragkit-draft|{identity}".encode("utf-8")).hexdigest()[:32]


def browser_token(xsrf_cookie: str | None) -> str | None:
    """The stable part of Streamlit's XSRF cookie (``_streamlit_xsrf``), as hex, or None.

    Streamlit sets this cookie on the first page load and keeps its token for the browser's
    session; only the random mask around it changes from load to load ("2|mask|masked|time", the
    token is mask XOR masked; "1|token|…" unmasked). It is the one per-browser value a Streamlit
    app can read (st.context.cookies) without JavaScript."""
    value = (xsrf_cookie or "").strip("\"' ")
    try:
        if value.startswith("2|"):
            _, mask_hex, masked_hex, _stamp = value.split("|")
            mask, masked = binascii.a2b_hex(mask_hex), binascii.a2b_hex(masked_hex)
            if not mask or len(masked) < 8:
                return None
            return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)).hex()
        if value.startswith("1|"):
            token = value.split("|")[1]
            return token if len(token) >= 16 else None
    except (ValueError, binascii.Error):
        return None
    return None


@dataclass
class DraftResult:
    """One generation's images as kept: enough to show them again, save them or edit them."""
    id: str
    generation: Generation
    saved: dict[int, str] = field(default_factory=dict)  # image index -> library sha256
    created: float = 0.0


@dataclass
class Draft:
    brief: str = ""
    tray: list[str] = field(default_factory=list)
    results: list[DraftResult] = field(default_factory=list)  # newest first
    updated: float = 0.0
    problem: str | None = None  # a damaged draft, said once

    @property
    def empty(self) -> bool:
        return not (self.brief.strip() or self.tray or self.results)


class DraftStore:
    """Drafts under DATA_DIR/drafts, one folder per owner."""

    def __init__(self, data_dir: Path, *, max_bytes: int = MAX_BYTES, keep_results: int = KEEP_RESULTS,
                 expiry_days: float = EXPIRY_DAYS, clock=time.time) -> None:
        self.root = Path(data_dir) / "drafts"
        self.max_bytes = max_bytes
        self.keep_results = keep_results
        self.expiry_s = expiry_days * 86400
        self._clock = clock

    def _dir(self, owner: str) -> Path:
        if not _OWNER.match(owner or ""):
            raise ValueError("not a draft owner key")
        return self.root / owner

    # -- reading
    def load(self, owner: str) -> Draft:
        """This person's draft (empty when there is none, it expired, or it was damaged: then
        `problem` says so and the damaged copy is set aside, not deleted)."""
        self.expire()
        folder = self._dir(owner)
        path = folder / RECORD
        if not path.is_file():
            return Draft()
        try:
            return self._parse(folder, _read_record(path))
        except (OSError, ValueError, TypeError, KeyError, AttributeError, StateFileError) as exc:
            kept = self._set_aside(folder)
            log.warning("damaged Studio draft %s: %s", folder.name, exc)
            return Draft(problem=f"Your unsaved Studio work could not be read back ({_reason(exc)}); the page "
                                 f"starts empty{f' and the damaged copy is kept in {kept}' if kept else ''}.")

    def _parse(self, folder: Path, record: Any) -> Draft:
        if not isinstance(record, dict) or record.get("version") != 1:
            raise ValueError("unknown format")
        brief = str(record.get("brief", ""))[:MAX_BRIEF]
        tray = [s for s in record.get("tray", []) if isinstance(s, str) and _SHA.match(s)][:MAX_TRAY]
        results: list[DraftResult] = []
        budget = self.max_bytes
        for item in record.get("results", [])[: self.keep_results]:
            try:  # one damaged result never sinks the brief, the tray or the other results
                result = self._parse_result(folder, item, budget)
            except (ValueError, TypeError, KeyError, AttributeError):
                result = None
            if result is not None:
                budget -= sum(len(i.data) for i in result.generation.images)
                results.append(result)
        return Draft(brief, tray, results, float(record.get("updated", 0)))

    def _parse_result(self, folder: Path, item: Any, budget: int) -> DraftResult | None:
        """One kept result; None when its images are gone or over the budget (the others still load)."""
        if not isinstance(item, dict) or not _RESULT_ID.match(str(item.get("id", ""))):
            return None
        images = []
        for entry in item.get("images", [])[:8]:
            name, mime = str(entry.get("file", "")), str(entry.get("mime", ""))
            path = folder / name
            if mime not in EXTENSION_BY_MIME or not re.fullmatch(r"[0-9a-f]{12}-\d\.[a-z]+", name):
                return None
            try:
                size = path.stat().st_size
                if size > budget:
                    return None
                budget -= size
                images.append(GeneratedImage(path.read_bytes(), mime))
            except OSError:
                return None
        if not images:
            return None
        refs = [s for s in item.get("reference_ids", []) if isinstance(s, str) and _SHA.match(s)]
        usage = {k: int(v) for k, v in dict(item.get("usage", {})).items() if isinstance(v, (int, float))}
        generation = Generation(prompt=str(item.get("prompt", ""))[:MAX_BRIEF], model=str(item.get("model", "")),
                                images=images, text=str(item.get("text", ""))[:4000], reference_ids=refs,
                                aspect_ratio=item.get("aspect_ratio") if isinstance(item.get("aspect_ratio"), str) else None,
                                usage=usage, seconds=float(item.get("seconds", 0.0)),
                                warnings=[str(w) for w in item.get("warnings", [])][:10],
                                details=dict(item.get("details", {})) if isinstance(item.get("details"), dict) else {})
        saved = {int(k): v for k, v in dict(item.get("saved", {})).items()
                 if str(k).isdigit() and isinstance(v, str) and _SHA.match(v)}
        return DraftResult(item["id"], generation, saved, float(item.get("created", 0.0)))

    # -- writing: on the JSON record alone (a brief typed is a few hundred bytes, never a re-read of images)
    def save_work(self, owner: str, brief: str, tray: list[str]) -> None:
        """Keep the brief and the tray (the results stay as they are)."""
        record = self._record(owner)
        record["brief"], record["tray"] = brief[:MAX_BRIEF], list(dict.fromkeys(tray))[:MAX_TRAY]
        self._write(owner, record)

    def add_result(self, owner: str, generation: Generation, result_id: str | None = None) -> str | None:
        """Keep a new generation's images, newest first; the oldest go past the limits. Returns its id,
        or None when this one generation is over the size limit by itself (it is shown, not kept)."""
        size = sum(len(i.data) for i in generation.images)
        if size > self.max_bytes:
            return None
        result = DraftResult(result_id or uuid.uuid4().hex[:12], generation, {}, self._clock())
        folder = self._dir(owner)
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(generation.images):
            (folder / _image_name(result.id, index, image.mime)).write_bytes(image.data)
        record = self._record(owner)
        kept, total = [], 0
        for item in [_result_record(result), *record.get("results", [])][: self.keep_results]:
            total += _entry_bytes(item)
            if total <= self.max_bytes:
                kept.append(item)
        record["results"] = kept
        self._write(owner, record)
        return result.id

    def mark_saved(self, owner: str, result_id: str, index: int, sha256: str) -> None:
        record = self._record(owner)
        for item in record.get("results", []):
            if isinstance(item, dict) and item.get("id") == result_id:
                item.setdefault("saved", {})[str(index)] = sha256
        self._write(owner, record)

    def clear(self, owner: str) -> None:
        shutil.rmtree(self._dir(owner), ignore_errors=True)

    def expire(self) -> int:
        """Remove drafts not changed for EXPIRY_DAYS; how many went."""
        gone = 0
        if not self.root.is_dir():
            return 0
        cutoff = self._clock() - self.expiry_s
        for folder in self.root.iterdir():
            try:
                if folder.is_dir() and _OWNER.match(folder.name) and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    gone += 1
            except OSError:
                continue
        return gone

    def _record(self, owner: str) -> dict[str, Any]:
        """The raw record to change (a fresh one when there is none or it can't be read: load() says
        why, and sets the damaged one aside, when the page asks)."""
        path = self._dir(owner) / RECORD
        try:
            record = _read_record(path)
            if isinstance(record, dict) and record.get("version") == 1:
                record["results"] = [r for r in record.get("results", []) if isinstance(r, dict)]
                return record
        except (OSError, StateFileError):
            pass
        return {"version": 1, "brief": "", "tray": [], "results": []}

    def _write(self, owner: str, record: dict[str, Any]) -> None:
        folder = self._dir(owner)
        folder.mkdir(parents=True, exist_ok=True)
        record = {**record, "version": 1, "updated": self._clock()}
        temp = folder / f".{RECORD}.{os.getpid()}.tmp"
        temp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        os.replace(temp, folder / RECORD)
        os.utime(folder)  # the expiry counts from the last change
        wanted = {str(image.get("file")) for item in record["results"] for image in item.get("images", [])
                  if isinstance(image, dict)}
        for path in folder.iterdir():  # images of results that fell off the end
            if path.name not in wanted and path.name != RECORD and not path.name.startswith("."):
                path.unlink(missing_ok=True)

    def _set_aside(self, folder: Path) -> str | None:
        try:
            target = folder.with_name(f"{folder.name}.damaged-{int(self._clock())}")
            folder.rename(target)
            return target.name
        except OSError:
            return None


def _image_name(result_id: str, index: int, mime: str) -> str:
    return f"{result_id}-{index}{EXTENSION_BY_MIME.get(mime, '.png')}"


def _result_record(result: DraftResult) -> dict[str, Any]:
    g = result.generation
    return {"id": result.id, "created": result.created, "prompt": g.prompt, "model": g.model, "text": g.text,
            "reference_ids": list(g.reference_ids), "aspect_ratio": g.aspect_ratio, "usage": dict(g.usage),
            "seconds": g.seconds, "warnings": list(g.warnings), "details": _jsonable(g.details),
            "saved": {str(k): v for k, v in result.saved.items()},
            "images": [{"file": _image_name(result.id, i, img.mime), "mime": img.mime, "bytes": len(img.data)}
                       for i, img in enumerate(g.images)]}


def _entry_bytes(item: dict[str, Any]) -> int:
    """A kept result's size, as recorded (a damaged count counts as over any limit)."""
    try:
        return sum(int(image["bytes"]) for image in item.get("images", []))
    except (KeyError, TypeError, ValueError):
        return MAX_BYTES * 1024


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(details, default=str))
    except (TypeError, ValueError):
        return {}


def _read_record(path: Path) -> Any:
    """A draft's record through the bounded state-file reader (a link to a device, a pipe, deep nesting
    or an oversized file is a StateFileError, never a hang)."""
    return read_json_file(path, what="a Studio draft", fix="", max_bytes=MAX_RECORD_BYTES)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StateFileError):  # its own text names the path: say why in the page's words
        text = str(exc)
        if "not valid JSON" in text:
            return "the file is not valid JSON"
        if "larger than" in text:
            return f"it is larger than {MAX_RECORD_BYTES // 1024} KB"
        return "the file is damaged"
    if isinstance(exc, json.JSONDecodeError):
        return "the file is not valid JSON"
    return str(exc) or type(exc).__name__
