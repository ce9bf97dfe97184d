"""ragkit: find images by describing them, and turn the hits into new promo images.

The core package never imports Streamlit; the CLI (`python -m ragkit`) and the pages
drive the same functions.
"""
from ragkit.config import Settings
from ragkit.errors import RagkitError
from ragkit.records import Asset, IngestReport, Page, SearchHit

__version__ = "0.1.0"
__all__ = ["Settings", "RagkitError", "Asset", "IngestReport", "Page", "SearchHit", "__version__"]
