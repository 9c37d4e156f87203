"""Ed25519 signatures over canonical bytes, with a context prefix per kind of message.

The prefix (domain separation) means a signature over an operation can never be replayed as a
signature over a tree head, or vice versa, even if the bytes happened to coincide.
Verification uses libsodium through PyNaCl when it is installed (about 16,000 checks/s per core
here) and falls back to the pure-Python RFC 8032 code in `ed25519_pure`, so the verifier also runs
where nothing but the standard library is available.
"""

from __future__ import annotations

from typing import Any

from creditflow.kernel.encoding import encode

__all__ = ["HAVE_NACL", "OP_CONTEXT", "STH_CONTEXT", "Signer", "op_message", "verify_signature"]

OP_CONTEXT = b"creditflow/op/v1\x00"
STH_CONTEXT = b"creditflow/sth/v1\x00"

try:  # pragma: no branch - which branch runs depends on the installation
    from nacl.exceptions import BadSignatureError
    from nacl.signing import SigningKey, VerifyKey

    def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        try:
            VerifyKey(public_key).verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True

    HAVE_NACL = True
except ImportError:  # exercised by tests/unit/test_verifier_stdlib.py (a fresh interpreter under `python -S`)
    # RFC 8032 Ed25519 in pure Python: far slower than libsodium, and needs nothing installed.
    from creditflow.ledger.ed25519_pure import verify as verify_signature

    HAVE_NACL = False


class Signer:
    """An Ed25519 private key in memory. Keys at rest are encrypted (see `creditflow.ledger.custody`)."""

    def __init__(self, seed: bytes, key_id: str):
        if not HAVE_NACL:
            raise RuntimeError("signing needs PyNaCl (pip install pynacl); only verification runs without it")
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed has 32 bytes")
        self._key = SigningKey(seed)
        self.key_id = key_id
        self.public_key = bytes(self._key.verify_key)

    @classmethod
    def generate(cls, key_id: str) -> Signer:
        return cls(bytes(SigningKey.generate()), key_id)

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

    def sign_op(self, payload: dict[str, Any]) -> bytes:
        return self.sign(op_message(payload))


def op_message(payload: dict[str, Any]) -> bytes:
    """The exact bytes an operation's signature covers."""
    return OP_CONTEXT + encode(payload)
