"""The standard-library Ed25519 verifier: RFC 8032 vectors, and the same verdict as libsodium (PyNaCl)."""

from __future__ import annotations

import hashlib
from typing import Any, cast

import nacl.bindings as sodium
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError

from creditflow.ledger import ed25519_pure
from creditflow.ledger.ed25519_pure import verify

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 §7.1, "TEST 1024": the 1023-byte message, as published (64 hex digits a line).
_TEST_1024_MESSAGE = bytes.fromhex(
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)

# (name, secret seed, public key, message, signature), all hex except the 1023-byte message.
RFC8032_VECTORS: list[tuple[str, str, str, bytes, str]] = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        b"",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        bytes.fromhex("72"),
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        bytes.fromhex("af82"),
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        _TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
]

# A point of order 8 (its multiples are the eight small-order points; checked with libsodium below).
ORDER_8_POINT = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
IDENTITY = bytes([1]) + bytes(31)
BASE_POINT = bytes([0x58]) + bytes([0x66]) * 31


def nacl_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """libsodium's verdict (crypto_sign_verify_detached), as the normal path sees it."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def small_order_points() -> list[bytes]:
    points = [ORDER_8_POINT]
    for _ in range(7):
        points.append(sodium.crypto_core_ed25519_add(points[-1], ORDER_8_POINT))
    return points


def scalar(data: bytes) -> bytes:
    """A scalar mod L from arbitrary bytes (SHA-512 then libsodium's reduction)."""
    return bytes(sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(data).digest()))


def signed(seed: bytes, message: bytes) -> tuple[bytes, bytes]:
    key = nacl.signing.SigningKey(seed)
    return bytes(key.verify_key), bytes(key.sign(message).signature)


# --- RFC 8032 §7.1 -------------------------------------------------------------------------------


def test_test_1024_message_is_the_published_one() -> None:
    assert len(_TEST_1024_MESSAGE) == 1023
    # libsodium signing the published message with the published seed gives the published signature.
    name, seed, public, message, sig = RFC8032_VECTORS[3]
    assert name == "TEST 1024"
    assert signed(bytes.fromhex(seed), message) == (bytes.fromhex(public), bytes.fromhex(sig))


@pytest.mark.parametrize(
    ("seed", "public", "message", "sig"),
    [v[1:] for v in RFC8032_VECTORS],
    ids=[v[0] for v in RFC8032_VECTORS],
)
def test_rfc8032_vectors_verify(seed: str, public: str, message: bytes, sig: str) -> None:
    public_key, signature = bytes.fromhex(public), bytes.fromhex(sig)
    assert verify(public_key, message, signature) is True
    # The vector is also what libsodium produces, so the table itself is not mistyped.
    assert signed(bytes.fromhex(seed), message) == (public_key, signature)


@pytest.mark.parametrize(
    ("seed", "public", "message", "sig"),
    [v[1:] for v in RFC8032_VECTORS],
    ids=[v[0] for v in RFC8032_VECTORS],
)
def test_rfc8032_vectors_reject_other_message_and_key(seed: str, public: str, message: bytes, sig: str) -> None:
    public_key, signature = bytes.fromhex(public), bytes.fromhex(sig)
    assert verify(public_key, message + b"\x00", signature) is False
    other_key = bytes.fromhex(RFC8032_VECTORS[0][2] if public != RFC8032_VECTORS[0][2] else RFC8032_VECTORS[1][2])
    assert verify(other_key, message, signature) is False


def test_base_point_is_the_rfc_one() -> None:
    x, y, z, _ = ed25519_pure._B
    z_inv = pow(z, -1, P)
    # RFC 8032 §5.1: B = (X(P), Y(P)) with y = 4/5 and x even.
    assert x * z_inv % P == 15112221349535400772501151409588531511454012693041857206046113283949847762202
    assert y * z_inv % P == 46316835694926478169428394003475163141307993866256225615783033603165251855960
    assert y * z_inv % P == 4 * pow(5, -1, P) % P


# --- agreement with libsodium --------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_agrees_with_pynacl_on_honest_signatures(seed: bytes, message: bytes) -> None:
    public_key, signature = signed(seed, message)
    assert nacl_verify(public_key, message, signature) is True
    assert verify(public_key, message, signature) is True


@settings(max_examples=50, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=64),
    position=st.integers(min_value=0, max_value=95),
    mask=st.integers(min_value=1, max_value=255),
)
def test_agrees_with_pynacl_on_tampered_inputs(seed: bytes, message: bytes, position: int, mask: int) -> None:
    public_key, signature = signed(seed, message)
    blob = bytearray(public_key + signature)
    blob[position] ^= mask
    tampered_key, tampered_sig = bytes(blob[:32]), bytes(blob[32:])
    assert verify(tampered_key, message, tampered_sig) == nacl_verify(tampered_key, message, tampered_sig)


@settings(max_examples=50, deadline=None)
@given(
    public_key=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=16),
    signature=st.binary(min_size=64, max_size=64),
)
def test_agrees_with_pynacl_on_random_bytes(public_key: bytes, message: bytes, signature: bytes) -> None:
    assert verify(public_key, message, signature) == nacl_verify(public_key, message, signature)


def test_small_order_points_are_what_libsodium_says() -> None:
    points = small_order_points()
    assert points[7] == IDENTITY  # [8]T = identity
    assert points[3] != IDENTITY  # [4]T is not: T has order exactly 8
    assert len(set(points)) == 8
    assert not any(sodium.crypto_core_ed25519_is_valid_point(p) for p in points)


