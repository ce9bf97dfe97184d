"""May this asset be sent to the model (a brand kit's reference, a batch product)?

The rule itself is the core's (ragkit.rights.blocked_as_reference, shared with the tray and the
suggestions); this names the asset, for messages that list several.
"""
from __future__ import annotations

from ragkit.records import Asset
from ragkit.rights import blocked_as_reference, now_ms as current_ms


def not_usable_reason(asset: Asset, now_ms: int | None = None) -> str | None:
    """Why `asset` may not be used as a reference or a batch product; None when it may."""
    reason = blocked_as_reference(asset, current_ms() if now_ms is None else now_ms)
    return f"{asset.filename}: {reason}" if reason else None
