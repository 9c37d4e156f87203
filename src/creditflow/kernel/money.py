"""Money as integer minor units (fen). Floats never come near money.

Amounts from people arrive as text ("1,000,000.00", "600000") and are parsed exactly with `Decimal`;
anything that is not a whole number of fen is refused rather than rounded.
"""

from __future__ import annotations

import re

from creditflow.kernel.errors import InvalidInput

CURRENCIES = frozenset({"CNY"})
MINOR_PER_MAJOR = 100
MAX_AMOUNT_MINOR = 10**17  # 1e15 yuan: far above any certificate, far below int64


def check_amount_minor(value: object, *, field: str = "amount_minor") -> int:
    """Return ``value`` if it is a positive integer number of fen within limits, else raise `InvalidInput`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be an integer number of fen", code="invalid_amount", field=field)
    if value <= 0:
        raise InvalidInput(f"{field} must be greater than zero", code="invalid_amount", field=field)
    if value > MAX_AMOUNT_MINOR:
        raise InvalidInput(f"{field} exceeds the maximum amount", code="invalid_amount", field=field)
    return value


def check_currency(value: object, *, field: str = "currency") -> str:
    if value not in CURRENCIES:
        raise InvalidInput(f"{field} must be one of {sorted(CURRENCIES)}", code="invalid_currency", field=field)
    return str(value)


_AMOUNT_RE = re.compile(r"^(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")


def parse_major(text: str, *, field: str = "amount") -> int:
    """Parse a yuan amount such as ``"1,000,000.00"`` into fen, exactly.

    Only plain ASCII digits, an optional decimal point and correctly placed thousands separators are
    read; anything else (exponents, signs, "1,00", full-width digits) is refused rather than guessed,
    and so is a fraction of a fen, however small.
    """
    cleaned = text.strip()
    if not _AMOUNT_RE.fullmatch(cleaned):
        raise InvalidInput(f"{field}: {text!r} is not an amount like 1,234.56", code="invalid_amount", field=field)
    whole, _, fraction = cleaned.replace(",", "").partition(".")
    if fraction.rstrip("0")[2:]:
        raise InvalidInput(f"{field}: {text!r} has a fraction of a fen", code="invalid_amount", field=field)
    whole = whole.lstrip("0") or "0"
    if len(whole) > len(str(MAX_AMOUNT_MINOR)):
        raise InvalidInput(f"{field}: {text!r} exceeds the maximum amount", code="invalid_amount", field=field)
    minor = int(whole) * MINOR_PER_MAJOR + int((fraction + "00")[:2])
    return check_amount_minor(minor, field=field)


def format_minor(amount_minor: int, currency: str = "CNY") -> str:
    """``123456789`` -> ``"1,234,567.89 CNY"``."""
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), MINOR_PER_MAJOR)
    return f"{sign}{major:,}.{minor:02d} {currency}"
