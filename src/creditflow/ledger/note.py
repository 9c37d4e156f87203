"""C2SP signed notes, checkpoints and cosignatures: the log's heads in the transparency ecosystem's format.

Standard library only (plus `signing`, which falls back to pure-Python Ed25519), so the outsider's
verifier, the witness and the monitor run where nothing else is installed.

* signed-note (c2sp.org/signed-note): text ending in a newline, a blank line, then lines
  ``— <name> base64(key id || signature)``. Key id = SHA-256(name || 0x0A || type || public key)[:4].
  Verifier keys ("vkeys") are ``name+hexid+base64(type || public key)``.
* tlog-checkpoint (c2sp.org/tlog-checkpoint): the note text ``origin\\nsize\\nbase64(root)\\n`` plus
  optional extension lines; the log signs it with an Ed25519 note signature (type 0x01).
* tlog-cosignature (c2sp.org/tlog-cosignature): a witness's type 0x04 signature over
  ``cosignature/v1\\ntime <t>\\n`` + the checkpoint text; the signature bytes are ``u64 t || ed25519``.

Verification follows signed-note's rules: signatures from unknown keys are ignored, a known key whose
signature fails makes the whole note invalid, and a note with no valid signature from a known key is
rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from creditflow.ledger.signing import Signer, verify_signature

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
COSIGNATURE_HEADER = "cosignature/v1\n"
EM_DASH = "\u2014"
MAX_SIGNATURES = 32  # signed-note: verifiers must accept at least 16
MAX_NOTE_BYTES = 1 << 20
_NAME_RE = re.compile(r"^[^\s+]+$")
_DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class NoteError(ValueError):
    """A malformed note, key or checkpoint, or one that does not verify; the message says which."""


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte key id signed-note recommends (and tlog-cosignature requires)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def check_name(name: str) -> str:
    """Key names (and so log origins used as key names) are non-empty, with no spaces and no '+'."""
    if not name or not _NAME_RE.fullmatch(name) or any(ord(c) < 0x20 for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A trusted public key: who (name), which algorithm (0x01 log, 0x04 witness cosigner), the key."""

    name: str
    sig_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    def encode(self) -> str:
        """``name+hexid+base64(type || key)``: the one line an outsider pastes into a policy."""
        raw = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{raw}"

    def verify(self, text: str, signature: bytes) -> bool:
        """Check one signature (the bytes after the 4-byte key id) over the note ``text``."""
        if self.sig_type == ED25519:
            return verify_signature(self.public_key, text.encode(), signature)
        if self.sig_type == COSIGNATURE_V1:
            if len(signature) != 8 + 64:
                return False
            (timestamp,) = struct.unpack(">Q", signature[:8])
            if timestamp >= 1 << 63:
                return False
            return verify_signature(self.public_key, cosigned_message(text, timestamp), signature[8:])
        return False


def parse_vkey(vkey: str) -> VerifierKey:
    """Parse ``name+hexid+base64(type || key)``; the id must match the one computed from the rest."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key is name+hexid+base64key")
    name, hex_id, raw64 = parts
    check_name(name)
    try:
        raw = base64.b64decode(raw64, validate=True)
        wanted = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"verifier key is not well encoded: {exc}") from None
    if len(wanted) != 4 or len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
        raise NoteError("verifier key must be an Ed25519 (0x01) or cosignature/v1 (0x04) key of 32 bytes")
    key = VerifierKey(name, raw[0], raw[1:])
    if key.key_id != wanted:
        raise NoteError(f"verifier key id {hex_id} does not match its name and key")
    return key


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header, time line, then the whole checkpoint text."""
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{text}".encode()


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes  # without the key id

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


class NoteSigner:
    """Signs notes as ``name`` with an Ed25519 key: type 0x01 (a log) or 0x04 (a witness's cosignature)."""

    def __init__(self, name: str, signer: Signer, sig_type: int = ED25519):
        if sig_type not in (ED25519, COSIGNATURE_V1):
            raise NoteError("only Ed25519 note signatures (0x01) and cosignatures (0x04) are supported")
        self.name = check_name(name)
        self.signer = signer
        self.sig_type = sig_type
        self.verifier = VerifierKey(name, sig_type, signer.public_key)

    def sign(self, text: str, timestamp: int | None = None) -> NoteSignature:
        check_text(text)
        if self.sig_type == ED25519:
            raw = self.signer.sign(text.encode())
        else:
            if timestamp is None or not 0 <= timestamp < 1 << 63:
                raise NoteError("a cosignature needs a timestamp in seconds")
            raw = struct.pack(">Q", timestamp) + self.signer.sign(cosigned_message(text, timestamp))
        return NoteSignature(self.name, self.verifier.key_id, raw)


