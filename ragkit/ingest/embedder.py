"""The embedding model behind a narrow interface: images -> vectors, texts -> vectors.

Wraps open_clip. Vectors are L2-normalised float32, so cosine similarity is a dot
product. The rest of ragkit never knows which architecture or weights run here; it
only sees ``dim`` and ``model_id`` (which names the collection the vectors live in).
"""
from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ragkit.config import Settings
from ragkit.errors import ModelUnavailableError
from ragkit.ingest.cpu import configure_torch
from ragkit.ingest.model_worker import BULK, QUERY, shared_worker
from ragkit.ingest.weights_cache import CACHE_FOLDER, fast_checkpoint
from ragkit.storage import collections

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "none"
# Checkpoints written by `make_random_checkpoint` carry this key so that every surface
# can say loudly that the model is not a real one, even when loaded from a file.
RANDOM_MARKER_KEY = "ragkit_random_weights"
RANDOM_SEED = 0
# Bulk image work (ingest, reindex) reaches the model in chunks of this many images, so that a
# search queued meanwhile waits for one chunk (~0.5 s for ViT-B-32 on 2 cores), not a whole batch.
BULK_CHUNK = 8
_CONFIG_DIR = Path(__file__).with_name("model_configs")
_configs_registered = False


def _register_bundled_configs() -> None:
    """Make ragkit's own small architectures (e.g. ``ragkit-tiny``) known to open_clip."""
    global _configs_registered
    if not _configs_registered:
        configure_torch()  # before open_clip imports torch: OpenMP reads its waiting policy then
        import open_clip
        open_clip.add_model_config(_CONFIG_DIR)
        _configs_registered = True


def resolve_device(requested: str) -> str:
    configure_torch()
    import torch
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _checkpoint_is_random(path: str) -> bool:
    if path.endswith((".safetensors", ".npz", ".npy")):
        return False
    marked = peek_random_marker(path)
    if marked is not None:
        return marked
    configure_torch()
    import torch
    try:
        # mmap keeps this cheap even for a 600 MB checkpoint: only the dict keys are read.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any format we can't peek into is simply not ours
        return False
    return isinstance(checkpoint, dict) and bool(checkpoint.get(RANDOM_MARKER_KEY, False))


class _PeekUnpickler(pickle.Unpickler):
    """Reads a torch checkpoint's top-level structure without torch: tensors come back as None."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        return _nothing

    def persistent_load(self, pid):
        return None


def _nothing(*args, **kwargs):
    return None


def peek_random_marker(path: str) -> bool | None:
    """Whether a torch zip checkpoint carries RANDOM_MARKER_KEY, read without importing torch
    (`stats` and the pages must not pay seconds of torch import for it). None: can't tell here."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                return None
            with archive.open(names[0]) as stream:
                checkpoint = _PeekUnpickler(stream).load()
    except Exception:  # noqa: BLE001 - not a zip checkpoint, or an unusual pickle: torch decides
        return None
    return isinstance(checkpoint, dict) and bool(checkpoint.get(RANDOM_MARKER_KEY, False))


def _is_checkpoint_path(pretrained: str) -> bool:
    return os.path.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors", ".npz"))


def weights_are_random(pretrained: str) -> bool:
    """True for `none` and for checkpoints saved by make_random_checkpoint (cheap: no model load)."""
    if pretrained.lower() == RANDOM_WEIGHTS:
        return True
    return _is_checkpoint_path(pretrained) and os.path.isfile(pretrained) and _checkpoint_is_random(pretrained)


def model_identity(model_name: str, pretrained: str) -> str:
    """A stable name for 'these weights on this architecture' (independent of file location)."""
    if pretrained.lower() == RANDOM_WEIGHTS:
        return f"{model_name}/random-seed{RANDOM_SEED}"
    if _is_checkpoint_path(pretrained):
        return f"{model_name}/file:{Path(pretrained).name}"
    return f"{model_name}/{pretrained}"


