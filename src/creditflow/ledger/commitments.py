"""Piece commitments: what a holder sees of an upstream piece it may not read (issue 13, need to know).

A holder sees its own pieces in clear; of the pieces above them on the walk to the certificate's first
piece it sees the tier and a commitment to the piece, never the holder or the amount. The commitment is

    commitment = SHA-256( b"creditflow/piece-commitment/v1\\x00" || CJ1({certificate_id, piece_id, holder,
                                                                      amount_minor, salt}) )
    salt       = HMAC-SHA256( key, b"creditflow/piece-salt/v1\\x00" || piece_id )   (hex in the CJ1 object)

with ``key`` one random 32-byte key per database (`piece_commitment_key`). Why salted: amounts are small
integers and holders a short list of organisations, so an unsalted hash of (piece, holder, amount) would
be opened by trying every candidate; with a 256-bit salt no one without it can test a guess. Why the salt
is derived, not stored: a piece's commitment is the same on every read (nothing to keep per piece), and
the salt of one piece tells nothing about another's. Who sees a piece in clear (its holder, its sender,
the issuer, the operator, the auditor) also gets its salt: the opening, which lets any of them prove to a
third party what the commitment hides, one piece at a time, without revealing the key.

Pure: the key is passed in.
"""

from __future__ import annotations

import hashlib
import hmac

from creditflow.kernel.encoding import encode

COMMITMENT_DOMAIN = b"creditflow/piece-commitment/v1\x00"
SALT_DOMAIN = b"creditflow/piece-salt/v1\x00"


def salt(key: bytes, piece_id: str) -> str:
    """The piece's salt (64 hex characters)."""
    return hmac.new(key, SALT_DOMAIN + piece_id.encode(), hashlib.sha256).hexdigest()


def commitment(*, certificate_id: str, piece_id: str, holder: str, amount_minor: int, salt_hex: str) -> str:
    """The commitment (64 hex characters) to a piece's holder and amount under ``salt_hex``; anyone given
    the opening (holder, amount, salt) recomputes it with this function alone."""
    body = encode(
        {
            "certificate_id": certificate_id,
            "piece_id": piece_id,
            "holder": holder,
            "amount_minor": amount_minor,
            "salt": salt_hex,
        }
    )
    return hashlib.sha256(COMMITMENT_DOMAIN + body).hexdigest()
