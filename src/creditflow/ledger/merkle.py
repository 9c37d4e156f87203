"""RFC 6962 / RFC 9162 Merkle tree for the append-only certificate log.

Storage (SQL, elsewhere) keeps the hash of every *perfect, aligned* subtree: node
``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)`` and level 0 is
the leaf hash.  Every range that RFC 6962's MTH/PATH/PROOF recursion ever hashes starts at a
multiple of a power of two at least as large as the range, so it is a short list of such
nodes combined right to left.  That is why proof generation is split in three steps: *which
ranges* (pure arithmetic), *which nodes* (one deduplicated batch, one storage round-trip) and
*combine* (pure hashing).  All "leaves" below are leaf *hashes* (see :func:`leaf_hash`), so
the log never has to re-read entry bodies to serve a proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
NodeId = tuple[int, int]
Fetch = Callable[[Sequence[NodeId]], Mapping[NodeId, bytes]]


class MerkleError(ValueError):
    """Bad arguments or inconsistent storage; a ValueError so API layers map it to 4xx/5xx."""


def leaf_hash(entry: bytes) -> bytes:
    """Hash a log entry; the 0x00 prefix stops a leaf from being passed off as an inner node."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children; the 0x01 prefix is the RFC 6962 second-preimage domain separation."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check_hash(value: bytes, what: str) -> bytes:
    if len(value) != HASH_SIZE:
        raise MerkleError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")
    return value


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n > 1): the RFC 6962 left-subtree size ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_nodes(start: int, end: int) -> list[NodeId]:
    """Decompose ``[start, end)`` into the minimal aligned perfect subtrees, left to right.

    Greedy is minimal: at each step take the biggest block that is aligned at ``start`` and
    still fits, since any smaller first block would only be merged back by a larger one.
    """
    if start < 0 or end < start:
        raise MerkleError(f"invalid leaf range [{start}, {end})")
    nodes: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_hash(nodes: Sequence[NodeId], lookup: Mapping[NodeId, bytes]) -> bytes:
    """Fold ``nodes`` right to left, which is RFC 6962's MTH shape for ranges proofs use.

    This equals MTH(D[start:end]) whenever ``start`` is a multiple of a power of two
    >= ``end - start`` (always true for ranges from :func:`inclusion_proof_ranges` and
    :func:`consistency_proof_ranges`); for other ranges it is merely a deterministic digest.
    """
    if not nodes:
        return EMPTY_ROOT
    try:
        acc = _check_hash(lookup[nodes[-1]], f"node {nodes[-1]}")
        for node in reversed(nodes[:-1]):
            acc = node_hash(_check_hash(lookup[node], f"node {node}"), acc)
    except KeyError as exc:
        raise MerkleError(f"node {exc.args[0]} missing from lookup") from None
    return acc


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Sibling ranges of RFC 6962 PATH(index, D[0:size]), bottom-up (the audit-path order)."""
    if index < 0 or index >= size:
        raise MerkleError(f"leaf index {index} out of range for tree size {size}")
    top_down: list[tuple[int, int]] = []
    start, n = 0, size
    while n > 1:
        k = _split(n)
        if index < start + k:  # leaf in the left (perfect) half: sibling is the right part
            top_down.append((start + k, start + n))
            n = k
        else:
            top_down.append((start, start + k))
            start, n = start + k, n - k
    return top_down[::-1]


def consistency_proof_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Ranges of RFC 6962 PROOF(old_size, D[0:new_size]) in SUBPROOF output order.

    Empty when ``old_size`` is 0 or equals ``new_size`` (RFC 9162 §2.1.4).
    """
    if old_size < 0 or old_size > new_size:
        raise MerkleError(f"invalid consistency sizes {old_size} -> {new_size}")
    if old_size in (0, new_size):
        return []
    top_down: list[tuple[int, int]] = []
    start, m, n, whole_old_tree = 0, old_size, new_size, True
    while m != n:
        k = _split(n)
        if m <= k:
            top_down.append((start + k, start + n))
            n = k
        else:
            top_down.append((start, start + k))
            start, m, n, whole_old_tree = start + k, m - k, n - k, False
    if not whole_old_tree:  # SUBPROOF(m, D[m], false) = MTH(D[m]); the verifier has the root
        top_down.append((start, start + n))
    return top_down[::-1]


def nodes_for_ranges(ranges: Sequence[tuple[int, int]]) -> list[NodeId]:
    """Deduplicated union of the perfect nodes of ``ranges``, ordered, for one batch fetch."""
    seen: dict[NodeId, None] = {}
    for start, end in ranges:
        for node in perfect_nodes(start, end):
            seen.setdefault(node)
    return list(seen)


def hashes_for_ranges(ranges: Sequence[tuple[int, int]], lookup: Mapping[NodeId, bytes]) -> list[bytes]:
    """Combine fetched nodes into one hash per range, preserving the proof order of ``ranges``."""
    return [range_hash(perfect_nodes(start, end), lookup) for start, end in ranges]


def _fetch_hashes(ranges: list[tuple[int, int]], fetch: Fetch) -> list[bytes]:
    """One storage round-trip (none if nothing is needed), then pure combination."""
    nodes = nodes_for_ranges(ranges)
    lookup: Mapping[NodeId, bytes] = fetch(nodes) if nodes else {}
    return hashes_for_ranges(ranges, lookup)


def inclusion_proof(index: int, size: int, fetch: Fetch) -> list[bytes]:
    """RFC 6962 audit path for leaf ``index`` in the tree of ``size`` leaves."""
    return _fetch_hashes(inclusion_proof_ranges(index, size), fetch)


