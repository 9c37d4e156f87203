"""Canonical bytes: the one encoding of everything that is hashed or signed.

Why not "whatever json.dumps gives": the same logical value must always give the same bytes, on any
machine, in any language, or signatures and Merkle leaves stop being reproducible by outsiders.
The rules (version 1, "CJ1", see docs/adr/0001-canonical-encoding.md and the golden vectors in
tests/unit/test_encoding.py):

* values are objects with string keys, arrays, strings, integers in [-2**63, 2**63), true, false, null;
  floats are refused (money is integer fen; rates travel as decimal strings);
* object members are sorted by the UTF-8 bytes of their keys; no insignificant whitespace;
* strings are UTF-8; `"` and `\\` are escaped, as are control characters below U+0020
  (``\\b \\f \\n \\r \\t`` in short form, the rest as ``\\u00xx`` with lower-case hex); nothing else is escaped;
  lone surrogates are refused;
* integers in shortest decimal form.

`decode` accepts only input that re-encodes to the very same bytes, so a non-canonical entry cannot
hide in the log.
"""

from __future__ import annotations

import json
from typing import Any

VERSION = 1
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1


class EncodingError(ValueError):
    """A value that has no canonical encoding, or bytes that are not canonical."""


# The byte production is CPython's C JSON encoder configured to exactly the rules above (it sorts keys by
# code point, which is the UTF-8 byte order, and escapes as described); `_check` first refuses every value
# the rules do not allow, so the encoder only ever sees canonical-encodable input. Golden vectors pin it.
_dumps = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), check_circular=False, allow_nan=False
).encode


def _check(value: Any) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodingError(f"integer out of range: {value}")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise EncodingError(f"object key is not a string: {key!r}")
            _check(item)
        return
    if kind is list or kind is tuple:
        for item in value:
            _check(item)
        return
    if isinstance(value, str):  # str subclasses such as StrEnum members encode as their text
        return
    raise EncodingError(f"type {kind.__name__} has no canonical encoding")


def encode(value: Any) -> bytes:
    """Return the canonical bytes of ``value``; raise `EncodingError` if it has none."""
    try:
        _check(value)
        text = _dumps(value)
    except RecursionError as exc:
        raise EncodingError("value is nested too deeply") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError("string contains a lone surrogate") from exc


def _no_float(text: str) -> Any:
    raise EncodingError(f"floats are not canonical: {text}")


def _no_constant(text: str) -> Any:
    raise EncodingError(f"constant not allowed: {text}")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise EncodingError("duplicate object key")
    return result


def _int(text: str) -> int:
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise EncodingError(f"integer out of range: {text}")
    return value


def decode(data: bytes) -> Any:
    """Parse canonical bytes; refuse anything that is not exactly canonical."""
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, parse_float=_no_float, parse_int=_int, parse_constant=_no_constant, object_pairs_hook=_pairs
        )
    except EncodingError:
        raise
    except RecursionError as exc:
        raise EncodingError("input is nested too deeply") from exc
    except ValueError as exc:
        raise EncodingError(f"not valid canonical JSON: {exc}") from exc
    # The parser only builds values the rules allow (its hooks refuse the rest), so no `_check` here.
    if _dumps(value).encode("utf-8", "surrogatepass") != data:
        raise EncodingError("bytes are valid JSON but not in canonical form")
    return value
