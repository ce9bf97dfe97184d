"""Libraries in states a test needs to start from."""
from __future__ import annotations

import numpy as np

from ragkit.config import Settings
from ragkit.ingest.embedder import model_identity
from ragkit.storage.collections import base_name as collection_name_for
from ragkit.records import Asset
from ragkit.storage.connection import connect, disconnect
from ragkit.storage.store import AssetStore


def old_library(settings: Settings, dim: int, rows: int = 40) -> tuple[list[Asset], np.ndarray]:
    """What ragkit before schema 2 left on disk: the model's collection under its base name, schema 1."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assets = [Asset(sha256=f"{i:064x}", filename=f"old-{i}.jpg", mime="image/jpeg", width=10, height=10,
                    size_bytes=100, tags=("old", f"t{i % 3}"), source="generated" if i % 4 == 0 else "upload",
                    created_at=1_000 + i, prompt="a brief" if i % 4 == 0 else "",
                    model="gemini-2.5-flash-image" if i % 4 == 0 else "") for i in range(rows)]
    model_id = model_identity(settings.clip_model, settings.clip_pretrained)
    client = connect(settings.milvus_uri)
    try:
        store = AssetStore(client, collection_name_for(model_id), dim, model_id, version=1)
        store.upsert(assets, vectors)
        store.flush()
    finally:
        disconnect(client, settings.milvus_uri)
    return assets, vectors
