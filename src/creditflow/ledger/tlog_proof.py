"""The C2SP tlog-proof file (c2sp.org/tlog-proof): an entry's inclusion proof as one text file.

::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's bytes>
    index <N>
    <base64 hash>          (the audit path, leaf's sibling first, one SHA-256 per line)
    ...
                           (an empty line)
    <the checkpoint, a signed note, verbatim: log signature and witnesses' cosignatures>

creditflow's ``extra`` is the log entry itself (its canonical bytes, as stored): what a reader needs to
rebuild the leaf hash, ``SHA-256(0x00 || entry)``, and to see what was logged. The format leaves extra
unauthenticated; it is only believed once the leaf it hashes to is proved under the signed root.

Standard library only. Parsing here checks the shape; `creditflow.ledger.verifier.check_tlog_proof`
checks the proof.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

HEADER = "c2sp.org/tlog-proof@v1"
MEDIA_TYPE = "text/x.tlog-proof"
SUFFIX = ".tlog-proof"
MAX_PROOF_BYTES = 1 << 21  # a 2 MiB file: entries are small, paths at most 64 hashes, notes at most 1 MiB
MAX_PATH = 64
_INDEX_RE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class TlogProofError(ValueError):
    """A file that is not a well-formed tlog-proof; the message names the line."""


@dataclass(frozen=True, slots=True)
class TlogProof:
    index: int
    audit_path: tuple[bytes, ...]
    checkpoint: str  # the signed note, verbatim
    extra: bytes | None = None

    def encode(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.audit_path)
        return "\n".join(lines) + "\n\n" + self.checkpoint


def make_tlog_proof(index: int, audit_path: Sequence[bytes], checkpoint: str, entry: bytes) -> str:
    return TlogProof(index, tuple(audit_path), checkpoint, entry).encode()


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise TlogProofError(f"{where}: not base64") from None


def parse_tlog_proof(data: str | bytes) -> TlogProof:
    """Split a tlog-proof into its parts; `TlogProofError` says which line is wrong."""
    if isinstance(data, bytes):
        if len(data) > MAX_PROOF_BYTES:
            raise TlogProofError("the file is too large for a tlog-proof")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TlogProofError("the file is not UTF-8") from None
    lines = data.split("\n")
    if lines[0] != HEADER:
        raise TlogProofError(f"line 1: expected {HEADER!r}")
    at = 1
    extra = None
    if at < len(lines) and lines[at].startswith("extra "):
        extra = _b64(lines[at][len("extra ") :], "line 2 (extra)")
        at += 1
    if at >= len(lines) or not lines[at].startswith("index "):
        raise TlogProofError(f"line {at + 1}: expected 'index N'")
    index_text = lines[at][len("index ") :]
    if not _INDEX_RE.fullmatch(index_text) or int(index_text) >= 1 << 63:
        raise TlogProofError(f"line {at + 1}: the index must be a decimal number without leading zeroes")
    at += 1
    path: list[bytes] = []
    while at < len(lines) and lines[at] != "":
        if len(path) == MAX_PATH:
            raise TlogProofError(f"line {at + 1}: an audit path has at most {MAX_PATH} hashes")
        digest = _b64(lines[at], f"line {at + 1}")
        if len(digest) != 32:
            raise TlogProofError(f"line {at + 1}: an audit path hash is 32 bytes")
        path.append(digest)
        at += 1
    if at >= len(lines) - 1:
        raise TlogProofError("no checkpoint after the audit path (an empty line, then the signed checkpoint)")
    checkpoint = "\n".join(lines[at + 1 :])
    return TlogProof(int(index_text), tuple(path), checkpoint, extra)
