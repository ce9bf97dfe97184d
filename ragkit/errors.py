"""One exception family for everything a person using ragkit can act on.

Every message says what went wrong *and* what to do next. Pages show them with
``st.error``; the CLI prints them on one line and exits non-zero. Messages never
contain secrets (API keys, DB tokens).
"""
from __future__ import annotations


class RagkitError(Exception):
    """Base class: a problem with a message meant for a person, not a traceback."""


class ConfigError(RagkitError):
    """A setting is missing or malformed."""


class ModelUnavailableError(RagkitError):
    """The CLIP model or its weights cannot be loaded."""


class StoreError(RagkitError):
    """The vector database refused or failed an operation."""


class StoreLockedError(StoreError):
    """A Milvus Lite file is already open in another process."""


class StoreAuthError(StoreError):
    """A Milvus server refused (or wants) credentials."""


class StoreSupersededError(StoreError):
    """The collection was replaced (upgraded) by another process; a write to it would be lost."""


class UpgradeNeededError(StoreError):
    """The library was made by an older ragkit and lacks what was asked for (the trash, usage rights)."""


class ModelMismatchError(StoreError):
    """The collection was built with a different embedding model."""


class InvalidInputError(RagkitError):
    """User input (a filter value, a tag, an id) is not acceptable."""


class InvalidImageError(RagkitError):
    """A file is not an image ragkit can use; the message is the reason."""


class AssetNotFoundError(RagkitError):
    """No asset with that id exists in the library."""


class GenerationError(RagkitError):
    """Image generation failed. Subclasses say why."""


class ModelGoneError(GenerationError):
    """The configured model is no longer offered (not listed for the key, or answered 404)."""


class MissingApiKeyError(GenerationError):
    pass


class InvalidApiKeyError(GenerationError):
    pass


class QuotaExceededError(GenerationError):
    pass


class GenerationServerError(GenerationError):
    pass


class GenerationTimeoutError(GenerationError):
    pass


class PromptBlockedError(GenerationError):
    pass


class SafetyStopError(GenerationError):
    pass


class NoImageReturnedError(GenerationError):
    pass


class TooManyReferencesError(GenerationError):
    pass


class KitNotFoundError(InvalidInputError):
    """No brand kit of that name."""


class KitConflictError(RagkitError):
    """Someone else saved the brand kit since it was opened for editing."""


class BatchError(RagkitError):
    """A batch job can't be started or resumed as asked."""


class ReindexError(RagkitError):
    """A reindex could not finish (the library keeps its current model; running it again resumes)."""


class StateFileError(ConfigError):
    """A file ragkit keeps its own state in (a kit, a job, the ledger, the prices, the model record) is
    damaged, too big, not a regular file, or can't be read; the message names the file and the fix."""


class DiskFullError(RagkitError):
    """The disk holding the library's data folder is full."""


class ReadOnlyDataError(StoreError):
    """The library's data folder (or the database in it) can't be written: it is read-only."""
