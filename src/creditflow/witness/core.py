"""The witness's one decision: cosign a submitted checkpoint, or refuse it with the status tlog-witness names.

c2sp.org/tlog-witness, ``POST /add-checkpoint``. The body is an ``old N`` line, up to 63 base64 consistency
proof lines, an empty line, then the checkpoint (a signed note). Checks, in the spec's order:

* malformed body: 400;
* unknown origin: 404;
* no signature verifies against the log key the witness trusts for that origin (or one that claims that key
  fails): 403;
* ``old`` greater than the checkpoint's size: 400;
* ``old`` is not the size of the latest checkpoint cosigned for that origin: 409, body that size and a newline,
  ``Content-Type: text/x.tlog.size`` (a log that does not know starts with ``old 0`` and learns it);
* the consistency proof from the held checkpoint to the new one does not verify (a proof given with ``old 0``
  included): 422;
* the same size as held but another root: 409 (a fork at a size the witness has seen), body the held size.

Otherwise the new checkpoint is persisted (atomically, under the log's lock, re-read under it) and only then
the cosignature/v1 line is returned with 200. Resubmitting the held checkpoint (same size, same root) is
cosigned again with a fresh time: it is still the largest consistent tree the witness has seen.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from creditflow.kernel.clock import Clock, SystemClock
from creditflow.ledger import merkle
from creditflow.ledger.note import (
    MAX_NOTE_BYTES,
    Checkpoint,
    NoteError,
    parse_checkpoint,
    parse_note,
)
from creditflow.witness.state import StateDir, log_id

MAX_PROOF_LINES = 63
MAX_BODY_BYTES = MAX_NOTE_BYTES + 64 * 64 + 32
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD_RE = re.compile(r"^old (0|[1-9][0-9]{0,19})$")


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, content type, body. `code` is a stable snake_case reason for logs and tests."""

    status: int
    body: str
    code: str
    content_type: str = "text/plain; charset=utf-8"


def _refuse(status: int, code: str, message: str) -> Answer:
    return Answer(status, message.rstrip("\n") + "\n", code)


def _conflict(held: int, code: str) -> Answer:
    return Answer(409, f"{held}\n", code, SIZE_CONTENT_TYPE)


@dataclass(frozen=True, slots=True)
class Submission:
    old_size: int
    proof: tuple[bytes, ...]
    note_bytes: bytes


def parse_submission(body: bytes) -> Submission:
    """Split an add-checkpoint body; raises ValueError (a 400) naming what is malformed."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError("request body is too large")
    first, sep, rest = body.partition(b"\n")
    if not sep:
        raise ValueError("the body starts with an `old <size>` line ending in a newline")
    match = _OLD_RE.fullmatch(first.decode("ascii", "replace"))
    if match is None or int(match.group(1)) >= 1 << 63:
        raise ValueError("the first line must be `old <size>`, a decimal without leading zeroes")
    proof: list[bytes] = []
    while True:
        line, sep, rest = rest.partition(b"\n")
        if not sep:
            raise ValueError("the consistency proof lines end with an empty line before the checkpoint")
        if line == b"":
            break
        if len(proof) == MAX_PROOF_LINES:
            raise ValueError(f"more than {MAX_PROOF_LINES} consistency proof lines")
        try:
            value = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise ValueError("a consistency proof line is not base64") from None
        if len(value) != merkle.HASH_SIZE:
            raise ValueError("a consistency proof line must encode a 32-byte hash")
        proof.append(value)
    return Submission(int(match.group(1)), tuple(proof), rest)


class Witness:
    """Checks and cosigns checkpoints for the logs in a `StateDir`; every call re-reads what it needs."""

    def __init__(self, state: StateDir, clock: Clock | None = None):
        self.state = state
        self.cosigner = state.cosigner()
        self.clock = clock or SystemClock()
        # test hooks: inside the lock after the checks and before the persist (to widen the race window), and
        # after the persist before the answer is made (to crash there)
        self.before_persist: Callable[[Checkpoint], None] | None = None
        self.after_persist: Callable[[Checkpoint], None] | None = None

    @property
    def vkey(self) -> str:
        return self.cosigner.verifier.encode()

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            sub = parse_submission(body)
            note = parse_note(sub.note_bytes)
            checkpoint = parse_checkpoint(note.text)
        except (ValueError, NoteError) as exc:  # NoteError is a ValueError too
            return _refuse(400, "malformed", f"malformed request: {exc}")
        log_key = self.state.logs().get(checkpoint.origin)
        if log_key is None:
            return _refuse(404, "unknown_log", f"unknown log origin {checkpoint.origin!r}")
        try:
            signed = bool(note.verified_by([log_key]))
        except NoteError:
            signed = False
        if not signed:
            return _refuse(403, "bad_log_signature", "the checkpoint is not signed by the log's key")
        if sub.old_size > checkpoint.size:
            return _refuse(400, "old_size_too_big", "the old size is bigger than the checkpoint's size")
        with self.state.lock(log_id(checkpoint.origin)):
            held = self.state.cosigned(checkpoint.origin)
            if sub.old_size != held.size:
                return _conflict(held.size, "old_size_mismatch")
            refusal = self._check_consistency(sub, checkpoint, held.checkpoint)
            if refusal is not None:
                self.state.save_evidence(checkpoint.origin, body)
                return refusal
            if self.before_persist is not None:
                self.before_persist(checkpoint)
            if held.checkpoint is None or checkpoint.size > held.size:
                self.state.save_cosigned(checkpoint.origin, note.encode())
            if self.after_persist is not None:
                self.after_persist(checkpoint)
            # Signed under the lock: the time it carries is never older than a later checkpoint's persist.
            line = self.cosigner.sign(note.text, self.clock.now_ms() // 1000).line()
        return Answer(200, line, "cosigned")

    @staticmethod
    def _check_consistency(sub: Submission, new: Checkpoint, held: Checkpoint | None) -> Answer | None:
        if held is None:  # never cosigned for this log: `old 0`, and nothing to prove against
            if sub.proof:
                return _refuse(422, "bad_consistency_proof", "the consistency proof from size 0 must be empty")
            return None
        if new.size == held.size:
            if new.root_hash != held.root_hash:
                return _conflict(held.size, "fork_at_held_size")
            if sub.proof:
                return _refuse(422, "bad_consistency_proof", "the consistency proof between equal sizes is empty")
            return None
        if not merkle.verify_consistency(held.size, new.size, held.root_hash, new.root_hash, sub.proof):
            return _refuse(
                422,
                "bad_consistency_proof",
                f"the consistency proof from size {held.size} to {new.size} does not verify",
            )
        return None