def unknown_architecture(model_name: str) -> ModelUnavailableError:
    """The one message for an architecture open_clip doesn't know."""
    return ModelUnavailableError(
        f"Unknown CLIP architecture {model_name!r}. Set RAGKIT_CLIP_MODEL to an open_clip model name such as "
        "ViT-B-32 (python -c 'import open_clip; print(open_clip.list_models())').")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Can we reach the model hub? Answered in seconds, instead of the minute of retries
    huggingface_hub spends before giving up on an air-gapped machine."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy decides; let the download try
    from urllib.parse import urlsplit
    host = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_checkpoint(model_name: str, tag: str) -> tuple[str, dict]:
    """The cached checkpoint of a pretrained tag, for when the hub can't be reached."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache
    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    repo, filename = os.path.split(cfg.get("hf_hub", ""))
    candidates = [f for f in (filename, "open_clip_model.safetensors", "open_clip_pytorch_model.bin") if f]
    for candidate in dict.fromkeys(candidates):
        cached = try_to_load_from_cache(repo, candidate) if repo else None
        if isinstance(cached, str):
            return cached, cfg
    raise ModelUnavailableError(
        f"Cannot download the {model_name} weights {tag!r}: the model hub is not reachable from this "
        "machine and they are not in the local cache. Download the checkpoint where there is network "
        f"(e.g. open_clip_pytorch_model.bin from https://huggingface.co/{repo or '<model repo>'}), copy it "
        "here and set RAGKIT_CLIP_PRETRAINED=/path/to/that/file.")


def _text_tower_trims(model) -> bool:
    """Can the text transformer stop after the pooled token without changing the embedding?

    True for open_clip's ``CLIP`` class (its own ``encode_text``) with a causal attention mask
    and pooling at the end-of-text token (``argmax`` or ``eos``): position i then only sees
    positions <= i, and the embedding is read at the end-of-text token, so the padding after
    the longest text's end-of-text token cannot change it. Anything else (CustomTextCLIP and
    Hugging Face towers, SigLIP's 'last' pooling, a bidirectional mask) runs the full context.
    """
    import torch
    try:
        from open_clip.model import CLIP
    except ImportError:  # pragma: no cover - open_clip always has it
        return False
    if not isinstance(model, CLIP) or type(model).encode_text is not CLIP.encode_text:
        return False
    pool = getattr(model, "text_pool_type", None)
    if pool not in ("argmax", "eos") or (pool == "eos" and getattr(model, "text_eos_id", None) is None):
        return False
    mask = getattr(model, "attn_mask", None)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    size = mask.shape[0]
    causal = torch.full((size, size), float("-inf"), dtype=mask.dtype, device=mask.device).triu(1)
    return torch.equal(mask, causal) and model.positional_embedding.shape[0] == size


@dataclass(frozen=True)
class ModelDescription:
    model_name: str
    pretrained: str
    model_id: str
    dim: int
    device: str
    random_weights: bool


class ClipEmbedder:
    """An open_clip model loaded once; thread-safe encode calls."""

    def __init__(self, model_name: str, pretrained: str, device: str = "auto",
                 cache_dir: Path | None = None) -> None:
        """cache_dir: where a fast-loading copy of a .pt/.bin checkpoint is kept (weights_cache)."""
        _register_bundled_configs()
        import open_clip
        import torch

        self.device = resolve_device(device)
        self.model_name = model_name
        self.pretrained = pretrained
        self.model_id = model_identity(model_name, pretrained)
        if model_name not in open_clip.list_models():
            raise unknown_architecture(model_name)
        if _is_checkpoint_path(pretrained) and not os.path.isfile(pretrained):
            raise ModelUnavailableError(
                f"RAGKIT_CLIP_PRETRAINED points at {pretrained}, which is not a file. "
                "Give the path of an open_clip checkpoint (.pt/.bin/.safetensors).")
        self.random_weights = weights_are_random(pretrained)
        # A fixed seed makes random weights identical in every process (the CLI that
        # ingested and the app that searches must build the same model).
        load_from: str | None = None if pretrained.lower() == RANDOM_WEIGHTS else pretrained
        preprocess_overrides: dict = {}
        if load_from and not _is_checkpoint_path(load_from) and open_clip.get_pretrained_cfg(model_name, load_from) \
                and not _hub_reachable():
            load_from, tag_cfg = _offline_checkpoint(model_name, load_from)
            # Loading by path skips the tag's preprocessing settings; pass them on explicitly.
            preprocess_overrides = {f"image_{k}": tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode")
                                    if tag_cfg.get(k) is not None}
        if load_from and _is_checkpoint_path(load_from):
            load_from = fast_checkpoint(load_from, cache_dir)
        torch.manual_seed(RANDOM_SEED)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=load_from, device=self.device, **preprocess_overrides)
        except AssertionError as exc:  # open_clip asserts while resizing a tower of another width
            raise _misfit(model_name, load_from, exc) from None
        except RuntimeError as exc:
            if _is_checkpoint_path(str(load_from)) and "size mismatch" in str(exc):
                raise _misfit(model_name, load_from, exc) from None
            if "download" in str(exc).lower() or "not a known tag" in str(exc):
                raise ModelUnavailableError(
                    f"Cannot load the {model_name} weights {pretrained!r}: {exc}. Without network access, "
                    "download the checkpoint on a machine that has it (e.g. open_clip_pytorch_model.bin from "
                    f"the model's Hugging Face page) and set RAGKIT_CLIP_PRETRAINED=/path/to/that/file.") from None
            raise ModelUnavailableError(f"Cannot load CLIP model {model_name} with {pretrained!r}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"Cannot load CLIP weights {pretrained!r} for {model_name}: {exc}. Check that the file is an "
                "open_clip checkpoint for this architecture (RAGKIT_CLIP_MODEL).") from None
        model.eval()
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self._lock = threading.Lock()
        self._worker = shared_worker()
        self.image_size = int(getattr(model.visual, "image_size", (224, 224))[0]
                              if isinstance(getattr(model.visual, "image_size", 224), (tuple, list))
                              else getattr(model.visual, "image_size", 224))
        with torch.inference_mode():
            probe = model.encode_text(self._tokenizer(["probe"]).to(self.device))
        self.dim = int(probe.shape[-1])
        self.trims_text = _text_tower_trims(model)

    @classmethod
    def from_settings(cls, settings: Settings) -> "ClipEmbedder":
        return cls(settings.clip_model, settings.clip_pretrained, settings.device,
                   cache_dir=Path(settings.data_dir) / CACHE_FOLDER)

    def describe(self) -> ModelDescription:
        return ModelDescription(self.model_name, self.pretrained, self.model_id, self.dim,
                                self.device, self.random_weights)

    @property
    def collection_name(self) -> str:
        return collections.base_name(self.model_id)

    def preprocess(self, image) -> "torch.Tensor":  # noqa: F821 - torch imported lazily
        """PIL RGB image -> model input tensor (runs in ingest worker threads)."""
        return self._preprocess(image)

    def embed_tensors(self, batch, *, priority: int = BULK) -> np.ndarray:
        """Preprocessed images -> unit vectors, on the process's model worker (model_worker).
        Bulk work is cut into chunks of BULK_CHUNK so a search waits for one chunk at most."""
        if priority != BULK or len(batch) <= BULK_CHUNK:
            return self._worker.call(lambda: self._forward_images(batch), priority=priority)
        futures = [self._worker.submit(lambda part=batch[i:i + BULK_CHUNK]: self._forward_images(part),
                                       priority=priority) for i in range(0, len(batch), BULK_CHUNK)]
        return np.concatenate([future.result() for future in futures])

    def _forward_images(self, batch) -> np.ndarray:
        import torch
        with self._lock, torch.inference_mode():
            features = self._model.encode_image(batch.to(self.device))
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def embed_images(self, images: Sequence, *, priority: int = QUERY) -> np.ndarray:
        import torch
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_tensors(torch.stack([self.preprocess(img) for img in images]), priority=priority)

    def embed_texts(self, texts: Sequence[str], *, trim: bool = True, priority: int = QUERY) -> np.ndarray:
        """Texts -> unit vectors. The text transformer runs only up to the longest text's
        end-of-text token when that gives the same vectors (see _text_tower_trims): a query of
        a few words costs ~10 of the 77 positions. trim=False runs all positions (the reference).
        Queries from several sessions waiting at once share one forward (model_worker)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._worker.call_batch((id(self), trim), lambda batch: self._forward_texts(batch, trim),
                                       list(texts), priority=priority)
        return np.stack(rows).astype(np.float32, copy=False)

    def _forward_texts(self, texts: list[str], trim: bool) -> np.ndarray:
        import torch
        with self._lock, torch.inference_mode():
            tokens = self._tokenizer(list(texts)).to(self.device)
            if trim and self.trims_text:
                features = self._encode_text_trimmed(tokens)
            else:
                features = self._model.encode_text(tokens)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def _encode_text_trimmed(self, tokens):
        """CLIP.encode_text (open_clip 3.x) on the positions up to the last pooled token."""
        import torch
        from open_clip.transformer import text_global_pool
        model = self._model
        pool, eos = model.text_pool_type, model.text_eos_id
        ends = tokens.argmax(dim=-1) if pool == "argmax" else (tokens == eos).int().argmax(dim=-1)
        length = int(ends.max()) + 1
        if length >= tokens.shape[1]:
            return model.encode_text(tokens)
        tokens = tokens[:, :length]
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens).to(cast_dtype)
        x = x + model.positional_embedding[:length].to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        x = model.ln_final(x)
        x = text_global_pool(x, tokens, pool, eos_token_id=eos)
        if model.text_projection is not None:
            if isinstance(model.text_projection, torch.nn.Linear):
                x = model.text_projection(x)
            else:
                x = x @ model.text_projection
        return x


