"""Log entries: a signed operation placed at a position and time by the sequencer.

Entry bytes (what the Merkle leaf hashes) are the canonical encoding of::

    {"v": 1, "seq": <leaf index>, "ts_ms": <platform time>, "op": <operation payload>,
     "sigs": [{"signer": <org id or "platform">, "key_id": ..., "sig": <hex Ed25519 over OP_CONTEXT||op>}]}

`step` is the one place where an entry is checked and applied; the live sequencer and the offline
replay both call it, so they cannot disagree about what is valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from creditflow.kernel.encoding import EncodingError, decode, encode
from creditflow.kernel.errors import BadSignature, InvalidInput
from creditflow.ledger.model import operations
from creditflow.ledger.model.certificates import Context, Effects, StateView, apply
from creditflow.ledger.model.parties import PLATFORM
from creditflow.ledger.signing import OP_CONTEXT, op_message, verify_signature

ENTRY_VERSION = 1
_SIG_RE = re.compile(r"^[0-9a-f]{128}$")


@dataclass(frozen=True, slots=True)
class SignatureBlock:
    signer: str
    key_id: str
    sig: bytes

    def to_json(self) -> dict[str, str]:
        return {"signer": self.signer, "key_id": self.key_id, "sig": self.sig.hex()}


@dataclass(frozen=True)
class SignedOperation:
    """What a client submits: the payload and its signatures. Nothing here is trusted until `step`."""

    payload: dict[str, Any]
    op: operations.Operation
    sigs: tuple[SignatureBlock, ...]

    @cached_property
    def payload_bytes(self) -> bytes:
        """Canonical bytes of the payload, encoded once (signature check and entry both need them)."""
        return encode(self.payload)

    @cached_property
    def message(self) -> bytes:
        return OP_CONTEXT + self.payload_bytes

    @classmethod
    def from_json(cls, data: Any) -> SignedOperation:
        if not isinstance(data, Mapping):
            raise InvalidInput("signed operation must be an object", field="body")
        payload = data.get("op")
        op = operations.parse(payload)
        assert isinstance(payload, dict)
        raw_sigs = data.get("sigs")
        if not isinstance(raw_sigs, list) or not raw_sigs or len(raw_sigs) > 4:
            raise InvalidInput("sigs must be a list of 1 to 4 signatures", field="sigs")
        sigs = []
        for i, raw in enumerate(raw_sigs):
            if not isinstance(raw, Mapping) or set(raw) != {"signer", "key_id", "sig"}:
                raise InvalidInput("each signature has exactly signer, key_id and sig", field=f"sigs[{i}]")
            signer, key_id, sig = raw["signer"], raw["key_id"], raw["sig"]
            if not (isinstance(signer, str) and isinstance(key_id, str) and isinstance(sig, str)):
                raise InvalidInput("signer, key_id and sig are strings", field=f"sigs[{i}]")
            if not _SIG_RE.fullmatch(sig):
                raise BadSignature("sig must be 128 lower-case hex characters", field=f"sigs[{i}].sig")
            sigs.append(SignatureBlock(signer, key_id, bytes.fromhex(sig)))
        # Re-derive the payload from the parsed op: unknown fields were refused by parse, and this makes
        # the signed bytes exactly the canonical form of what we understood.
        canonical = operations.payload(op)
        if canonical != payload:
            raise InvalidInput("operation payload is not in its normal form", field="op")
        return cls(payload=canonical, op=op, sigs=tuple(sigs))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.payload, "sigs": [s.to_json() for s in self.sigs]}


Verify = Callable[[bytes, bytes, bytes], bool]


def check_signatures(
    signed: SignedOperation,
    state: StateView,
    seq: int,
    platform_keys: Mapping[str, bytes],
    verify: Verify = verify_signature,
) -> None:
    """Every required signer has a valid signature by a key valid at ``seq``; raise `BadSignature` if not.
    ``verify`` lets the offline replay run the Ed25519 arithmetic on another core (see the verifier)."""
    message = signed.message
    needed = set(signed.op.signers())  # the actor; for a financing, the holder and the bank
    by_signer = {s.signer: s for s in signed.sigs}
    if set(by_signer) != needed or len(signed.sigs) != len(needed):
        raise BadSignature(f"operation must be signed by exactly {sorted(needed)}", field="sigs")
    for block in signed.sigs:
        if block.signer == PLATFORM:
            public = platform_keys.get(block.key_id)
        else:
            key = next((k for k in state.keys(block.signer) if k.key_id == block.key_id), None)
            if key is not None and not key.valid_at(seq):
                raise BadSignature(
                    f"key {block.key_id!r} of {block.signer!r} is not valid at this point of the log "
                    "(rotated out or not yet registered)",
                    code="key_not_valid",
                    field="sigs",
                )
            public = key.public_key if key is not None else None
        if public is None:
            raise BadSignature(f"unknown key {block.key_id!r} for {block.signer!r}", code="unknown_key", field="sigs")
        if not verify(public, message, block.sig):
            raise BadSignature(f"signature of {block.signer!r} does not verify", field="sigs")


def entry_bytes(signed: SignedOperation, seq: int, ts_ms: int) -> bytes:
    """The canonical encoding of the entry object, assembled around the already-encoded payload (the
    members in canonical order: op, seq, sigs, ts_ms, v). A test pins it to `encode` of the whole."""
    sigs = encode([s.to_json() for s in signed.sigs])
    return b'{"op":%s,"seq":%d,"sigs":%s,"ts_ms":%d,"v":%d}' % (signed.payload_bytes, seq, sigs, ts_ms, ENTRY_VERSION)


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    ts_ms: int
    signed: SignedOperation


def parse_entry(data: bytes) -> Entry:
    """Decode stored entry bytes; refuse anything non-canonical or malformed."""
    try:
        value = decode(data)
    except EncodingError as exc:
        raise InvalidInput(f"entry is not canonical: {exc}", code="bad_entry") from exc
    if not isinstance(value, dict) or set(value) != {"v", "seq", "ts_ms", "op", "sigs"}:
        raise InvalidInput("entry does not have exactly v, seq, ts_ms, op, sigs", code="bad_entry")
    if value["v"] != ENTRY_VERSION:
        raise InvalidInput(f"unsupported entry version {value['v']!r}", code="bad_entry")
    seq, ts_ms = value["seq"], value["ts_ms"]
    if not isinstance(seq, int) or not isinstance(ts_ms, int) or isinstance(seq, bool) or isinstance(ts_ms, bool):
        raise InvalidInput("seq and ts_ms must be integers", code="bad_entry")
    signed = SignedOperation.from_json({"op": value["op"], "sigs": value["sigs"]})
    return Entry(seq=seq, ts_ms=ts_ms, signed=signed)


def step(
    signed: SignedOperation,
    state: StateView,
    ctx: Context,
    platform_keys: Mapping[str, bytes],
    verify: Verify = verify_signature,
) -> Effects:
    """Check signatures, then the domain rules. Pure: returns effects, mutates nothing."""
    check_signatures(signed, state, ctx.seq, platform_keys, verify)
    return apply(signed.op, state, ctx)


def sign_operation(payload: dict[str, Any], signers: Sequence[Any] | Mapping[str, Any]) -> SignedOperation:
    """Sign ``payload``: with a sequence of `Signer`s, each signs as the actor; with a mapping, each signs
    as the organisation it is keyed by (a financing needs the holder's and the bank's)."""
    op = operations.parse(payload)
    canonical = operations.payload(op)
    message = op_message(canonical)
    named = signers.items() if isinstance(signers, Mapping) else [(op.actor, s) for s in signers]
    sigs = tuple(SignatureBlock(name, s.key_id, s.sign(message)) for name, s in named)
    return SignedOperation(payload=canonical, op=op, sigs=sigs)