def consistency_proof(old_size: int, new_size: int, fetch: Fetch) -> list[bytes]:
    """RFC 6962 consistency proof that the ``old_size`` tree is a prefix of the ``new_size`` one."""
    return _fetch_hashes(consistency_proof_ranges(old_size, new_size), fetch)


def _all_hashes(values: Iterable[bytes]) -> bool:
    return all(len(v) == HASH_SIZE for v in values)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2; ``leaf`` is the leaf *hash*.  Never raises: bad input means False."""
    if not (0 <= index < size) or not _all_hashes([leaf, root, *proof]):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2.  Never raises: bad input means False.

    Equal sizes need an empty proof and equal roots; size 0 is consistent with anything via
    an empty proof, but its claimed root must still be EMPTY_ROOT since that tree is unique.
    """
    if old_size < 0 or old_size > new_size or not _all_hashes([old_root, new_root, *proof]):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root and (old_size > 0 or old_root == EMPTY_ROOT)
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # old tree is one perfect node: the verifier knows it
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """Naive recursive MTH over leaf hashes, straight from RFC 6962 §2.1 (reference only)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return _check_hash(leaves[0], "leaf hash")
    k = _split(len(leaves))
    return node_hash(root_from_leaves(leaves[:k]), root_from_leaves(leaves[k:]))


class CompactRange:
    """The right edge (frontier) of the tree: the perfect subtree roots of the set bits of size.

    This is all an appender needs to compute new roots and new stored nodes, so the write path
    never reads the tree.  Append is O(log n) and returns the perfect nodes it completed, so
    the caller can store them.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """``hashes`` are the roots of ``perfect_nodes(0, size)``, left (largest) to right."""
        if size < 0 or len(hashes) != size.bit_count():
            raise MerkleError(f"size {size} needs {max(size, 0).bit_count()} frontier hashes")
        self.size = size
        self._hashes = [_check_hash(h, "frontier hash") for h in hashes]

    @classmethod
    def from_fetch(cls, size: int, fetch: Fetch) -> CompactRange:
        """Rebuild the frontier of a stored tree with one fetch (none for size 0)."""
        nodes = perfect_nodes(0, size)
        lookup: Mapping[NodeId, bytes] = fetch(nodes) if nodes else {}
        try:
            return cls(size, [lookup[node] for node in nodes])
        except KeyError as exc:
            raise MerkleError(f"node {exc.args[0]} missing from fetch result") from None

    def nodes(self) -> list[tuple[int, int, bytes]]:
        """The frontier as ``(level, index, hash)``, left to right."""
        pairs = zip(perfect_nodes(0, self.size), self._hashes, strict=True)
        return [(level, index, h) for (level, index), h in pairs]

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return every newly completed perfect node, the leaf (level 0) first."""
        acc = _check_hash(leaf, "leaf hash")
        level, index = 0, self.size
        done = [(0, index, acc)]
        while index & 1:  # a set bit at this level means a left sibling waits to be merged
            acc = node_hash(self._hashes.pop(), acc)
            level, index = level + 1, index >> 1
            done.append((level, index, acc))
        self._hashes.append(acc)
        self.size += 1
        return done

    def root(self) -> bytes:
        """MTH of the whole tree: the frontier folded right to left (EMPTY_ROOT for size 0)."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def copy(self) -> CompactRange:
        """Independent copy, so a caller can try appends without disturbing the original."""
        return CompactRange(self.size, self._hashes)


class MemoryTree:
    """Every perfect node in memory, for the offline verifier and tests.

    ``levels[L]`` is a bytearray of the concatenated level-L node hashes, i.e. exactly what the
    SQL storage holds, so ``fetch`` can stand in for the database in proof generation.
    """

    __slots__ = ("_frontier", "_levels")

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = []
        self._frontier = CompactRange()
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return self._frontier.size

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append a leaf hash and store the perfect nodes it completes (returned, as CompactRange)."""
        done = self._frontier.append(leaf)
        for level, _index, h in done:
            if level == len(self._levels):
                self._levels.append(bytearray())
            self._levels[level] += h
        return done

    def node(self, level: int, index: int) -> bytes:
        """Hash of stored perfect node ``(level, index)``; MerkleError if not (yet) complete."""
        if level < 0 or index < 0 or level >= len(self._levels):
            raise MerkleError(f"node {(level, index)} not stored")
        data = self._levels[level]
        off = index * HASH_SIZE
        if off + HASH_SIZE > len(data):
            raise MerkleError(f"node {(level, index)} not stored")
        return bytes(data[off : off + HASH_SIZE])

    def fetch(self, nodes: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Batch look-up with the ``Fetch`` signature, standing in for the storage query."""
        return {(level, index): self.node(level, index) for level, index in nodes}

    def root(self) -> bytes:
        return self._frontier.root()

    def root_at(self, size: int) -> bytes:
        """Root of the tree as it was at an earlier ``size`` (0 <= size <= self.size)."""
        if size < 0 or size > self.size:
            raise MerkleError(f"size {size} outside 0..{self.size}")
        nodes = perfect_nodes(0, size)
        return range_hash(nodes, self.fetch(nodes))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path for ``index`` in the tree at ``size`` (default: current size)."""
        size = self.size if size is None else size
        if size > self.size:
            raise MerkleError(f"size {size} exceeds tree size {self.size}")
        return inclusion_proof(index, size, self.fetch)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Consistency proof from ``old_size`` to ``new_size`` (default: current size)."""
        new_size = self.size if new_size is None else new_size
        if new_size > self.size:
            raise MerkleError(f"size {new_size} exceeds tree size {self.size}")
        return consistency_proof(old_size, new_size, self.fetch)
