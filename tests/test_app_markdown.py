"""md_escape: user text inside Streamlit Markdown is shown as written, and nothing in it acts.

Two layers act on Markdown in Streamlit 1.67's frontend: the parser (CommonMark + GFM, math,
directives), which honours backslash escapes, and rewrites of the parsed text, which do not
(checked in Chromium; tests/test_e2e_hostile_text.py shows the rendered result). The patterns
below are those rewrites, copied from the frontend bundle (static/js/StreamlitMarkdown.*.js).
"""
from __future__ import annotations

import re

import pytest

from ragkit.ingest.pipeline import Provenance, Upload
from ragkit.records import SOURCE_GENERATED
from ragkit.ui.markdown import WORD_JOINER, md_escape
from tests.e2e_support import (app_env, hostile_texts, markdown_sources, new_app, run, seed,  # noqa: F401
                               shown)
from tests.images_factory import jpeg_bytes

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


# --- the pages hand Streamlit user text only through md_escape ----------------------------------
HOSTILE_NAMES = ["www.attacker-example.com.png", "admin@attacker-example.com.png", "[x](javascript:alert(1)).png",
                 "![m](trap.png) :streamlit: $x$ :red[HOSTILE].png"]
HOSTILE_BRIEF = f"![p]({TRAP}/brief.png) $$x^2$$ :material/bug_report: www.attacker-example.com " + "x" * 120
HOSTILE_MODEL = f"![m]({TRAP}/model.png) admin@attacker-example.com"
# What any of these would look like if it reached Markdown unescaped.
RAW = ["www.attacker-example", "@attacker-example", "](trap", f"]({TRAP}", ":streamlit:", "$x$", "$$x^2$$",
       ":red[HOSTILE", ":material/bug_report"]


def test_the_pages_send_user_text_to_markdown_only_escaped(app_env, seed):
    from ragkit.ui import state
    from ragkit.ui.tray import TRAY_KEY
    uploaded = seed([Upload(name, jpeg_bytes(300 + i)) for i, name in enumerate(HOSTILE_NAMES)],
                    tags=["www.attacker-example.com", "$x$"]).added
    refs = tuple(asset.sha256 for _, asset in uploaded)
    made = seed([Upload("www.generated-example.com.png", jpeg_bytes(310), source=SOURCE_GENERATED,
                        provenance=Provenance(HOSTILE_BRIEF, HOSTILE_MODEL, refs[:2]))]).added[0][1]
    at = run(new_app())
    at.button(key=f"library.open.{made.sha256}").click()  # Details: title, model, brief, references
    run(at)
    sources = markdown_sources(at)
    at.session_state[TRAY_KEY] = list(refs)
    at.switch_page(state.STUDIO_PAGE)  # the tray's captions, the History's badge, brief and tooltip
    run(at)
    sources += markdown_sources(at)
    at.switch_page(state.SEARCH_PAGE)
    run(at)
    at.text_input(key="search.text").set_value("www.attacker-example.com $x$").run()
    sources += markdown_sources(at)

    assert any(HOSTILE_MODEL in shown(source) for source in sources)  # it is there, escaped
    assert any(HOSTILE_BRIEF in shown(source) for source in sources)
    unescaped = {marker: [s for s in sources if marker in s] for marker in RAW}
    assert {marker: found for marker, found in unescaped.items() if found} == {}
