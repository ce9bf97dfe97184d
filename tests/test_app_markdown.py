"""md_escape: user text inside Streamlit Markdown is shown as written, and nothing in it acts.

Two layers act on Markdown in Streamlit 1.67's frontend: the parser (CommonMark + GFM, math,
directives), which honours backslash escapes, and rewrites of the parsed text, which do not
(checked in Chromium; tests/test_e2e_hostile_text.py shows the rendered result). The patterns
below are those rewrites, copied from the frontend bundle (static/js/StreamlitMarkdown.*.js).
"""
from __future__ import annotations

import re

import pytest

from ragkit.ui.markdown import WORD_JOINER, md_escape
from tests.e2e_support import hostile_texts, shown

TRAP = "http://127.0.0.1:9"

# Run on the text of the parsed document, after escapes are gone.
TEXT_REWRITES = {
    "www/http autolink": re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE | re.ASCII),
    "email autolink": re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)", re.ASCII),
    "material icon": re.compile(r":material_(\w+):", re.ASCII),
    "streamlit logo": re.compile(r":streamlit:"),
    "emoji shortcode": re.compile(r":[\w+-][\w_+-]*:", re.ASCII),
    "typography": re.compile(r"(^|\s)(<->|->|<-|--|>=|<=|~=)(\s|$)"),
}
# Run on the Markdown source before parsing (so escapes don't help): ":material/" -> ":material_".
SOURCE_REWRITE = ":material/"
ASCII_PUNCTUATION = r"!-/:-@\[-`{-~"
EVERY_PUNCTUATION_ESCAPED = re.compile(rf"(?:\\[{ASCII_PUNCTUATION}]|[^{ASCII_PUNCTUATION}])*")

MORE_HOSTILE = {
    "upper-case www": "WWW.Attacker-Example.COM",
    "www in a sentence": "see (www.attacker-example.com) or *www.attacker-example.com*",
    "https": "HTTPS://attacker-example.com/x",
    "mailto": "mailto:x@attacker-example.com and xmpp:foo@attacker-example.com",
    "file name": "admin@attacker-example.com :material/home: $1$.png",
    "escapes in the text": "a\\*b\\* \\$x\\$ trailing backslash \\",
    "control characters": "line one\r\nline two\x00\x1b[2J\tend",
    "long": "[x](http://attacker-example.com) " * 200,
    "plain": "red-sneaker_2024 (final).jpg",
    "unicode": "Café — naïve 👩‍👩‍👧 ＄x＄",
}
CASES = {**hostile_texts(TRAP), **MORE_HOSTILE}


def parsed_text(markdown: str) -> str:
    """The text a Markdown parser hands on when every special character is escaped."""
    return re.sub(rf"\\([{ASCII_PUNCTUATION}])", r"\1", markdown)


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_escaped_text_reads_as_written_and_nothing_in_it_acts(text):
    escaped = md_escape(text)
    assert "\n" not in escaped and "\r" not in escaped  # no new block (heading, list, code) can start
    assert EVERY_PUNCTUATION_ESCAPED.fullmatch(escaped), escaped  # the parser sees no syntax
    assert SOURCE_REWRITE not in escaped
    rewritten = {name for name, pattern in TEXT_REWRITES.items() if pattern.search(parsed_text(escaped))}
    assert not rewritten, (rewritten, escaped)
    assert shown(escaped) == " ".join(re.sub(r"[\x00-\x1f]", " ", text).split())  # what a reader sees


def test_word_joiners_only_where_a_rewrite_would_match():
    assert md_escape("red-sneaker.jpg") == "red\\-sneaker\\.jpg"
    assert WORD_JOINER not in md_escape("Café — naïve ＄x＄ 10 > 9")
    assert md_escape("www.a.com") == f"www{WORD_JOINER}\\.a\\.com"
    assert md_escape("a@b.co") == f"a{WORD_JOINER}\\@b\\.co"
    assert md_escape("x: y") == f"x\\:{WORD_JOINER} y"


def test_an_escape_never_leaks_into_the_next_character():
    """Backslashes in the text are escaped too, so `\\*` stays a backslash and a star."""
    assert md_escape("\\*") == "\\\\\\*"
    assert shown(md_escape("\\\\$")) == "\\\\$"
