"""Hypothesis properties of creditflow.ledger.merkle against a naive RFC 6962 §2.1 reference.

Leaves are distinct (numbered, salted) so that "wrong index" really is wrong: with duplicate
leaves two positions can legitimately share an audit path.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditflow.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryTree,
    NodeId,
    consistency_proof,
    consistency_proof_ranges,
    inclusion_proof,
    inclusion_proof_ranges,
    leaf_hash,
    nodes_for_ranges,
    perfect_nodes,
    range_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 300
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.integers(min_value=1, max_value=MAX_SIZE)
salts = st.binary(max_size=8)


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, verbatim from RFC 6962 §2.1."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def make_leaves(n: int, salt: bytes) -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def path_shape(index: int, size: int) -> list[bool]:
    """Which side each audit-path sibling is on; RFC 9162 verification only sees this shape."""
    return [end <= index for _, end in inclusion_proof_ranges(index, size)]


@SETTINGS
@given(size=sizes, salt=salts)
def test_every_inclusion_proof_verifies(size: int, salt: bytes) -> None:
    leaves = make_leaves(size, salt)
    tree = MemoryTree(leaves)
    root = ref_mth(leaves)
    assert tree.root() == root
    for index in range(size):
        proof = tree.inclusion_proof(index)
        assert verify_inclusion(leaves[index], index, size, proof, root)


@SETTINGS
@given(size=sizes, salt=salts, data=st.data())
def test_corrupted_inclusion_fails(size: int, salt: bytes, data: st.DataObject) -> None:
    leaves = make_leaves(size, salt)
    tree = MemoryTree(leaves)
    root = tree.root()
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.inclusion_proof(index)
    leaf = leaves[index]
    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_inclusion(flip(leaf, bit), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, flip(root, bit))
    for i in range(len(proof)):
        bad = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
        assert not verify_inclusion(leaf, index, size, bad, root)
    other = data.draw(st.integers(-2, size + 2).filter(lambda j: j != index), label="other index")
    assert not verify_inclusion(leaf, other, size, proof, root)
    wrong = data.draw(st.integers(-2, 2 * MAX_SIZE).filter(lambda n: n != size), label="wrong size")
    if wrong <= index or path_shape(index, wrong) != path_shape(index, size):
        assert not verify_inclusion(leaf, index, wrong, proof, root)
    for wrong in (2 * size, size // 2):  # never the same shape; the cases transparency-dev checks
        assert not verify_inclusion(leaf, index, wrong, proof, root)
    assert not verify_inclusion(leaf, index, size, [*proof, root], root)
    assert not verify_inclusion(leaf, index, size, proof[:-1], root) or not proof
    assert not verify_inclusion(leaf[:-1], index, size, proof, root)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=sizes, salt=salts)
def test_consistency_for_all_pairs(size: int, salt: bytes) -> None:
    leaves = make_leaves(size, salt)
    tree = MemoryTree(leaves)
    roots = [tree.root_at(n) for n in range(size + 1)]
    assert roots[size] == ref_mth(leaves)
    for new in range(size + 1):
        for old in range(new + 1):
            proof = tree.consistency_proof(old, new)
            assert verify_consistency(old, new, roots[old], roots[new], proof)


@SETTINGS
@given(size=sizes, salt=salts, data=st.data())
def test_corrupted_consistency_fails(size: int, salt: bytes, data: st.DataObject) -> None:
    leaves = make_leaves(size, salt)
    tree = MemoryTree(leaves)
    new = data.draw(st.integers(1, size), label="new")
    old = data.draw(st.integers(1, new), label="old")
    proof = tree.consistency_proof(old, new)
    r1, r2 = tree.root_at(old), tree.root_at(new)
    assert r1 == ref_mth(leaves[:old]) and r2 == ref_mth(leaves[:new])
    assert verify_consistency(old, new, r1, r2, proof)
    bit = data.draw(st.integers(0, 255), label="bit")
    if old == new:
        assert not verify_consistency(old, new, r1, flip(r2, bit), proof)
        assert not verify_consistency(old, new, r1, r2, [r1])
        return
    assert not verify_consistency(old, new, flip(r1, bit), r2, proof)
    assert not verify_consistency(old, new, r1, flip(r2, bit), proof)
    for i in range(len(proof)):
        bad = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
        assert not verify_consistency(old, new, r1, r2, bad)
    assert not verify_consistency(old, new, r1, r2, proof[:-1])
    assert not verify_consistency(old, new, r1, r2, [*proof, r2])
    assert not verify_consistency(old, new, r2, r1, proof)


@SETTINGS
@given(size=sizes, salt=salts)
def test_compact_range_matches_reference_and_reports_perfect_nodes(size: int, salt: bytes) -> None:
    leaves = make_leaves(size, salt)
    compact = CompactRange()
    stored: dict[NodeId, bytes] = {}
    for n, leaf in enumerate(leaves, start=1):
        done = compact.append(leaf)
        # Exactly the perfect nodes whose right edge is the new size, bottom-up, with their MTH.
        expected = [(lvl, (n >> lvl) - 1) for lvl in range(n.bit_length()) if n % (1 << lvl) == 0]
        assert [(lvl, idx) for lvl, idx, _ in done] == expected
        for lvl, idx, h in done:
            assert h == ref_mth(leaves[idx << lvl : (idx + 1) << lvl])
            assert (lvl, idx) not in stored
            stored[(lvl, idx)] = h
        assert compact.size == n
        assert compact.root() == root_from_leaves(leaves[:n])
    all_perfect = {(lvl, idx) for lvl in range(size.bit_length()) for idx in range(size >> lvl)}
    assert set(stored) == all_perfect


@SETTINGS
@given(size=st.integers(0, MAX_SIZE), extra=st.integers(0, 20), salt=salts)
def test_compact_range_from_fetch_resumes(size: int, extra: int, salt: bytes) -> None:
    leaves = make_leaves(size + extra, salt)
    tree = MemoryTree(leaves[:size])
    calls: list[Sequence[NodeId]] = []

    def fetch(nodes: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        calls.append(nodes)
        return tree.fetch(nodes)

    compact = CompactRange.from_fetch(size, fetch)
    assert len(calls) == (1 if size else 0)
    assert compact.root() == tree.root() == (ref_mth(leaves[:size]) if size else EMPTY_ROOT)
    for leaf in leaves[size:]:
        assert compact.append(leaf) == tree.append(leaf)
    assert compact.root() == ref_mth(leaves)


@SETTINGS
@given(size=sizes, data=st.data())
def test_proofs_fetch_exactly_once(size: int, data: st.DataObject) -> None:
    tree = MemoryTree(make_leaves(size, b""))
    calls: list[list[NodeId]] = []

    def fetch(nodes: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        calls.append(list(nodes))
        return tree.fetch(nodes)

    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(index, size, fetch)
    wanted = nodes_for_ranges(inclusion_proof_ranges(index, size))
    assert calls == ([wanted] if wanted else [])
    assert len(set(wanted)) == len(wanted) <= 2 * size.bit_length()
    assert len(proof) == len(inclusion_proof_ranges(index, size))
    calls.clear()
    old = data.draw(st.integers(0, size), label="old")
    consistency_proof(old, size, fetch)
    wanted = nodes_for_ranges(consistency_proof_ranges(old, size))
    assert calls == ([wanted] if wanted else [])
    assert len(set(wanted)) == len(wanted)


@SETTINGS
@given(start=st.integers(0, 1 << 40), length=st.integers(0, 1 << 20))
def test_perfect_nodes_tile_the_range(start: int, length: int) -> None:
    nodes = perfect_nodes(start, start + length)
    pos = start
    for level, index in nodes:
        assert index << level == pos  # contiguous, left to right, aligned by construction
        pos += 1 << level
    assert pos == start + length
    # Shape of a greedy tiling: block sizes strictly rise (alignment of start) then strictly
    # fall (bits of what is left); minimality itself is checked by brute force below.
    levels = [level for level, _ in nodes]
    turn = 0
    while turn + 1 < len(levels) and levels[turn] < levels[turn + 1]:
        turn += 1
    tail = levels[turn + 1 :]
    assert all(a > b for a, b in itertools.pairwise(tail))


@SETTINGS
@given(start=st.integers(0, 63), length=st.integers(0, 64))
def test_perfect_nodes_minimal_by_brute_force(start: int, length: int) -> None:
    end = start + length
    best = [0] + [length + 1] * length  # best[i]: fewest aligned blocks tiling [start, start+i)
    for i in range(1, length + 1):
        pos = start + i
        for lvl in range(8):
            lo = pos - (1 << lvl)
            if lo >= start and lo % (1 << lvl) == 0:
                best[i] = min(best[i], best[lo - start] + 1)
    assert len(perfect_nodes(start, end)) == best[length]


@SETTINGS
@given(length=st.integers(1, 80), slot=st.integers(0, 3), extra=st.integers(0, 2), salt=salts)
def test_range_hash_is_mth_for_rfc_shaped_ranges(length: int, slot: int, extra: int, salt: bytes) -> None:
    align = 1 << ((length - 1).bit_length() + extra)  # any power of two >= length
    start = slot * align
    leaves = make_leaves(start + length, salt)
    tree = MemoryTree(leaves)
    nodes = perfect_nodes(start, start + length)
    assert range_hash(nodes, tree.fetch(nodes)) == ref_mth(leaves[start:])


@SETTINGS
@given(size=sizes)
def test_proof_ranges_are_rfc_shaped(size: int) -> None:
    ranges = [r for i in range(size) for r in inclusion_proof_ranges(i, size)]
    ranges += [r for old in range(size + 1) for r in consistency_proof_ranges(old, size)]
    for start, end in ranges:
        assert 0 <= start < end <= size
        assert start % (1 << (end - start - 1).bit_length()) == 0
