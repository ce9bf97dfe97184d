"""The one owner of collection names: one collection per embedding model and schema version.

Milvus names allow [A-Za-z0-9_]; every ragkit collection starts with PREFIX, so a shared server's
other collections are never taken for ours.
"""
from __future__ import annotations

import hashlib
import re

PREFIX = "ragkit_"


def base_name(model_id: str) -> str:
    """The model's collection (schema version 1): readable and unique per model id."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", model_id.split("/")[0]).strip("_")[:40]
    digest = hashlib.sha1(model_id.encode()).hexdigest()[:10]
    return f"{PREFIX}{slug}_{digest}"


def versioned_name(base: str, version: int) -> str:
    """Version 1 kept the model's base name; later versions get their own, so both can coexist."""
    return base if version == 1 else f"{base}_s{version}"


def is_ragkit_collection(name: str) -> bool:
    return name.startswith(PREFIX)
