"""``cod_envs.utf8.valid_utf8``: what a domain returns always encodes; valid text is returned as it is."""

from hypothesis import given
from hypothesis import strategies as st

from cod_envs.utf8 import valid_utf8

ANY_CODE_POINT = st.lists(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=50).map("".join)
"""Text with UTF-16 surrogates mixed in, lone and paired (``st.text()`` alone leaves them out)."""


def test_lone_surrogates_become_the_replacement_character_and_pairs_their_character():
    assert valid_utf8("a\ud800b") == "a\ufffdb" and valid_utf8("\udfff") == "\ufffd"
    assert valid_utf8("\ud83d\ude00") == "\U0001f600"  # a surrogate pair written as two code points
    assert valid_utf8("bash: \ud800: command not found").encode("utf-8") == b"bash: \xef\xbf\xbd: command not found"


@given(ANY_CODE_POINT)
def test_the_result_encodes_and_valid_text_is_unchanged(text):
    out = valid_utf8(text)
    out.encode("utf-8")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert out is text
