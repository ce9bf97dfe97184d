"""Edit an image by talking to the model about it, the way people use Nano Banana.

An ``EditSession`` starts from one image: a Studio result (saved or not) or any library asset.
Each instruction ("make the background blue") is one turn of a google-genai chat
(``client.chats.create`` / ``chat.send_message``): the first turn sends the image with the
instruction, later turns only the instruction, and the model edits its own last picture. The
chat sends the whole conversation back each time, with the model's parts exactly as they came,
so the thought signatures the 3.x image models put on them travel from turn to turn (without
them the API refuses the follow-up with 400 INVALID_ARGUMENT).

Every turn that returns an image adds a version. "Save this version" stores it in the library
with provenance pointing to its parent (the version it was edited from: its sha256, whether
that one is in the library, the instruction, the model) and the chain back to the original, so
the Library's details can say "edited from …" all the way back (``lineage``).

Errors are the generator's: typed, scrubbed of the key (``ImageGenerator.request`` / ``read``).
A failed turn leaves the conversation as it was: the chat records a turn only when it succeeded,
and a turn without an image is not kept either.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from google.genai import types

from ragkit.errors import GenerationError
from ragkit.records import Asset
from ragkit.studio.cost import prices_for, record_generation
from ragkit.ingest.pipeline import Provenance
from ragkit.studio.generation import GeneratedImage, ImageGenerator
from ragkit.studio.models import model_info
from ragkit.studio.references import load_references
from ragkit.studio.results import file_name_for

EDIT_KEY = "edited_from"  # the provenance details key of a saved version
MAX_INSTRUCTION = 2000
MAX_TURNS = 30  # a conversation resends every image so far: past this, start again from a version
MAX_LINEAGE = 50


@dataclass
class EditVersion:
    """One picture of the conversation: the original (number 0) or the answer to one instruction."""
    image: GeneratedImage
    instruction: str = ""       # what was asked to get it ("" for the original)
    text: str = ""              # the model's words with it
    saved_sha: str | None = None  # the library asset it is (the original asset, or once saved)
    cost_usd: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image.data).hexdigest()


@dataclass
class EditSession:
    """A conversation with one model about one image; `versions[0]` is the image it started from."""
    model: str
    versions: list[EditVersion]
    origin_label: str                  # what the original is, for people ("the Studio result of …")
    origin_prompt: str = ""            # the brief the original was made from, if known
    history: list[types.Content] = field(default_factory=list)  # the chat's curated history
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def original(self) -> EditVersion:
        return self.versions[0]

    @property
    def latest(self) -> EditVersion:
        return self.versions[-1]

    def parent_of(self, index: int) -> EditVersion:
        return self.versions[max(0, index - 1)]

    def signatures(self) -> int:
        """How many thought signatures the conversation carries (shown as a check that they travel)."""
        return sum(1 for content in self.history for part in (content.parts or []) if part.thought_signature)


@dataclass(frozen=True)
class LineageStep:
    """One link of an asset's chain back to its original."""
    sha256: str
    instruction: str      # what made this one from the next step ("" for the original)
    in_library: bool
    label: str            # the asset's file name, or what it was


# ----------------------------------------------------------------------------- starting
def start_from_image(image: GeneratedImage, model: str, *, saved_sha: str | None = None, prompt: str = "",
                     label: str = "") -> EditSession:
    """An edit session on a picture in hand (a Studio result: `saved_sha` when it was saved)."""
    origin = EditVersion(image, saved_sha=saved_sha)
    return EditSession(model=model, versions=[origin], origin_prompt=prompt,
                       origin_label=label or (f"a Studio result of “{prompt[:80]}”" if prompt else "an image"))


def start_from_asset(library, sha256: str, model: str) -> EditSession:
    """An edit session on a library asset (generated or uploaded), read like a reference (shrunk, in
    a format Gemini takes; rights are the reference rule's: an asset barred as a reference is refused)."""
    reference = load_references(library, [sha256])[0]
    asset = library.get(sha256)
    return start_from_image(GeneratedImage(reference.data, reference.mime), model, saved_sha=sha256,
                            prompt=asset.prompt or "", label=asset.filename)


