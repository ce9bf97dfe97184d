"""Import a folder on the server's disk (the app's "Import a folder", the CLI's `ingest FOLDER`): the path
is checked before any work starts, so a typo is one clear line, not an empty report."""
from __future__ import annotations

import os
from pathlib import Path

from ragkit.errors import InvalidInputError

MAX_PATH_CHARS = 4096


def validate_folder(text: str) -> Path:
    """The folder `text` names, if it exists, is a folder and can be listed; else InvalidInputError."""
    raw = (text or "").strip()
    if not raw:
        raise InvalidInputError("Type the path of a folder on the server, e.g. /srv/photos/2024.")
    if len(raw) > MAX_PATH_CHARS or "\x00" in raw:
        raise InvalidInputError("That is not a folder path (too long, or with a NUL character).")
    folder = Path(raw).expanduser()
    shown = str(folder)[:200]
    if not folder.is_absolute():
        raise InvalidInputError(f"{shown!r} is a relative path; type the folder's full path, starting with /.")
    try:
        exists, is_dir = folder.exists(), folder.is_dir()
    except OSError as exc:
        raise InvalidInputError(f"{shown} can't be looked at ({exc.strerror or exc}).") from None
    if not exists:
        raise InvalidInputError(f"There is no folder {shown} on the server. Check the path (it is the server's "
                                "disk, not your computer's).")
    if not is_dir:
        raise InvalidInputError(f"{shown} is a file, not a folder. Type the folder that holds the images.")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise InvalidInputError(f"{shown} can't be read by the user running ragkit; give it read access.")
    return folder
