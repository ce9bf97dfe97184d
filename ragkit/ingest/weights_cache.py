"""A memory-mapped safetensors copy of a .pt/.bin checkpoint, so weights load fast from the 2nd run on.

`torch.load` of a 605 MB ViT-B-32 `.pt` unpickles and copies every tensor (about 6 s here); a
safetensors file of the same tensors is memory-mapped and read straight into the model. The
copy lives in ``DATA_DIR/model-cache/`` and records the original's path, size and modification
time: when the original changes (a new download over the old file), the copy is rebuilt. The
original is never touched, and any trouble making the copy just means loading the original.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_FOLDER = "model-cache"
CONVERTIBLE = (".pt", ".pth", ".bin")


def _stamp(source: Path) -> dict[str, str]:
    stat = source.stat()
    return {"ragkit_source": str(source), "ragkit_size": str(stat.st_size),
            "ragkit_mtime_ns": str(stat.st_mtime_ns)}


def cached_copy_path(source: Path, cache_dir: Path) -> Path:
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:10]
    return cache_dir / f"{source.stem}-{digest}.safetensors"


def _recorded_stamp(path: Path) -> dict[str, str] | None:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # noqa: BLE001 - a damaged copy is rebuilt
        return None
    return {k: v for k, v in metadata.items() if k.startswith("ragkit_")}


def _state_dict(checkpoint):
    """The tensors open_clip would load from this checkpoint (its load_state_dict's unwrapping)."""
    import torch
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint or \
            not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return None
    if next(iter(checkpoint)).startswith("module"):
        checkpoint = {k[7:]: v for k, v in checkpoint.items()}
    return checkpoint


def fast_checkpoint(pretrained: str, cache_dir: Path | None) -> str:
    """The file to load `pretrained` from: its up-to-date safetensors copy (made now if needed),
    or `pretrained` itself (not a .pt/.bin, no cache folder, or the copy could not be made)."""
    if cache_dir is None or not pretrained.endswith(CONVERTIBLE) or not os.path.isfile(pretrained):
        return pretrained
    if importlib.util.find_spec("safetensors") is None:  # pragma: no cover - requirements.txt has it
        return pretrained
    source = Path(pretrained).resolve()
    target = cached_copy_path(source, Path(cache_dir))
    stamp = _stamp(source)
    if target.is_file() and _recorded_stamp(target) == stamp:
        return str(target)
    try:
        _write_copy(source, target, stamp)
    except Exception as exc:  # noqa: BLE001 - the original still loads, only slower
        log.warning("could not make a fast-loading copy of %s in %s (%s); loading the original",
                    source.name, target.parent, exc)
        return pretrained
    return str(target) if target.is_file() else pretrained


def _write_copy(source: Path, target: Path, stamp: dict[str, str]) -> None:
    import torch
    from safetensors.torch import save_file
    checkpoint = torch.load(str(source), map_location="cpu", weights_only=True, mmap=True)
    tensors = _state_dict(checkpoint)
    if tensors is None:
        log.info("%s is not a plain state dict; it is loaded as is", source.name)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        # clone: safetensors refuses tensors that share storage; contiguous: it stores raw bytes
        save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(partial), metadata=stamp)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("made a fast-loading copy of %s: %s", source.name, target)
