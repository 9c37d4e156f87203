"""The log's tree heads as C2SP checkpoints (c2sp.org/tlog-checkpoint), signed with the log key.

Every tree head is also a checkpoint: ``origin / size / base64(root)`` signed as a signed note by the
log's Ed25519 key under the name ``origin``. A checkpoint is *published* (stored in ``log_checkpoints``
with the witnesses' cosignatures collected for it) by the checkpoint publisher; any other size is
signed on demand, which attests the same fact as the stored tree head of that size.
"""

from __future__ import annotations

from creditflow.kernel.engine import Connection, Engine
from creditflow.ledger import merkle, store
from creditflow.ledger.note import Checkpoint, Note, NoteSigner, VerifierKey
from creditflow.ledger.signing import Signer


class Checkpoints:
    def __init__(self, engine: Engine, log_signer: Signer, origin: str):
        self.engine = engine
        self.origin = origin
        self.note_signer = NoteSigner(origin, log_signer)

    @property
    def verifier(self) -> VerifierKey:
        return self.note_signer.verifier

    @property
    def vkey(self) -> str:
        """``origin+hexid+base64(0x01||key)``: what a witness, a monitor or a verifier is configured with."""
        return self.verifier.encode()

    def sign(self, size: int, root_hash: bytes) -> Note:
        text = Checkpoint(self.origin, size, root_hash).text()
        return Note(text, (self.note_signer.sign(text),))

    def root_at(self, conn: Connection, size: int) -> bytes:
        head = store.tree_head_at(conn, size)
        if head is not None:
            return head.root_hash
        if size == 0:
            return merkle.EMPTY_ROOT
        nodes = merkle.perfect_nodes(0, size)
        return merkle.range_hash(nodes, store.fetch_nodes(conn, nodes))

    def at(self, conn: Connection, size: int) -> str:
        """The checkpoint of ``size`` (which must not exceed the log): the published one with its
        cosignatures when there is one, else one signed now."""
        published = store.checkpoint_at(conn, size)
        if published is not None:
            return published
        return self.sign(size, self.root_at(conn, size)).encode()

    def latest(self, conn: Connection) -> tuple[int, str]:
        """The newest checkpoint: the newest published one, unless the log has grown past it and nothing
        publishes (then the current head, signed now)."""
        published = store.latest_checkpoint(conn)
        size = store.read_head(conn)[0]
        if published is not None and published[0] >= size:
            return published
        return size, self.sign(size, self.root_at(conn, size)).encode()