def _misfit(model_name: str, path: str, exc: BaseException) -> ModelUnavailableError:
    """A checkpoint saved for another architecture: say so, naming the file and both sizes we can read."""
    found, wanted = _checkpoint_embed_dim(path), _config_embed_dim(model_name)
    sizes = (f" (the file holds {found}-d embeddings; {model_name} makes {wanted}-d ones)"
             if found and wanted and found != wanted else "")
    return ModelUnavailableError(
        f"The checkpoint {path} does not fit the architecture {model_name}: it was saved for another "
        f"open_clip model{sizes}. Give the architecture the file was made for (--model / RAGKIT_CLIP_MODEL), "
        f"or a checkpoint of {model_name} (--pretrained / RAGKIT_CLIP_PRETRAINED).")


def _checkpoint_embed_dim(path: str) -> int | None:
    import torch
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else {}
        projection = next(v for k, v in state.items() if k.removeprefix("module.") == "text_projection")
        return int(projection.shape[-1])
    except Exception:  # noqa: BLE001 - only a detail of the message
        return None


def _config_embed_dim(model_name: str) -> int | None:
    import open_clip
    config = open_clip.get_model_config(model_name) or {}
    return config.get("embed_dim")


def make_random_checkpoint(model_name: str, path: Path) -> Path:
    """Save a deterministic random-weight checkpoint, marked as such (tests, benchmarks, demos)."""
    _register_bundled_configs()
    import open_clip
    import torch
    torch.manual_seed(RANDOM_SEED)
    model = open_clip.create_model(model_name, pretrained=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), RANDOM_MARKER_KEY: True}, path)
    return path
