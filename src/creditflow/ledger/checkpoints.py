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
    def __init__(self, engine: Engine, log_signer: Signer, origin: str, *, quorum: int = 0):
        self.engine = engine
        self.origin = origin
        self.quorum = quorum  # cosignatures the default policy needs (settings.witness_quorum)
        self.note_signer = NoteSigner(origin, log_signer)
        # Set by the checkpoint publisher while it runs (`CheckpointPublisher.start`/`stop`): see `latest`.
        self.publishing = False

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
        """The checkpoint `/log/checkpoint` serves: (size, signed note).

        While a publisher runs: the newest *published* checkpoint that carries at least ``quorum``
        cosignatures, even if the log has grown since (as a Tessera or Sunlight log publishes a checkpoint only
        once its witness policy is met). A client that requires a quorum can only accept such a checkpoint, and
        a fresher one without the cosignatures would fail its policy. The publisher keeps it at most one round
        (``checkpoint_interval_s`` plus the witnesses' timeout) behind while enough witnesses answer; when too
        few do, it stays on the last checkpoint that met the quorum and the witnesses' lag shows it in /metrics.
        (Until one meets the quorum: the newest published; before the first round: the current head, signed now.)

        When nothing publishes (a command-line process, or ``checkpoint_interval_s`` 0): the newest published
        checkpoint if it covers the whole log, else the current head signed now with the log's signature only,
        so the served checkpoint is never behind a log that no one is publishing."""
        if self.publishing:
            published = store.latest_checkpoint(conn, self.quorum) or store.latest_checkpoint(conn)
            if published is not None:
                return published
        published = store.latest_checkpoint(conn)
        size = store.read_head(conn)[0]
        if published is not None and published[0] >= size:
            return published
        return size, self.sign(size, self.root_at(conn, size)).encode()
