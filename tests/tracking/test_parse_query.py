"""The click redirect's own query parser reads every query string exactly as parse_qsl does."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import example, given
from hypothesis import strategies as st

from server.http.tracking.public import parse_query

# Bytes drawn mostly from what query strings are made of, so the separators and edge cases
# (blank values, missing "=", repeated names, too many fields) come up often.
_QUERY = st.lists(
    st.sampled_from([b"&", b"=", b"a", b"sub1", b"url", b"%", b"+", b"%41", b"%e9", b"\xe9", b"x"]), max_size=60
).map(b"".join) | st.binary(max_size=80)


def _reference(query_string: bytes) -> dict[str, str] | str:
    try:
        return dict(parse_qsl(query_string.decode("latin-1"), max_num_fields=20))
    except ValueError as exc:
        return str(exc)


@given(_QUERY)
@example(b"sub1=a&sub1=b&=x&y&z=&&")
@example(b"&".join([b"a=1"] * 20))
@example(b"&".join([b"a=1"] * 21))
def test_parse_query_matches_parse_qsl(query_string):
    try:
        got: dict[str, str] | str = parse_query(query_string)
    except ValueError as exc:
        got = str(exc)
    assert got == _reference(query_string)