@pytest.mark.parametrize("point", small_order_points(), ids=[f"{i + 1}T" for i in range(8)])
def test_small_order_public_key_is_refused(point: bytes) -> None:
    # With A = identity, R = B and S = 1 satisfy [S]B = R + [k]A for every message: a forgery
    # that anyone can make. For the other small-order keys it works whenever [k]A is the identity.
    forged = BASE_POINT + (1).to_bytes(32, "little")
    for message in (b"", b"pay 1,000,000.00 CNY", b"x" * 50):
        assert nacl_verify(point, message, forged) is False
        assert verify(point, message, forged) is False


@pytest.mark.parametrize("point", small_order_points(), ids=[f"{i + 1}T" for i in range(8)])
def test_small_order_r_is_refused(point: bytes) -> None:
    public_key, signature = signed(b"\x07" * 32, b"m")
    forged = point + signature[32:]
    assert nacl_verify(public_key, b"m", forged) is False
    assert verify(public_key, b"m", forged) is False


def test_agrees_with_pynacl_on_mixed_order_keys_and_r() -> None:
    # A' = [a]B + T and R' = [r]B (+ T) with T of order 8: cofactored and cofactorless verification
    # disagree on such signatures, and the verdict must be libsodium's for each of them.
    verdicts: list[bool] = []
    for i in range(48):
        a = scalar(b"a%d" % i)
        r = scalar(b"r%d" % i)
        message = b"message %d" % i
        public_key = sodium.crypto_core_ed25519_add(sodium.crypto_scalarmult_ed25519_base_noclamp(a), ORDER_8_POINT)
        r_point = sodium.crypto_scalarmult_ed25519_base_noclamp(r)
        if i % 2:
            r_point = sodium.crypto_core_ed25519_add(r_point, ORDER_8_POINT)
        k = sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(r_point + public_key + message).digest())
        s = sodium.crypto_core_ed25519_scalar_add(r, sodium.crypto_core_ed25519_scalar_mul(k, a))
        signature = r_point + s
        expected = nacl_verify(public_key, message, signature)
        assert verify(public_key, message, signature) == expected, i
        verdicts.append(expected)
    assert any(verdicts)
    assert False in verdicts


# --- refusals ------------------------------------------------------------------------------------


def test_every_single_bit_flip_of_signature_or_message_fails() -> None:
    public_key, signature = signed(b"\x2a" * 32, b"creditflow/op/v1\x00{}")
    message = b"creditflow/op/v1\x00{}"
    assert verify(public_key, message, signature) is True
    for bit in range(len(signature) * 8):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert verify(public_key, message, bytes(flipped)) is False, bit
    for bit in range(len(message) * 8):
        flipped = bytearray(message)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert verify(public_key, bytes(flipped), signature) is False, bit


def test_every_single_bit_flip_of_public_key_fails() -> None:
    public_key, signature = signed(b"\x2b" * 32, b"m")
    for bit in range(len(public_key) * 8):
        flipped = bytearray(public_key)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert verify(bytes(flipped), b"m", signature) is False, bit


def test_non_canonical_s_is_refused() -> None:
    public_key, signature = signed(b"\x01" * 32, b"m")
    s = int.from_bytes(signature[32:], "little")
    for bad_s in (s + L, L, 2**256 - 1):
        malleated = signature[:32] + bad_s.to_bytes(32, "little")
        assert verify(public_key, b"m", malleated) is False
        assert nacl_verify(public_key, b"m", malleated) is False


def test_points_that_do_not_decode_are_refused() -> None:
    public_key, signature = signed(b"\x03" * 32, b"m")
    # y >= p: the non-canonical encodings p .. 2^255 - 1 (here with both sign bits).
    non_canonical = [(y | sign << 255).to_bytes(32, "little") for y in (P, P + 5, 2**255 - 1) for sign in (0, 1)]
    # x = 0 with the sign bit set (y = 1 and y = -1 are the only points with x = 0).
    negative_zero = [(1 | 1 << 255).to_bytes(32, "little"), ((P - 1) | 1 << 255).to_bytes(32, "little")]
    # y = 2 has no x on the curve ((y^2 - 1) / (d y^2 + 1) is not a square): found by libsodium.
    not_on_curve = [y.to_bytes(32, "little") for y in range(2, 40) if not _sodium_decodes(y.to_bytes(32, "little"))]
    assert not_on_curve
    for encoding in non_canonical + negative_zero + not_on_curve:
        assert verify(encoding, b"m", signature) is False
        assert verify(public_key, b"m", encoding + signature[32:]) is False
        assert nacl_verify(encoding, b"m", signature) is False


def _sodium_decodes(encoding: bytes) -> bool:
    """Whether libsodium accepts the bytes as a curve point (point addition decodes both operands)."""
    try:
        sodium.crypto_core_ed25519_add(encoding, BASE_POINT)
    except Exception:
        return False
    return True


@pytest.mark.parametrize(
    ("key_length", "sig_length"),
    [(0, 64), (31, 64), (33, 64), (64, 64), (32, 0), (32, 63), (32, 65), (32, 128), (0, 0)],
)
def test_wrong_lengths_return_false(key_length: int, sig_length: int) -> None:
    public_key, signature = signed(b"\x05" * 32, b"m")
    key = (public_key * 3)[:key_length]
    sig = (signature * 3)[:sig_length]
    assert verify(key, b"m", sig) is False


def test_wrong_types_return_false_and_bytes_like_is_accepted() -> None:
    public_key, signature = signed(b"\x06" * 32, b"m")
    loose = cast(Any, verify)  # the annotations say bytes; other bytes-like objects work too
    assert loose(bytearray(public_key), memoryview(b"m"), bytearray(signature)) is True
    assert loose(public_key.hex(), b"m", signature) is False
    assert loose(public_key, "m", signature) is False
    assert loose(public_key, b"m", None) is False
    assert loose(None, None, None) is False
