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
from collections.abc import Mapping, Sequence
from typing import Any

VERSION = 1
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
# CPython's C string encoder with ensure_ascii=False implements exactly the escaping rules above.
_encode_str = json.encoder.encode_basestring  # type: ignore[attr-defined]


class EncodingError(ValueError):
    """A value that has no canonical encoding, or bytes that are not canonical."""


def _encode(value: Any, out: list[str]) -> None:
    # The order of checks matters: bool is a subclass of int.
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodingError(f"integer out of range: {value}")
        out.append(str(int(value)))
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        for key in keys:
            if not isinstance(key, str):
                raise EncodingError(f"object key is not a string: {key!r}")
        keys.sort(key=lambda k: k.encode("utf-8", "surrogatepass"))
        out.append("{")
        first = True
        for key in keys:
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray | memoryview):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise EncodingError(f"type {type(value).__name__} has no canonical encoding")


def encode(value: Any) -> bytes:
    """Return the canonical bytes of ``value``; raise `EncodingError` if it has none."""
    out: list[str] = []
    try:
        _encode(value, out)
    except RecursionError as exc:
        raise EncodingError("value is nested too deeply") from exc
    try:
        return "".join(out).encode("utf-8")
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


def decode(data: bytes) -> Any:
    """Parse canonical bytes; refuse anything that is not exactly canonical."""
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_float=_no_float, parse_constant=_no_constant, object_pairs_hook=_pairs)
    except EncodingError:
        raise
    except RecursionError as exc:
        raise EncodingError("input is nested too deeply") from exc
    except ValueError as exc:
        raise EncodingError(f"not valid canonical JSON: {exc}") from exc
    if encode(value) != data:
        raise EncodingError("bytes are valid JSON but not in canonical form")
    return value
