"""gateway.htmlescape.escape is html.escape, without importing html (issue 18)."""

from __future__ import annotations

import html

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.htmlescape import escape

TRICKY = ["", "plain", "a & b", "&amp;", "<script>alert('x')</script>", '"quoted" \'single\'', "&lt;&&gt;",
          "水位 > 3 m & 上涨", "\x00<\ud7ff>"]


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("quote", [True, False])
def test_the_same_as_html_escape(text: str, quote: bool) -> None:
    assert escape(text, quote=quote) == html.escape(text, quote=quote)


@given(st.text(alphabet=st.sampled_from("&<>\"'a水 ;#x")), st.booleans())
def test_the_same_as_html_escape_on_any_text(text: str, quote: bool) -> None:
    assert escape(text, quote=quote) == html.escape(text, quote=quote)
