"""Unified Social Credit Code (统一社会信用代码), GB 32100-2015.

18 characters from a 31-character alphabet (digits and upper-case letters without I, O, Z, S, V):
registration authority (1), organisation type (1), administrative division (6 digits),
organisation code (9), check character (1). The check character makes typos and made-up codes fail:
C18 = 31 - (sum(value(Ci) * Wi) mod 31), with 31 mapped to 0.
"""

from __future__ import annotations

from creditflow.kernel.errors import InvalidInput

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_character(first17: str) -> str:
    """The check character for the first 17 characters of a code."""
    if len(first17) != 17 or any(ch not in _VALUE for ch in first17):
        raise ValueError("need 17 characters from the USCC alphabet")
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def validate_uscc(code: str, *, field: str = "uscc") -> str:
    """Return the code upper-cased if it is a well-formed USCC with the right check character."""
    value = code.strip()
    if not value.isascii():
        raise InvalidInput(f"{field} must be ASCII letters and digits", code="invalid_uscc", field=field)
    value = value.upper()
    if len(value) != 18:
        raise InvalidInput(f"{field} must have 18 characters, got {len(value)}", code="invalid_uscc", field=field)
    bad = [ch for ch in value if ch not in _VALUE]
    if bad:
        raise InvalidInput(
            f"{field} contains characters outside the USCC alphabet: {''.join(bad)!r}",
            code="invalid_uscc",
            field=field,
        )
    if not value[2:8].isdigit():
        raise InvalidInput(f"{field}: characters 3-8 must be a division code", code="invalid_uscc", field=field)
    expected = check_character(value[:17])
    if value[17] != expected:
        raise InvalidInput(
            f"{field}: check character is {value[17]!r}, expected {expected!r}",
            code="invalid_uscc",
            field=field,
        )
    return value


def make_uscc(first17: str) -> str:
    """Complete a 17-character prefix with its check character (for tests, demos and simulators)."""
    return first17 + check_character(first17)
