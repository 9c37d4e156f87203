"""Settlement accounts: the ISO 20022 rules a payout account must meet when it is saved, and the waiting
period of an account change (pure: no SQL, no clock).

The fields go into a pain.001.001.09 file (`creditflow.financing.pain001`), so they are checked against
what that schema permits, and a little more:

- ``account_name`` becomes ``Cdtr/Nm`` or ``Dbtr/Nm``: ``Max140Text``, 1 to 140 characters. The official
  pain.001.001.09 schema has no pattern on it (the restricted Latin set ``a-z A-Z 0-9 / - ? : ( ) . , ' +``
  and space is the EPC's rule for SEPA files, not ISO 20022's; CIPS/CNAPS use Chinese names), so Chinese
  names are allowed. What XML 1.0 cannot carry, or what a person reading a payment instruction cannot see,
  is refused: control characters (Unicode category Cc: NUL..US, DEL, C1; tab, CR and LF too), format
  characters (Cf: bidi overrides, zero-width joiners, which can make one name look like another),
  surrogates, private-use and unassigned code points, line and paragraph separators, and every space but
  U+0020 and the ideographic space U+3000. No leading or trailing space; the text must be in Unicode NFC
  (so two names that look the same compare the same). Code ``invalid_account_name``.
- ``account_number`` becomes ``CdtrAcct/Id``: an IBAN (ISO 13616, ``IBAN2007Identifier``, with its mod-97
  check) goes into ``Id/IBAN``; anything else is a domestic account number (Chinese bank account numbers are
  digits) in ``Id/Othr/Id`` (``Max34Text``), limited to 1 to 34 ASCII letters and digits: no spaces, no
  dashes. A value shaped like an IBAN (two capitals, two digits, ...) must pass the IBAN check. Code
  ``invalid_account_number``.
- ``bic`` becomes ``FinInstnId/BICFI``: ``BICFIDec2014Identifier`` (ISO 9362: 8 or 11 of ``A-Z0-9``, the
  5th and 6th letters the country). Code ``invalid_bic``.

Each refusal is a 422 naming the field and the rule.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from creditflow.kernel.errors import InvalidInput

NAME_MAX = 140  # Max140Text
NUMBER_MAX = 34  # Max34Text (Othr/Id); an IBAN is at most 34 too
_BIC_RE = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
_IBAN_RE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Za-z0-9]{1,30}")
_OTHER_RE = re.compile(r"[A-Za-z0-9]{1,34}")
_IBAN_SHAPED = re.compile(r"[A-Z]{2}[0-9]{2}")
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_ALLOWED_SPACES = {" ", "\u3000"}


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an account name, or None."""
    if not name:
        return "the account name is empty (Max140Text: 1 to 140 characters)"
    if len(name) > NAME_MAX:
        return f"the account name has {len(name)} characters; Max140Text allows at most {NAME_MAX}"
    for index, char in enumerate(name):
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES or (category == "Zs" and char not in _ALLOWED_SPACES):
            return (
                f"the account name has a character that may not be in a payment instruction at position "
                f"{index + 1} (U+{ord(char):04X}, {category}: control, format, separator, private-use or unassigned)"
            )
    if name != name.strip(" \u3000"):
        return "the account name starts or ends with a space"
    if not unicodedata.is_normalized("NFC", name):
        return "the account name is not in Unicode NFC"
    return None


def iban_valid(value: str) -> bool:
    """ISO 13616: the schema's shape and the mod-97 check (letters as 10..35, the first four moved last)."""
    if not _IBAN_RE.fullmatch(value) or len(value) > NUMBER_MAX:
        return False
    rearranged = value[4:] + value[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged.upper())
    return int(digits) % 97 == 1


def is_iban(value: str) -> bool:
    return bool(_IBAN_SHAPED.match(value))


def number_problem(number: str) -> str | None:
    """Why ``number`` cannot be an account number, or None."""
    if is_iban(number):
        return None if iban_valid(number) else f"{number!r} looks like an IBAN but fails the IBAN check (ISO 13616)"
    if not _OTHER_RE.fullmatch(number):
        return f"the account number must be 1 to {NUMBER_MAX} ASCII letters and digits (no spaces or dashes)"
    return None


def bic_problem(bic: str) -> str | None:
    if not _BIC_RE.fullmatch(bic):
        return f"BIC {bic!r} is not a valid BIC (ISO 9362: 8 or 11 of A-Z and 0-9, letters 5-6 the country)"
    return None


# field -> (stable code, check)
FIELD_CODES = {
    "account_name": "invalid_account_name",
    "account_number": "invalid_account_number",
    "bic": "invalid_bic",
}


def problems(name: str, number: str, bic: str) -> list[tuple[str, str]]:
    """Every (field, message) an account breaks, in field order."""
    found = [
        ("account_name", name_problem(name)),
        ("account_number", number_problem(number)),
        ("bic", bic_problem(bic)),
    ]
    return [(f, m) for f, m in found if m is not None]


def check_account(name: str, number: str, bic: str) -> None:
    """422 with the field's stable code for the first rule an account breaks."""
    for field, message in problems(name, number, bic):
        raise InvalidInput(message, code=FIELD_CODES[field], field=field)


# --- the waiting period --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A requested account change: it takes effect at ``effective_ts_ms`` unless an admin cancels it."""

    org_id: str
    account_name: str
    account_number: str
    bic: str
    requested_ts_ms: int
    effective_ts_ms: int
    requested_by: str

    def due(self, now_ms: int) -> bool:
        return now_ms >= self.effective_ts_ms


def mask(number: str) -> str:
    """An account number as notifications show it: the last four characters."""
    return ("*" * max(0, len(number) - 4)) + number[-4:]
