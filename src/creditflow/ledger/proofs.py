"""Proof documents for outsiders: inclusion of an entry, consistency between two tree sizes.

Each document carries the signed tree head(s) it refers to and the log's public key, and is checked
offline by `creditflow verify-proof FILE` or `creditflow.ledger.verifier` alone. A tree size with no
stored head (heads are signed per group commit) gets a head signed now for that size: its root is
computed from the stored Merkle nodes, so the signature attests the same fact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import InvalidInput, NotFound
from creditflow.ledger import merkle, store
from creditflow.ledger.signing import Signer
from creditflow.ledger.tree_head import TreeHead, sign_tree_head
from creditflow.ledger.verifier import CONSISTENCY_KIND, INCLUSION_KIND


class Proofs:
    def __init__(self, engine: Engine, log_signer: Signer, clock: Clock):
        self.engine = engine
        self.log_signer = log_signer
        self.clock = clock

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

    def inclusion(self, leaf_index: int, tree_size: int | None = None) -> dict[str, Any]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            size = self._size(conn) if tree_size is None else tree_size
            current = self._size(conn)
            if not 0 < size <= current:
                raise InvalidInput(f"tree_size must be 1-{current}", field="tree_size")
            if not 0 <= leaf_index < size:
                raise NotFound(
                    f"entry {leaf_index} is not in a tree of {size}",
                    code="entry_not_found",
                    field="leaf_index",
                )
            entry = store.entry_at(conn, leaf_index)
            path = merkle.inclusion_proof(leaf_index, size, lambda nodes: store.fetch_nodes(conn, nodes))
            head = self._head(conn, size)
        return {
            "kind": INCLUSION_KIND,
            "v": 1,
            "log_keys": self.log_keys_json(),
            "tree_head": head.to_json(),
            "leaf_index": leaf_index,
            "entry": entry.hex(),
            "audit_path": [h.hex() for h in path],
        }

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
