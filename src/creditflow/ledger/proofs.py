"""Proof documents for outsiders: inclusion of an entry, consistency between two tree sizes.

Each document carries the signed tree head(s) it refers to and the log's public key, and is checked
offline by `creditflow verify-proof FILE` or `creditflow.ledger.verifier` alone. A tree size with no
stored head (heads are signed per group commit) gets a head signed now for that size: its root is
computed from the stored Merkle nodes, so the signature attests the same fact.

An inclusion proof also carries the C2SP checkpoint of its tree size, and can be written as a
c2sp.org/tlog-proof file (`as_tlog_proof`). Without an explicit size it is proved in the newest
*published* checkpoint that covers the entry, so that it carries the witnesses' cosignatures; when
none covers it yet, in a checkpoint signed now for the current size.

Who gets an entry's proof: the parties the entry names (`operations.parties_named`), the operator and
the auditor. Asked by operation id, an unknown id and another party's id get the same answer, so the
question reveals nothing about what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Forbidden, InvalidInput, NotFound
from creditflow.ledger import merkle, store
from creditflow.ledger.checkpoints import Checkpoints
from creditflow.ledger.entries import parse_entry
from creditflow.ledger.model.operations import check_uuid, parties_named
from creditflow.ledger.signing import Signer
from creditflow.ledger.tlog_proof import make_tlog_proof
from creditflow.ledger.tree_head import TreeHead, sign_tree_head
from creditflow.ledger.verifier import CONSISTENCY_KIND, INCLUSION_KIND


class Proofs:
    def __init__(self, engine: Engine, log_signer: Signer, clock: Clock, checkpoints: Checkpoints):
        self.engine = engine
        self.log_signer = log_signer
        self.clock = clock
        self.checkpoints = checkpoints

    def log_keys_json(self) -> dict[str, str]:
        return {self.log_signer.key_id: self.log_signer.public_key.hex()}

    def _size(self, conn: Connection) -> int:
        return store.read_head(conn)[0]

    def _head(self, conn: Connection, size: int) -> TreeHead:
        stored = store.tree_head_at(conn, size)
        if stored is not None:
            return stored
        nodes = merkle.perfect_nodes(0, size)
        root = merkle.range_hash(nodes, store.fetch_nodes(conn, nodes)) if size else merkle.EMPTY_ROOT
        return sign_tree_head(self.log_signer, size, root, self.clock.now_ms())

    def latest_head(self) -> TreeHead:
        with self.engine.connect().execution_options(read_only=True) as conn:
            latest = store.latest_tree_head(conn)
            if latest is None:
                return self._head(conn, 0)
            return latest

    def latest_checkpoint(self) -> tuple[int, str]:
        """The newest checkpoint (published, with its cosignatures, unless the log has grown past it)."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            return self.checkpoints.latest(conn)

    def inclusion(
        self,
        leaf_index: int | None = None,
        tree_size: int | None = None,
        *,
        op_id: str | None = None,
        for_party: str | None = None,
    ) -> dict[str, Any]:
        """The inclusion proof of the entry at ``leaf_index``, or of operation ``op_id`` (give one).

        ``for_party`` is the organisation asking, when it is neither the operator nor the auditor: it
        must be named by the entry (403 ``not_a_party``; by ``op_id``, 404 as for an unknown id)."""
        if (leaf_index is None) == (op_id is None):
            raise InvalidInput("give either leaf_index or op_id", code="leaf_index_or_op_id", field="leaf_index")
        unknown = NotFound("no entry of yours has that operation id", code="entry_not_found", field="op_id")
        with self.engine.connect().execution_options(read_only=True) as conn:
            current = self._size(conn)
            entry = None
            if op_id is not None:  # who may see it first: an answer after that would tell that it exists
                seq = store.seq_of_op(conn, check_uuid(op_id, "op_id"))
                if seq is None or seq >= current:
                    raise unknown
                leaf_index, entry = seq, store.entry_at(conn, seq)
                if not self._may_see(for_party, entry):
                    raise unknown
            assert leaf_index is not None
            if tree_size is not None and not 0 < tree_size <= current:
                raise InvalidInput(f"tree_size must be 1-{current}", field="tree_size")
            if not 0 <= leaf_index < (current if tree_size is None else tree_size):
                raise NotFound(
                    f"entry {leaf_index} is not in a tree of {tree_size or current}",
                    code="entry_not_found",
                    field="leaf_index",
                )
            if entry is None:
                entry = store.entry_at(conn, leaf_index)
                if not self._may_see(for_party, entry):
                    raise Forbidden(
                        "only the parties the entry names, the operator and the auditor get this proof",
                        code="not_a_party",
                    )
            size = self._covering_size(conn, leaf_index, current) if tree_size is None else tree_size
            path = merkle.inclusion_proof(leaf_index, size, lambda nodes: store.fetch_nodes(conn, nodes))
            head = self._head(conn, size)
            checkpoint = self.checkpoints.at(conn, size)
        return {
            "kind": INCLUSION_KIND,
            "v": 1,
            "log_keys": self.log_keys_json(),
            "log_vkey": self.checkpoints.vkey,
            "tree_head": head.to_json(),
            "checkpoint": checkpoint,
            "leaf_index": leaf_index,
            "entry": entry.hex(),
            "audit_path": [h.hex() for h in path],
        }

    @staticmethod
    def _may_see(party: str | None, entry: bytes) -> bool:
        return party is None or party in parties_named(parse_entry(entry).signed.op)

    @staticmethod
    def _covering_size(conn: Connection, leaf_index: int, current: int) -> int:
        """The newest published checkpoint's size if it covers the entry (it carries cosignatures), else
        the current size."""
        published = store.latest_checkpoint(conn)
        return published[0] if published is not None and leaf_index < published[0] <= current else current

    @staticmethod
    def as_tlog_proof(document: dict[str, Any]) -> str:
        """An inclusion document as a c2sp.org/tlog-proof file: extra = the entry, the checkpoint verbatim."""
        return make_tlog_proof(
            document["leaf_index"],
            [bytes.fromhex(h) for h in document["audit_path"]],
            document["checkpoint"],
            bytes.fromhex(document["entry"]),
        )

    def consistency(self, old_size: int, new_size: int | None = None) -> dict[str, Any]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            current = self._size(conn)
            new = current if new_size is None else new_size
            if not 0 < old_size <= new <= current:
                raise InvalidInput(f"need 0 < old_size <= new_size <= {current}", field="old_size")
            proof = merkle.consistency_proof(old_size, new, lambda nodes: store.fetch_nodes(conn, nodes))
            old_head, new_head = self._head(conn, old_size), self._head(conn, new)
        return {
            "kind": CONSISTENCY_KIND,
            "v": 1,
            "log_keys": self.log_keys_json(),
            "old_tree_head": old_head.to_json(),
            "new_tree_head": new_head.to_json(),
            "proof": [h.hex() for h in proof],
        }

    # --- streamed exports (the auditor's downloads) ---------------------------------------------------

    def entry_rows(self, start: int, stop: int, chunk: int) -> Iterator[dict[str, Any]]:
        """Log entries ``start <= seq < stop`` in order, with leaf hashes and raw bytes (hex), read
        ``chunk`` at a time (keyset by sequence number, one short read per page, no connection held
        between pages), so a download streams and never holds the log in memory."""
        return self._pages(store.entry_rows, "seq", start, stop, chunk)

    def tree_head_rows(self, start: int, stop: int, chunk: int) -> Iterator[dict[str, Any]]:
        """Stored signed tree heads ``start <= tree_size < stop`` in order, read like `entry_rows`."""
        return self._pages(store.tree_head_rows, "tree_size", start, stop, chunk)

    def _pages(
        self,
        read: Callable[[Connection, int, int, int], list[dict[str, Any]]],
        key: str,
        start: int,
        stop: int,
        chunk: int,
    ) -> Iterator[dict[str, Any]]:
        cursor = start
        while cursor < stop:
            with self.engine.connect().execution_options(read_only=True) as conn:
                rows = read(conn, cursor, stop, chunk)
            if not rows:
                return
            yield from rows
            cursor = int(rows[-1][key]) + 1
