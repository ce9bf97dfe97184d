"""Text from users (file names, tags, prompts) made safe to print on a terminal.

A file name is data, but a terminal obeys the control sequences in it: `ESC ] 0 ; … BEL`
sets the window title, `ESC [ 2 J` clears the screen, U+202E shows `gpj.exe` as `exe.jpg`.
Every human-readable line the CLI prints goes through `printable`; JSON output is already
escaped by json.dumps.
"""
from __future__ import annotations

import unicodedata

# Bidirectional overrides, embeddings and isolates, and the implicit direction marks:
# invisible, and they reorder what is printed after them.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _is_unsafe(ch: str, keep_newlines: bool) -> bool:
    if keep_newlines and ch in "\n\t":
        return False
    # Cc: C0 controls, DEL and C1 controls (\x9b is a one-byte CSI); Cs: lone surrogates,
    # which is how Python spells a file name's bytes that are not UTF-8; Zl/Zp: line breaks.
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in BIDI_CONTROLS


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with every control character shown as a visible escape (ESC -> `\\x1b`).

    The escape keeps a hostile name recognisable (so the user can find and delete the file)
    without the terminal acting on it. `keep_newlines` lets multi-line prose keep its line
    breaks and tabs (e.g. the model's text answer); names and one-line messages never do.
    """
    return "".join(_escape(ch) if _is_unsafe(ch, keep_newlines) else ch for ch in str(text))
