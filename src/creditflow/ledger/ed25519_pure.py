"""A pure-Python Ed25519 signature *verifier* (RFC 8032 §5.1.7), standard library only.

Why this exists: the log's signatures must be checkable by an auditor who has nothing but a Python
interpreter and its standard library: no compiler, no libsodium, no trust in our wheels.  The normal
path (`creditflow.ledger.signing`) verifies with libsodium through PyNaCl, some 25 times faster (tens of
microseconds against 1-3 ms here); this module is the fallback used when PyNaCl is absent, and the
reference an auditor can read end to end.  It verifies only: signing needs constant-time arithmetic,
which Python cannot give.

What is checked, in the order of RFC 8032 §5.1.7:

1. the signature has 64 bytes and the public key 32; ``S`` (the second half of the signature, little
   endian) is below the group order ``L``, otherwise the signature is malleable and refused;
2. the public key ``A`` and the first half ``R`` of the signature decode as curve points under
   §5.1.3 (non-canonical ``y >= p``, ``x = 0`` with the sign bit set, and ``y`` without a matching
   ``x`` are all refused);
3. ``k = SHA-512(R || A || M)`` read little endian and reduced mod ``L``, and the group equation
   ``[S]B = R + [k]A`` holds.  §5.1.7 allows this cofactorless form in place of the cofactored
   ``[8][S]B = [8]R + [8][k]A``.

Like libsodium, ``A`` and ``R`` of small order (the eight points ``P`` with ``[8]P`` = identity) are
refused: with such a public key anybody can make a "valid" signature.  With these choices this
verifier is meant to give libsodium's ``crypto_sign_verify_detached`` verdict on every input, so the
log verifies the same way whichever implementation is used; tests/unit/test_ed25519_pure.py checks
that against PyNaCl, including on small-order and mixed-order keys where Ed25519 verifiers commonly
disagree.

Points use extended twisted-Edwards coordinates ``(X, Y, Z, T)`` with ``x = X/Z``, ``y = Y/Z`` and
``x*y = T/Z`` (RFC 8032 §5.1.4), so no field inversion is needed inside the scalar multiplication, and
``[S]B - [k]A`` is computed in one shared double-and-add pass (Straus/Shamir).  One verification takes a
few milliseconds on CPython.  Nothing here is constant time; verification handles no secrets.
"""

from __future__ import annotations

import hashlib

__all__ = ["verify"]

# Field GF(p), group order L and curve constant d of edwards25519 (RFC 8032 §5.1).
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, -1, _P) % _P
_D2 = 2 * _D % _P
# A square root of -1 in GF(p): 2 is not a square, so 2^((p-1)/4) squares to 2^((p-1)/2) = -1.
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

# (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z; all values reduced mod p.
_Point = tuple[int, int, int, int]
_IDENTITY: _Point = (0, 1, 1, 0)


def _add(p1: _Point, p2: _Point) -> _Point:
    """Complete addition on -x^2 + y^2 = 1 + d x^2 y^2 in extended coordinates (RFC 8032 §5.1.4)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _D2 % _P * t2 % _P
    d = 2 * z1 * z2 % _P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(p1: _Point) -> _Point:
    """Dedicated doubling (RFC 8032 §5.1.4); cheaper than ``_add(p1, p1)``."""
    x1, y1, z1, _ = p1
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    h = a + b
    s = x1 + y1
    e = h - s * s % _P
    g = a - b
    f = c + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _negate(p1: _Point) -> _Point:
    x1, y1, z1, t1 = p1
    return ((-x1) % _P, y1, z1, (-t1) % _P)


def _equal(p1: _Point, p2: _Point) -> bool:
    """Projective equality: x1/z1 == x2/z2 and y1/z1 == y2/z2."""
    x1, y1, z1, _ = p1
    x2, y2, z2, _ = p2
    return (x1 * z2 - x2 * z1) % _P == 0 and (y1 * z2 - y2 * z1) % _P == 0


def _has_small_order(p1: _Point) -> bool:
    """True for the eight points of order dividing 8 (the cofactor)."""
    return _equal(_double(_double(_double(p1))), _IDENTITY)


def _decode_point(data: bytes) -> _Point | None:
    """Decode 32 bytes to a point as in RFC 8032 §5.1.3, or None if they encode no point."""
    if len(data) != 32:
        return None
    encoded = int.from_bytes(data, "little")
    x_sign = encoded >> 255
    y = encoded & ((1 << 255) - 1)
    if y >= _P:
        return None
    # x^2 = u / v with u = y^2 - 1 and v = d y^2 + 1 (v is never 0 because d is not a square).
    yy = y * y % _P
    u = (yy - 1) % _P
    v = (_D * yy + 1) % _P
    # Candidate root x = (u/v)^((p+3)/8) = u v^3 (u v^7)^((p-5)/8), with one exponentiation.
    v3 = v * v % _P * v % _P
    uv3 = u * v3 % _P
    x = uv3 * pow(uv3 * v3 % _P * v % _P, (_P - 5) // 8, _P) % _P
    vxx = v * x % _P * x % _P
    if vxx == u:
        pass
    elif vxx == (-u) % _P:
        x = x * _SQRT_M1 % _P
    else:
        return None  # u/v is not a square: no point has this y
    if x == 0 and x_sign == 1:
        return None
    if x & 1 != x_sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _decode_base_point() -> _Point:
    # B has y = 4/5 and an even ("positive") x; its encoding is 0x58 followed by 31 bytes 0x66.
    point = _decode_point(bytes([0x58]) + bytes([0x66]) * 31)
    assert point is not None
    return point


_B = _decode_base_point()


def _double_scalar_mult(s: int, p1: _Point, k: int, p2: _Point) -> _Point:
    """[s]p1 + [k]p2 in one left-to-right pass over the bits of both scalars (Straus/Shamir)."""
    table: tuple[_Point, _Point, _Point, _Point] = (_IDENTITY, p1, p2, _add(p1, p2))
    acc = _IDENTITY
    for i in range(max(s.bit_length(), k.bit_length()) - 1, -1, -1):
        acc = _double(acc)
        index = ((s >> i) & 1) | (((k >> i) & 1) << 1)
        if index:
            acc = _add(acc, table[index])
    return acc


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` under ``public_key``.

    Never raises: wrong types or lengths, ``S >= L``, points that do not decode or have small order,
    and signatures that do not satisfy the group equation all give False.
    """
    bytes_like = (bytes, bytearray, memoryview)
    if not (
        isinstance(public_key, bytes_like) and isinstance(message, bytes_like) and isinstance(signature, bytes_like)
    ):
        return False
    public_key, message, signature = bytes(public_key), bytes(message), bytes(signature)
    if len(public_key) != 32 or len(signature) != 64:
        return False
    r_bytes, s_bytes = signature[:32], signature[32:]
    s = int.from_bytes(s_bytes, "little")
    if s >= _L:
        return False
    a_point = _decode_point(public_key)
    if a_point is None or _has_small_order(a_point):
        return False
    r_point = _decode_point(r_bytes)
    if r_point is None or _has_small_order(r_point):
        return False
    k = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little") % _L
    # [S]B - [k]A must be R.
    return _equal(_double_scalar_mult(s, _B, k, _negate(a_point)), r_point)
