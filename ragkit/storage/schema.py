"""The asset collection's schema, by version, and the mapping between Asset records and rows.

Version 1: the asset's file facts, tags, source, date and generation provenance.
Version 2 adds what campaign work and richer search need: a caption, usage rights (licence note,
usable-until date, "not as a reference"), the trash (trashed_at), more provenance (details: brand
kit, job, usage, cost) and `keywords`, the text of the filename, tags, brief and caption that
full-text search reads. Where the engine has full-text search (Milvus Lite 3.x, Milvus 2.5+), a
BM25 function turns `keywords` into a sparse vector Milvus can search; Milvus 2.3 has no sparse
vectors, so there the collection is made without them (the property ragkit.keywords says which).

A library made by an older ragkit keeps its version-1 collection until `python -m ragkit upgrade`
copies it, vectors included, into a version-2 collection of its own name (collection_name).
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from ragkit.storage.filters import validate_sha256
from ragkit.records import Asset
from ragkit.tags import MAX_TAG_CHARS, MAX_TAGS, normalise_tags, truncate_utf8

LATEST = 2

# What each schema version brought. Callers ask for a feature by name, never compare versions.
TRASH_SINCE = 2     # trashed_at: deleting is reversible until the trash is emptied
RIGHTS_SINCE = 2    # usage rights (licence, expiry, no-reference)
KEYWORDS_SINCE = 2  # the keywords text that full-text (BM25) search reads


def has_trash(version: int) -> bool:
    return version >= TRASH_SINCE


def has_rights(version: int) -> bool:
    return version >= RIGHTS_SINCE


def has_keywords_field(version: int) -> bool:
    return version >= KEYWORDS_SINCE
MAX_REFERENCES = 16
MAX_FILENAME_BYTES = 512
MAX_PROMPT_BYTES = 8192
MAX_CAPTION_BYTES = 2048
MAX_LICENCE_BYTES = 1024
MAX_KEYWORDS_BYTES = 12288
KEYWORDS_SPARSE = "keywords_bm25"

FIELDS_V1 = ["sha256", "filename", "mime", "width", "height", "size_bytes", "tags", "source",
             "created_at", "prompt", "model", "reference_ids"]
FIELDS_V2 = FIELDS_V1 + ["caption", "licence", "usable_until", "no_reference", "trashed_at", "details"]
OUTPUT_FIELDS = {1: FIELDS_V1, 2: FIELDS_V2}  # what reads ask for (never the vectors or keywords)

# Collection properties ragkit keeps on its collections.
PROP_MODEL = "ragkit.model_id"
PROP_VERSION = "ragkit.schema_version"
PROP_KEYWORDS = "ragkit.keywords"          # "bm25" or "none"
PROP_COMPLETE = "ragkit.complete"          # "0" while an upgrade is still copying into it
PROP_SUPERSEDED_BY = "ragkit.superseded_by"  # on an old collection: the one that replaced it


def build_schema(version: int, dim: int, full_text: bool):
    """(schema, index params) for a new collection."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("sha256", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("filename", DataType.VARCHAR, max_length=MAX_FILENAME_BYTES)
    schema.add_field("mime", DataType.VARCHAR, max_length=64)
    schema.add_field("width", DataType.INT32)
    schema.add_field("height", DataType.INT32)
    schema.add_field("size_bytes", DataType.INT64)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR,
                     max_capacity=MAX_TAGS, max_length=MAX_TAG_CHARS * 4)
    schema.add_field("source", DataType.VARCHAR, max_length=16)
    schema.add_field("created_at", DataType.INT64)
    schema.add_field("prompt", DataType.VARCHAR, max_length=MAX_PROMPT_BYTES)
    schema.add_field("model", DataType.VARCHAR, max_length=128)
    schema.add_field("reference_ids", DataType.ARRAY, element_type=DataType.VARCHAR,
                     max_capacity=MAX_REFERENCES, max_length=64)
    if version >= 2:
        schema.add_field("caption", DataType.VARCHAR, max_length=MAX_CAPTION_BYTES)
        schema.add_field("licence", DataType.VARCHAR, max_length=MAX_LICENCE_BYTES)
        schema.add_field("usable_until", DataType.INT64)
        schema.add_field("no_reference", DataType.BOOL)
        schema.add_field("trashed_at", DataType.INT64)
        schema.add_field("details", DataType.JSON)
        if full_text:
            schema.add_field("keywords", DataType.VARCHAR, max_length=MAX_KEYWORDS_BYTES, enable_analyzer=True)
            schema.add_field(KEYWORDS_SPARSE, DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(Function(name="keywords_to_bm25", function_type=FunctionType.BM25,
                                         input_field_names=["keywords"], output_field_names=[KEYWORDS_SPARSE]))
        else:
            schema.add_field("keywords", DataType.VARCHAR, max_length=MAX_KEYWORDS_BYTES)
    return schema


_WORD_SPLIT = re.compile(r"[_.]+")


def keyword_text(asset: Asset) -> str:
    """What full-text search reads: the file name (its extension dropped, `_` and `.` as spaces, so
    "IMG_2231.jpg" gives "IMG 2231" and "SKU-4471 red cape.jpg" keeps "SKU-4471"), tags, brief, caption."""
    stem = asset.filename.rsplit(".", 1)[0] if "." in asset.filename else asset.filename
    parts = [_WORD_SPLIT.sub(" ", stem), " ".join(asset.tags), asset.prompt, asset.caption]
    return truncate_utf8(" \n".join(p for p in parts if p), MAX_KEYWORDS_BYTES)


def keyword_query(text: str) -> str:
    """A search text prepared the way `keyword_text` prepares names ("IMG_2231" -> "IMG 2231")."""
    return _WORD_SPLIT.sub(" ", text)


_TOKEN = re.compile(r"[^\W_]+")
# Words too common to count as a match ("a red cape with gold trim" matching "a" is not a word match).
STOPWORDS = frozenset("a an and are as at be by for from has in is it of on or that the to with".split())


def keyword_tokens(text: str) -> set[str]:
    """The words full-text search sees in a text: lower-case runs of letters and digits (Milvus'
    standard analyzer splits the same way for the names, tags and briefs people type), without
    STOPWORDS."""
    return set(_TOKEN.findall(keyword_query(text).lower())) - STOPWORDS


def asset_row(asset: Asset, vector: np.ndarray, version: int) -> dict[str, Any]:
    """The row that stores `asset` in a collection of this schema version (values bounded to its fields)."""
    row: dict[str, Any] = {
        "sha256": validate_sha256(asset.sha256),
        "vector": np.asarray(vector, dtype=np.float32).tolist(),
        "filename": truncate_utf8(asset.filename, MAX_FILENAME_BYTES),
        "mime": asset.mime[:64],
        "width": int(asset.width), "height": int(asset.height), "size_bytes": int(asset.size_bytes),
        "tags": list(normalise_tags(asset.tags)),
        "source": asset.source,
        "created_at": int(asset.created_at),
        "prompt": truncate_utf8(asset.prompt, MAX_PROMPT_BYTES),
        "model": asset.model[:128],
        "reference_ids": [validate_sha256(r) for r in asset.reference_ids][:MAX_REFERENCES],
    }
    if version >= 2:
        row.update({
            "caption": truncate_utf8(asset.caption, MAX_CAPTION_BYTES),
            "licence": truncate_utf8(asset.licence, MAX_LICENCE_BYTES),
            "usable_until": int(asset.usable_until), "no_reference": bool(asset.no_reference),
            "trashed_at": int(asset.trashed_at), "details": dict(asset.details),
            "keywords": keyword_text(asset),
        })
    return row


def row_asset(row: dict[str, Any]) -> Asset:
    """The Asset a stored row describes (fields a version-1 row lacks take their defaults)."""
    details = row.get("details")
    return Asset(
        sha256=row["sha256"], filename=row.get("filename", ""), mime=row.get("mime", ""),
        width=int(row.get("width", 0)), height=int(row.get("height", 0)),
        size_bytes=int(row.get("size_bytes", 0)), tags=tuple(row.get("tags") or ()),
        source=row.get("source", "upload"), created_at=int(row.get("created_at", 0)),
        prompt=row.get("prompt", ""), model=row.get("model", ""),
        reference_ids=tuple(row.get("reference_ids") or ()),
        caption=row.get("caption") or "", licence=row.get("licence") or "",
        usable_until=int(row.get("usable_until") or 0), no_reference=bool(row.get("no_reference")),
        trashed_at=int(row.get("trashed_at") or 0), details=details if isinstance(details, dict) else {},
    )
