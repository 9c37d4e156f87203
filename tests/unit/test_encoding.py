"""Canonical encoding CJ1: golden vectors written out by hand, refusals, and strict decoding."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditflow.kernel.encoding import EncodingError, decode, encode

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

# (id, value, the exact canonical bytes). Every expected literal is written by hand from the rules in
# the module docstring; none is produced by the code under test.
GOLDEN: list[tuple[str, Any, bytes]] = [
    ("empty-object", {}, b"{}"),
    ("empty-array", [], b"[]"),
    ("empty-string", "", b'""'),
    ("true", True, b"true"),
    ("false", False, b"false"),
    ("null", None, b"null"),
    ("literals-in-array", [True, False, None], b"[true,false,null]"),
    ("zero", 0, b"0"),
    ("minus-one", -1, b"-1"),
    ("int-max", 2**63 - 1, b"9223372036854775807"),
    ("int-min", -(2**63), b"-9223372036854775808"),
    ("int-edges-in-array", [2**63 - 2, -(2**63) + 1], b"[9223372036854775806,-9223372036854775807]"),
    ("keys-sorted", {"b": 1, "a": 2, "c": 3}, b'{"a":2,"b":1,"c":3}'),
    ("key-prefix-first", {"ab": 1, "a": 2, "": 3}, b'{"":3,"a":2,"ab":1}'),
    ("upper-case-before-lower", {"a": 1, "B": 2, "A": 3}, b'{"A":3,"B":2,"a":1}'),
    (
        # UTF-8 byte order: "z" (7a) < "é" (c3 a9) < "中" (e4 b8 ad) < U+FFFF (ef bf bf) < 😀 (f0 9f 98 80).
        # UTF-16 order would put 😀 (d83d de00) before U+FFFF: this vector tells the two apart.
        "non-ascii-keys-by-utf8-bytes",
        {"😀": 5, "\uffff": 4, "中": 3, "é": 2, "z": 1},
        b'{"z":1,"\xc3\xa9":2,"\xe4\xb8\xad":3,"\xef\xbf\xbf":4,"\xf0\x9f\x98\x80":5}',
    ),
    (
        # Sorted by the key's own bytes (1f < 20), not by its escaped form ("\" is 5c > 20).
        "keys-sorted-before-escaping",
        {"a ": 1, "a\x1f": 2},
        b'{"a\\u001f":2,"a ":1}',
    ),
    (
        "nested",
        {"v": 1, "op": {"kind": "issue", "amount_minor": 100000000, "to": ["91350100M000100Y43", {"r": []}]}},
        b'{"op":{"amount_minor":100000000,"kind":"issue","to":["91350100M000100Y43",{"r":[]}]},"v":1}',
    ),
    ("nested-empties", [[], {}, [[]], [{}]], b"[[],{},[[]],[{}]]"),
    ("null-member", {"a": None}, b'{"a":null}'),
    ("escapes-quote-backslash", 'say "hi" \\ bye', b'"say \\"hi\\" \\\\ bye"'),
    ("escapes-newline-tab", "a\nb\tc", b'"a\\nb\\tc"'),
    ("escapes-short-forms", "\b\f\r", b'"\\b\\f\\r"'),
    ("escapes-u0001-u001f", "\x00\x01\x1f", b'"\\u0000\\u0001\\u001f"'),
    ("escapes-lower-case-hex", "\x0b\x1a\x1b", b'"\\u000b\\u001a\\u001b"'),
    ("escapes-together", '"\\\n\t\x01\x1f', b'"\\"\\\\\\n\\t\\u0001\\u001f"'),
    ("no-escape-space-and-del", " \x7f", b'" \x7f"'),
    ("no-escape-slash", "a/b", b'"a/b"'),
    ("no-escape-u2028-u2029", "\u2028\u2029", b'"\xe2\x80\xa8\xe2\x80\xa9"'),
    ("no-escape-e-acute", "é", b'"\xc3\xa9"'),
    ("no-escape-cjk", "中文", b'"\xe4\xb8\xad\xe6\x96\x87"'),
    ("no-escape-emoji", "😀", b'"\xf0\x9f\x98\x80"'),
    ("no-escape-bom-character", "\ufeff", b'"\xef\xbb\xbf"'),
]


@pytest.mark.parametrize(("value", "expected"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN])
def test_golden_vectors(value: Any, expected: bytes) -> None:
    assert encode(value) == expected
    assert decode(expected) == value


def test_key_order_does_not_depend_on_insertion_order() -> None:
    forward = {"a": 1, "é": 2, "😀": 3, "中": 4}
    backward = dict(reversed(list(forward.items())))
    assert encode(forward) == encode(backward)


def test_tuples_encode_as_arrays() -> None:
    assert encode((1, "x", ())) == b'[1,"x",[]]'
    assert decode(b'[1,"x",[]]') == [1, "x", []]


# --- values without a canonical encoding ---------------------------------------------------------


class Opaque:
    def __repr__(self) -> str:  # a stable test id
        return "Opaque()"


def value_id(value: Any) -> str:
    return "memoryview" if isinstance(value, memoryview) else repr(value)  # no addresses in test ids


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        0.5,
        -0.0,
        float("nan"),
        float("inf"),
        [1, 2.5],
        {"amount": 1.0},
        2**63,
        -(2**63) - 1,
        [2**64],
        {1: "a"},
        {None: "a"},
        {True: "a"},
        {("a",): 1},
        {"ok": {2: "nested non-str key"}},
        b"bytes",
        bytearray(b"bytes"),
        memoryview(b"ab"),  # a Sequence, but bytes all the same
        [b"x"],
        {1, 2},
        frozenset({"a"}),
        Decimal("1.00"),
        Opaque(),
        "\ud800",
        "lone low \udc00 surrogate",
        ["\udfff"],
        {"\ud800": 1},
        {"k": "\ud83d"},
    ],
    ids=value_id,
)
def test_refused_values(value: Any) -> None:
    with pytest.raises(EncodingError):
        encode(value)


# --- strict decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" {}",
        b"{} ",
        b"{}\n",
        b'{"a": 1}',
        b'{"a":1 }',
        b"[1, 2]",
        b'{"b":1,"a":2}',
        b'{"\xc3\xa9":1,"z":2}',  # "z" (7a) sorts before "é" (c3 a9)
        b'{"a":1,"a":1}',
        b'{"a":1,"a":2}',
        b'{"x":{"a":1,"a":1}}',
        b"1.0",
        b"0.5",
        b"1e2",
        b"1E2",
        b"-0",
        b"01",
        b"00",
        b"-01",
        b"+1",
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"9223372036854775808",
        b"-9223372036854775809",
        b'"\\/"',
        b'"a\\/b"',
        b'"\\u001F"',
        b'"\\u001A"',
        b'"\\u000a"',  # must be the short form \n
        b'"\\u0041"',  # "A" needs no escape
        b'"\\u00e9"',  # é must be raw UTF-8
        b'"\\u2028"',  # U+2028 must be raw UTF-8
        b'"\\ud83d\\ude00"',  # 😀 must be raw UTF-8
        b'"\\ud800"',  # lone surrogate
        b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8 is not UTF-8
        b'"\xff"',
        b'"\xc3"',
        b"\xef\xbb\xbf1",  # byte-order mark
        b'"\x01"',  # raw control character
        b'"\t"',
        b"[1,]",
        b"{'a':1}",
        b"TRUE",
        b"nul",
        b"[1][2]",
    ],
    ids=repr,
)
def test_decode_refuses_non_canonical_bytes(data: bytes) -> None:
    with pytest.raises(EncodingError):
        decode(data)


def test_decode_accepts_int_bounds_exactly() -> None:
    assert decode(b"9223372036854775807") == INT_MAX
    assert decode(b"-9223372036854775808") == INT_MIN


def test_deep_nesting_is_refused_with_encoding_error() -> None:
    # Regression: a RecursionError used to escape, past parse_entry's `except EncodingError`.
    with pytest.raises(EncodingError):
        decode(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(EncodingError):
        decode(b'{"a":' * 5_000 + b"1" + b"}" * 5_000)
    deep: list[Any] = []
    for _ in range(5_000):
        deep = [deep]
    with pytest.raises(EncodingError):
        encode(deep)


# --- properties ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=INT_MIN, max_value=INT_MAX)
    | st.text(),  # text() never draws surrogates
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_round_trip_and_stability(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data
    assert encode(value) == data
    # Python's own compact sort_keys output coincides: sorting by code point is sorting by UTF-8 bytes.
    assert json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode() == data


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_other_spelling_is_refused(value: Any) -> None:
    for text in (
        json.dumps(value),  # ASCII escapes, ", " and ": " separators
        json.dumps(value, ensure_ascii=False, indent=1),
        json.dumps(value, ensure_ascii=False, separators=(",", ":")) + " ",
    ):
        data = text.encode("utf-8")
        if data == encode(value):
            assert decode(data) == value
        else:
            with pytest.raises(EncodingError):
                decode(data)