# ----------------------------------------------------------------------------- a turn
def send_edit(library, generator: ImageGenerator, session: EditSession, instruction: str) -> EditVersion:
    """Send one instruction; the new version (also appended to the session). Costs go to the ledger."""
    text = " ".join((instruction or "").split())
    if not text:
        raise GenerationError("Say what to change, e.g. “make the background blue” or “remove the logo”.")
    if len(text) > MAX_INSTRUCTION:
        raise GenerationError(f"That instruction is {len(text):,} characters; keep it under {MAX_INSTRUCTION:,}.")
    if len(session.versions) > MAX_TURNS:
        raise GenerationError(f"This conversation has {MAX_TURNS} edits, and each one resends them all. Save the "
                              "version you like and edit it in a new conversation.")
    prices = prices_for(library.settings)  # a malformed RAGKIT_PRICES stops here, before anything is paid
    info = model_info(session.model)
    config = types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    chat = generator.chat(info, config, session.history)
    first = not session.history
    message: list[Any] = [text]
    if first:  # the picture goes in once; later turns edit the model's own last picture
        message = [types.Part.from_bytes(data=session.original.image.data, mime_type=session.original.image.mime),
                   text]
    started = time.monotonic()
    response = generator.request(info, lambda: chat.send_message(message))
    answer = generator.read(response, info)  # no image: a typed error, and the turn is not kept
    cost = record_generation(library.settings, prices, info.id, answer.usage, source="edit")
    version = EditVersion(answer.images[0], instruction=text, text=answer.text, cost_usd=cost,
                          usage=dict(answer.usage), seconds=time.monotonic() - started)
    session.history = list(chat.get_history(curated=True))
    session.versions.append(version)
    return version


# ----------------------------------------------------------------------------- saving
def save_version(library, session: EditSession, index: int, tags: Iterable[str] = ()) -> Asset:
    """Store version `index` with provenance pointing to its parent and the chain back to the original."""
    if not 0 <= index < len(session.versions):
        raise GenerationError(f"There is no version {index} in this edit (it has {len(session.versions)}).")
    version = session.versions[index]
    if version.saved_sha:
        return library.get(version.saved_sha)
    parent = session.parent_of(index)
    steps = [{"sha256": v.saved_sha or v.sha256, "instruction": v.instruction, "saved": bool(v.saved_sha)}
             for v in reversed(session.versions[:index])]  # parent first, original last
    details = {EDIT_KEY: {
        "parent": parent.saved_sha or parent.sha256, "parent_saved": bool(parent.saved_sha),
        "instruction": version.instruction, "model": session.model, "step": index,
        "origin": session.original.saved_sha or session.original.sha256, "origin_label": session.origin_label,
        "steps": steps}}
    if version.cost_usd is not None:
        details["cost_usd"] = version.cost_usd
    if version.usage:
        details["usage"] = dict(version.usage)
    provenance = Provenance(version.instruction, session.model, (parent.saved_sha or parent.sha256,),
                            details=details)
    asset = library.save_generated(version.image.data, version.image.mime, provenance, tags=tags,
                                   name=file_name_for(f"edit {version.instruction}", index - 1, version.image.mime))
    version.saved_sha = asset.sha256
    return asset


# ----------------------------------------------------------------------------- lineage
def edit_record(asset: Asset) -> dict[str, Any] | None:
    """The edit provenance of a saved version, or None (not an edit, or an unreadable record)."""
    record = (asset.details or {}).get(EDIT_KEY) if isinstance(asset.details, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("parent"), str):
        return None
    return record


def lineage(library, asset: Asset) -> list[LineageStep]:
    """The chain from `asset` back to its original: the asset itself first, the original last.

    Parents in the library are followed through their own records (a parent saved later still
    counts); unsaved steps come from the chain the version recorded when it was saved. Bounded,
    and a loop in damaged records stops the walk."""
    record = edit_record(asset)
    if record is None:
        return []
    chain = [LineageStep(asset.sha256, str(record.get("instruction", "")), True, asset.filename)]
    steps = [s for s in record.get("steps", []) if isinstance(s, dict) and isinstance(s.get("sha256"), str)]
    if not steps:
        steps = [{"sha256": record["parent"], "instruction": ""}]
    found = {a.sha256: a for a in library.get_many([s["sha256"] for s in steps[:MAX_LINEAGE]])}
    seen = {asset.sha256}
    for step in steps[:MAX_LINEAGE]:
        sha = step["sha256"]
        if sha in seen:
            break
        seen.add(sha)
        known = found.get(sha)
        is_origin = sha == record.get("origin")
        label = known.filename if known else (str(record.get("origin_label", "the original")) if is_origin
                                              else "an unsaved version")
        chain.append(LineageStep(sha, str(step.get("instruction", "")), known is not None, label))
    return chain


def lineage_lines(chain: list[LineageStep]) -> list[str]:
    """The chain as sentences: "edited from X by “…”", back to the original."""
    lines = []
    for child, parent in zip(chain, chain[1:]):
        where = parent.label if parent.in_library else f"{parent.label} (not in the library)"
        lines.append(f"{child.label if child is chain[0] else 'which was'} edited from {where} by “{child.instruction}”")
    return lines
