"""C2SP signed notes, checkpoints and cosignatures (creditflow.ledger.note): round trips, the spec's rules
for unknown and failing signatures, and tamper detection. Conformance against the Go implementation is in
tests/integration/test_go_conformance.py."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditflow.ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    Note,
    NoteError,
    NoteSigner,
    VerifierKey,
    cosignature_time,
    key_id,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    parse_vkey,
)
from creditflow.ledger.signing import Signer

ORIGIN = "example.com/log"


def log_signer() -> NoteSigner:
    return NoteSigner(ORIGIN, Signer(bytes(range(32)), "log-1"))


def witness(name: str = "w.example/1", seed: int = 7) -> NoteSigner:
    return NoteSigner(name, Signer(bytes([seed]) * 32, name), COSIGNATURE_V1)


def signed(size: int = 5, root: bytes = b"\x11" * 32, *witnesses: NoteSigner) -> Note:
    text = Checkpoint(ORIGIN, size, root).text()
    log = log_signer()
    return Note(text, (log.sign(text), *(w.sign(text, 1_700_000_000 + i) for i, w in enumerate(witnesses))))


def test_key_id_is_the_specs_hash() -> None:
    import hashlib

    key = bytes(32)
    assert key_id("a/b", ED25519, key) == hashlib.sha256(b"a/b\n\x01" + key).digest()[:4]
    assert key_id("a/b", COSIGNATURE_V1, key) != key_id("a/b", ED25519, key)


@given(st.binary(min_size=32, max_size=32), st.sampled_from([ED25519, COSIGNATURE_V1]))
def test_vkey_round_trips(public: bytes, sig_type: int) -> None:
    key = VerifierKey("log.example/x", sig_type, public)
    assert parse_vkey(key.encode()) == key


def test_vkey_with_a_wrong_id_is_refused() -> None:
    vkey = log_signer().verifier.encode()
    name, hex_id, raw = vkey.split("+", 2)
    with pytest.raises(NoteError, match="does not match"):
        parse_vkey(f"{name}+{'0' * 8 if hex_id != '0' * 8 else '1' * 8}+{raw}")
    with pytest.raises(NoteError):
        parse_vkey("no-plus-here")


def test_checkpoint_text_round_trips_and_opens() -> None:
    w1, w2 = witness("w.example/1", 1), witness("w.example/2", 2)
    note = signed(5, b"\x22" * 32, w1, w2)
    opened = open_checkpoint(note.encode(), log_signer().verifier, [w1.verifier, w2.verifier], 2)
    assert opened.checkpoint == Checkpoint(ORIGIN, 5, b"\x22" * 32)
    assert set(opened.witnesses) == {w1.verifier, w2.verifier}
    assert parse_note(note.encode()) == note
    assert cosignature_time(note.signatures[1]) == 1_700_000_000


def test_quorum_not_met_is_refused() -> None:
    w1, w2 = witness("w.example/1", 1), witness("w.example/2", 2)
    note = signed(5, b"\x22" * 32, w1)
    with pytest.raises(NoteError, match="1 of the trusted witnesses cosigned; the policy needs 2"):
        open_checkpoint(note.encode(), log_signer().verifier, [w1.verifier, w2.verifier], 2)


def test_unknown_signatures_are_ignored_but_a_failing_known_one_rejects_the_note() -> None:
    stranger = witness("stranger.example/w", 9)
    note = signed(3, b"\x01" * 32, stranger)
    assert open_checkpoint(note.encode(), log_signer().verifier).witnesses == ()
    # the same name and key id as a trusted witness, but a broken signature: reject the whole note
    w = witness()
    good = signed(3, b"\x01" * 32, w)
    sig = good.signatures[1]
    broken = Note(good.text, (good.signatures[0], type(sig)(sig.name, sig.key_id, sig.signature[:-1] + b"\x00")))
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(broken.encode(), log_signer().verifier, [w.verifier], 0)


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255))
def test_any_changed_byte_of_the_text_fails(position: int, value: int) -> None:
    note = signed(12345, bytes(range(32)))
    data = bytearray(note.encode().encode())
    text_len = len(note.text.encode())
    i = position % text_len
    if data[i] == value or value < 0x20 or value > 0x7E:
        return
    data[i] = value
    with pytest.raises(NoteError):
        open_checkpoint(bytes(data), log_signer().verifier)


def test_wrong_origin_and_wrong_log_key_are_refused() -> None:
    note = signed()
    other = NoteSigner(ORIGIN, Signer(b"\x05" * 32, "log-2"))
    with pytest.raises(NoteError, match="not signed by the trusted log key"):
        open_checkpoint(note.encode(), other.verifier)
    elsewhere = NoteSigner("elsewhere.example/log", Signer(bytes(range(32)), "log-1"))
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(note.encode(), elsewhere.verifier)


@pytest.mark.parametrize(
    "text",
    [
        "example.com/log\n05\n" + base64.b64encode(bytes(32)).decode() + "\n",  # leading zero
        "example.com/log\n5\n" + base64.b64encode(bytes(31)).decode() + "\n",  # short root
        "example.com/log\n5\n",
        "\n5\n" + base64.b64encode(bytes(32)).decode() + "\n",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    "data",
    [
        b"no blank line\n\xe2\x80\x94 a b\n",
        b"text\n\n",
        b"text\n\n- a AAAAAAA=\n",
        b"t\x01\n\n\xe2\x80\x94 a AAAAAAA=\n",
        b"\xff\n\n",
    ],
)
def test_malformed_notes_are_refused(data: bytes) -> None:
    with pytest.raises(NoteError):
        parse_note(data)
