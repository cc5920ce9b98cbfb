"""Concepts: labels on hand-written strings, and the error paths."""
from __future__ import annotations

import numpy as np
import pytest

from probe.analysis import concepts
from probe.cli.main import main
from probe.errors import ProbeError


def lab(name: str, text: str) -> str:
    return "".join(str(int(v)) for v in concepts.get(name).labels(text))


def test_wiki_link_marks_brackets_and_inside():
    assert lab("wiki-link", "a [[B c]] d") == "00111111100"


def test_url_stops_at_whitespace_and_brackets():
    text = "see http://x.org/a b [http://y.com]"
    got = concepts.get("url").labels(text)
    assert "".join(c for c, v in zip(text, got) if v) == "http://x.org/ahttp://y.com"


def test_quote_handles_plain_and_xml_escaped_quotes():
    text = 'a "bc" d &quot;e&quot; f'
    inside = "".join(c for c, v in zip(text, concepts.get("quote").labels(text)) if v)
    assert inside == '"bc"&quot;e&quot;'


def test_xml_tag_and_comment():
    text = "x <ref name=a> y &lt;br/&gt; /* c */ http://u.v // tail\nz"
    tag = "".join(c for c, v in zip(text, concepts.get("xml-tag").labels(text)) if v)
    assert tag == "<ref name=a>&lt;br/&gt;"
    com = "".join(c for c, v in zip(text, concepts.get("comment").labels(text)) if v)
    assert com == "/* c */// tail"  # the // of the URL is not a comment


def test_continuous_and_integer_concepts():
    assert concepts.column("ab\ncd\n").tolist() == [0, 1, 2, 0, 1, 2]
    assert concepts.line_end_distance("ab\ncd").tolist() == [2, 1, 0, 2, 1]
    assert concepts.bracket_depth("a(b[c])d)e").tolist() == [0, 1, 1, 2, 2, 2, 1, 0, 0, 0]
    assert concepts.indent("  a\n\tb\nc").tolist() == [2, 2, 2, 2, 4, 4, 4, 0]
    assert concepts.get("column").label_type == "continuous"
    assert concepts.get("bracket-depth").labels("(x)").dtype == np.int32


def test_regex_flags_and_group():
    assert lab("ab", "xABab") == "00011"
    assert "".join(map(str, concepts.from_regex("ab", "i").labels("xABab"))) == "01111"
    c = concepts.from_regex(r"\[\[([^\]|]*)\|?[^\]]*\]\]", group=1)
    assert "".join(map(str, c.labels("[[Ab|c]]"))) == "00110000"
    assert concepts.from_function("vowel", lambda t: np.array([ch in "aeiou" for ch in t])).labels("hat").tolist() \
        == [0, 1, 0]


def test_regex_errors_quote_python():
    with pytest.raises(ProbeError, match=r"invalid regex '\[\[': unterminated character set"):
        concepts.get("[[")
    with pytest.raises(ProbeError, match="no group 2"):
        concepts.from_regex("(a)", group=2)
    with pytest.raises(ProbeError, match="unknown regex flag 'q'"):
        concepts.from_regex("a", "q")
    with pytest.raises(ProbeError, match="unknown concept 'nope'"):
        concepts.builtin("nope")


def test_cli_lists_concepts(capsys):
    assert main(["concepts"]) == 0
    out = capsys.readouterr().out
    for name in concepts.BUILTIN:
        assert name in out
    assert len(concepts.BUILTIN) == 9
