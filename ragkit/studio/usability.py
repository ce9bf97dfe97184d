"""May this asset be sent to the model (a brand kit's reference, a batch product)?

One function, so that the usage-rights rule lives in one place (it may move to the core's rights
module; callers only need `not_usable_reason`).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from ..records import Asset


def not_usable_reason(asset: Asset, now_ms: int | None = None) -> str | None:
    """Why `asset` may not be used as a reference or a batch product; None when it may."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if asset.no_reference:
        return f"{asset.filename} is marked \"do not use as a reference\""
    if asset.expired(now_ms):
        until = datetime.fromtimestamp(asset.usable_until / 1000, tz=timezone.utc).date().isoformat()
        return f"the usage rights of {asset.filename} ended on {until}"
    return None
