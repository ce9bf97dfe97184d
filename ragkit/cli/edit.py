"""`python -m ragkit generate --edit SHA "make the background blue"`: one edit of a library asset.

The new version is written to --out and saved into the library with provenance pointing to its
parent (the asset edited), like "save this version" in the Studio (ragkit.studio.edit).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ragkit.config import Settings
from ragkit.ingest.images import EXTENSION_BY_MIME
from ragkit.studio import ImageGenerator
from ragkit.studio.edit import save_version, send_edit, start_from_asset
from ragkit.studio.models import default_model


def cmd_edit(args, settings: Settings, open_library) -> int:
    generator = ImageGenerator.from_settings(settings)  # no key -> a clear error before anything loads
    library = open_library(settings)
    model = args.model or default_model(settings.gemini_model)
    session = start_from_asset(library, args.edit, model)
    print(f"editing {args.edit[:12]} with {model}…", file=sys.stderr)
    version = send_edit(library, generator, session, args.brief)
    asset = save_version(library, session, 1, tags=args.tag)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ragkit-edit-{time.strftime('%Y%m%d-%H%M%S')}{EXTENSION_BY_MIME.get(version.image.mime, '.png')}"
    path.write_bytes(version.image.data)
    print(f"wrote {path} (saved to library as {asset.sha256[:12]}, edited from {args.edit[:12]})", file=sys.stderr)
    if args.json:
        print(json.dumps({"asset": {"sha256": asset.sha256, "filename": asset.filename, "path": str(path),
                                    "mime": version.image.mime},
                          "parent": {"sha256": session.original.saved_sha}, "instruction": version.instruction,
                          "model": model, "text": version.text, "usage": version.usage,
                          "cost_usd": version.cost_usd, "seconds": round(version.seconds, 2)}, ensure_ascii=False))
    return 0
