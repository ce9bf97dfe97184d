"""User text inside Streamlit Markdown: one function, `md_escape`, shows it literally.

Most Streamlit text is Markdown: st.markdown, st.caption, the alerts, st.toast, widget labels,
`help=` tooltips, st.image captions and st.progress texts. A file name, a tag, a brief, a model
name or anything read from an imported metadata.json must not become a link, an image (a request
to someone's server), a formula, an icon or coloured text there. (Widget options, st.text,
st.dataframe cells, `alt=` and `file_name=` are plain text and need nothing.)

Escaping every ASCII punctuation character with a backslash is not enough in Streamlit 1.67,
because its frontend rewrites the text *after* parsing, when the escapes are gone (checked in
Chromium): GFM autolink literals turn `www.host`, `http://host` and `name@host` into links, and
`:material/x:`, `:streamlit:` and `:smile:` become icons, a logo image and emoji. A word joiner
(U+2060: invisible, zero width, no line break) placed inside each such pattern breaks it.
"""
from __future__ import annotations

import re
import string

WORD_JOINER = "\u2060"

_ASCII_PUNCTUATION = frozenset(string.punctuation)  # CommonMark lets a backslash escape each of these
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The patterns Streamlit's frontend matches in already-parsed text, and where to break each one.
_WWW_DOT = re.compile(r"(?<=www)(?=\.)", re.IGNORECASE)        # www.host.tld -> a link
_TYPOGRAPHY = re.compile(r"(?:^|(?<=\s))([<>~-])(?=[<>=-])")    # ' -> ', ' -- ', ' >= ' -> arrows, dashes


def md_escape(text: str) -> str:
    """`text` as Markdown that Streamlit shows exactly as written, on one line.

    Line breaks and runs of whitespace become single spaces (a new line could start a heading,
    a list or a code block). Never cut the result: cut the text before escaping it.
    """
    text = " ".join(_CONTROL_CHARACTERS.sub(" ", text).split())
    text = _WWW_DOT.sub(WORD_JOINER, text)
    text = text.replace("@", WORD_JOINER + "@")          # name@host.tld -> a mailto: link
    text = text.replace(":", ":" + WORD_JOINER)          # http://…, :material/…:, :streamlit:, :smile:
    text = _TYPOGRAPHY.sub(r"\1" + WORD_JOINER, text)
    return "".join("\\" + ch if ch in _ASCII_PUNCTUATION else ch for ch in text)



def md_code(text: str) -> str:
    """`text` as an inline code span, shown exactly as written: no backslash escapes (inside a code
    span they would show), fenced by more backticks than any run of them in the text."""
    text = " ".join(_CONTROL_CHARACTERS.sub(" ", text).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