def check_text(text: str) -> str:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text must not contain control characters other than newline")
    return text


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        """This note with more signatures, each (name, key id) once; the first copy wins."""
        seen = {(s.name, s.key_id) for s in self.signatures}
        added = []
        for sig in extra:
            if (sig.name, sig.key_id) not in seen:
                seen.add((sig.name, sig.key_id))
                added.append(sig)
        return Note(self.text, self.signatures + tuple(added))

    def verified_by(self, keys: Sequence[VerifierKey]) -> list[VerifierKey]:
        """The known keys whose signatures verify. Raises if a known key's signature fails (signed-note:
        reject the whole note); unknown signatures are ignored."""
        good: list[VerifierKey] = []
        for key in keys:
            for sig in self.signatures:
                if sig.name == key.name and sig.key_id == key.key_id:
                    if not key.verify(self.text, sig.signature):
                        raise NoteError(f"the signature of {key.name} does not verify")
                    if key not in good:
                        good.append(key)
        return good


def parse_note(data: str | bytes) -> Note:
    """Split a signed note into text and signature lines (the text ends at the last blank line)."""
    if isinstance(data, bytes):
        if len(data) > MAX_NOTE_BYTES:
            raise NoteError("note is too large")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("note is not valid UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in data):
        raise NoteError("note must not contain control characters other than newline")
    if not data.endswith("\n"):
        raise NoteError("note must end with a newline")
    split = data.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    lines = block.split("\n")[:-1]
    if not lines:
        raise NoteError("note has no signatures")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(EM_DASH + " "):
            raise NoteError(f"malformed signature line {line[:60]!r}")
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise NoteError(f"malformed signature line {line[:60]!r}")
        name, raw64 = fields
        check_name(name)
        try:
            raw = base64.b64decode(raw64, validate=True)
        except binascii.Error:
            raise NoteError(f"signature of {name} is not base64") from None
        if len(raw) < 5:
            raise NoteError(f"signature of {name} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


# --- checkpoints -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        return check_text("\n".join(lines) + "\n")


def parse_checkpoint(text: str) -> Checkpoint:
    """The note text of a checkpoint: origin, decimal size, base64 root, then extension lines."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has an origin, a size and a root hash line")
    origin, size_text, root64, *rest = lines[:-1]
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if not _DECIMAL_RE.fullmatch(size_text) or int(size_text) >= 1 << 63:
        raise NoteError("checkpoint size must be a decimal number without leading zeroes")
    try:
        root = base64.b64decode(root64, validate=True)
    except binascii.Error:
        raise NoteError("checkpoint root hash is not base64") from None
    if len(root) != 32:
        raise NoteError("checkpoint root hash must be 32 bytes")
    if any(not line for line in rest):
        raise NoteError("checkpoint extension lines must not be empty")
    return Checkpoint(origin, int(size_text), root, tuple(rest))


@dataclass(frozen=True, slots=True)
class OpenedCheckpoint:
    checkpoint: Checkpoint
    note: Note
    witnesses: tuple[VerifierKey, ...]  # the trusted witnesses whose cosignatures verified


def open_checkpoint(
    data: str | bytes,
    log_key: VerifierKey,
    witness_keys: Sequence[VerifierKey] = (),
    quorum: int = 0,
    origin: str | None = None,
) -> OpenedCheckpoint:
    """Verify a signed checkpoint against the log's key and a policy of witnesses.

    The log's signature is required and the origin must be the log key's name (or ``origin``); at
    least ``quorum`` of ``witness_keys`` must have cosigned. Raises `NoteError` saying what failed."""
    note = parse_note(data)
    if log_key.sig_type != ED25519:
        raise NoteError("the log key must be an Ed25519 (0x01) key")
    checkpoint = parse_checkpoint(note.text)
    expected = origin if origin is not None else log_key.name
    if checkpoint.origin != expected:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not the trusted log {expected!r}")
    if not note.verified_by([log_key]):
        raise NoteError(f"the checkpoint is not signed by the trusted log key {log_key.name}")
    witnesses = note.verified_by([k for k in witness_keys if k.sig_type == COSIGNATURE_V1])
    if len(witnesses) < quorum:
        raise NoteError(f"{len(witnesses)} of the trusted witnesses cosigned; the policy needs {quorum}")
    return OpenedCheckpoint(checkpoint, note, tuple(witnesses))


def cosignature_time(sig: NoteSignature) -> int:
    """The timestamp (seconds) a cosignature/v1 carries."""
    if len(sig.signature) != 72:
        raise NoteError("not a cosignature/v1")
    return int(struct.unpack(">Q", sig.signature[:8])[0])
