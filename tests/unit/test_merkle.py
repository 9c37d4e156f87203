"""Known-answer and edge-case tests for creditflow.ledger.merkle.

Vectors are the certificate-transparency / transparency-dev RFC 6962 test tree (8 leaves):
testonly/constants.go and proof/verify_test.go of github.com/transparency-dev/merkle.  Everything
else is checked against a naive recursive MTH/PATH/PROOF written directly from RFC 6962 §2.1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import pytest

from creditflow.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    MemoryTree,
    MerkleError,
    NodeId,
    consistency_proof,
    consistency_proof_ranges,
    hashes_for_ranges,
    inclusion_proof,
    inclusion_proof_ranges,
    leaf_hash,
    node_hash,
    nodes_for_ranges,
    perfect_nodes,
    range_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

# --------------------------------------------------------------------------- RFC 6962 §2.1 reference


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


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) from RFC 6962 §2.1.1."""
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) from RFC 6962 §2.1.2."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]); RFC 9162 makes m == 0 and m == n empty."""
    return [] if m in (0, len(d)) else ref_subproof(m, d, True)


# --------------------------------------------------------------------------- vectors

ENTRIES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
LEAVES = [leaf_hash(e) for e in ENTRIES]
ROOTS = [
    bytes.fromhex(h)
    for h in [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
NODE_HASHES = [
    [bytes.fromhex(h) for h in level]
    for level in [
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        [
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ]
]
# (index (0-based), size, proof); transparency-dev lists 1-based leaf numbers.
INCLUSION_VECTORS = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def vector_tree() -> MemoryTree:
    return MemoryTree(LEAVES)


def numbered_leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


class CountingFetch:
    """A `fetch` that records each call, to check the one-round-trip contract."""

    def __init__(self, tree: MemoryTree) -> None:
        self.tree = tree
        self.calls: list[list[NodeId]] = []

    def __call__(self, nodes: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        self.calls.append(list(nodes))
        return self.tree.fetch(nodes)


# --------------------------------------------------------------------------- hashing and roots


def test_constants_and_hashes() -> None:
    assert HASH_SIZE == 32
    assert EMPTY_ROOT == ROOTS[0] == hashlib.sha256(b"").digest()
    assert leaf_hash(b"") == ROOTS[1]
    assert node_hash(LEAVES[0], LEAVES[1]) == ROOTS[2]
    assert issubclass(MerkleError, ValueError)


@pytest.mark.parametrize("size", range(9))
def test_roots_of_vector_tree(size: int) -> None:
    assert root_from_leaves(LEAVES[:size]) == ROOTS[size]
    assert ref_mth(LEAVES[:size]) == ROOTS[size]
    assert vector_tree().root_at(size) == ROOTS[size]
    assert MemoryTree(LEAVES[:size]).root() == ROOTS[size]
    compact = CompactRange()
    for leaf in LEAVES[:size]:
        compact.append(leaf)
    assert compact.size == size
    assert compact.root() == ROOTS[size]


def test_every_perfect_node_of_vector_tree() -> None:
    tree = vector_tree()
    for level, hashes in enumerate(NODE_HASHES):
        for index, h in enumerate(hashes):
            assert tree.node(level, index) == h
    assert tree.fetch([(3, 0), (0, 7)]) == {(3, 0): ROOTS[8], (0, 7): NODE_HASHES[0][7]}


def test_compact_frontier_of_vector_tree() -> None:
    nh = NODE_HASHES
    expected: list[list[bytes]] = [
        [],
        [nh[0][0]],
        [nh[1][0]],
        [nh[1][0], nh[0][2]],
        [nh[2][0]],
        [nh[2][0], nh[0][4]],
        [nh[2][0], nh[1][2]],
        [nh[2][0], nh[1][2], nh[0][6]],
        [nh[3][0]],
    ]
    compact = CompactRange()
    for size in range(9):
        assert [h for _, _, h in compact.nodes()] == expected[size]
        if size < 8:
            compact.append(LEAVES[size])


def test_root_from_leaves_rejects_bad_hash() -> None:
    with pytest.raises(MerkleError):
        root_from_leaves([b"short"])


# --------------------------------------------------------------------------- ranges and nodes


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 0, []),
        (5, 5, []),
        (0, 1, [(0, 0)]),
        (0, 8, [(3, 0)]),
        (0, 7, [(2, 0), (1, 2), (0, 6)]),
        (3, 9, [(0, 3), (2, 1), (0, 8)]),
        (5, 13, [(0, 5), (1, 3), (2, 2), (0, 12)]),
        (16, 24, [(3, 2)]),
    ],
)
def test_perfect_nodes(start: int, end: int, expected: list[NodeId]) -> None:
    assert perfect_nodes(start, end) == expected


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (4, 3), (-2, -1)])
def test_perfect_nodes_rejects_bad_range(start: int, end: int) -> None:
    with pytest.raises(MerkleError):
        perfect_nodes(start, end)


def test_range_hash_matches_mth_for_aligned_ranges() -> None:
    leaves = numbered_leaves(64)
    tree = MemoryTree(leaves)
    for length in range(1, 33):
        step = 1 << (length - 1).bit_length()  # smallest power of two >= length
        for start in range(0, 64 - length + 1, step):
            nodes = perfect_nodes(start, start + length)
            assert range_hash(nodes, tree.fetch(nodes)) == ref_mth(leaves[start : start + length])
    assert range_hash([], {}) == EMPTY_ROOT


def test_range_hash_rejects_missing_or_bad_nodes() -> None:
    with pytest.raises(MerkleError):
        range_hash([(0, 0), (0, 1)], {(0, 0): LEAVES[0]})
    with pytest.raises(MerkleError):
        range_hash([(0, 0)], {(0, 0): b"\x00" * 31})


def test_proof_ranges_examples() -> None:
    assert inclusion_proof_ranges(0, 8) == [(1, 2), (2, 4), (4, 8)]
    assert inclusion_proof_ranges(5, 8) == [(4, 5), (6, 8), (0, 4)]
    assert inclusion_proof_ranges(2, 5) == [(3, 4), (0, 2), (4, 5)]
    assert inclusion_proof_ranges(0, 1) == []
    assert consistency_proof_ranges(6, 8) == [(4, 6), (6, 8), (0, 4)]
    assert consistency_proof_ranges(2, 5) == [(2, 4), (4, 5)]
    assert consistency_proof_ranges(0, 5) == []
    assert consistency_proof_ranges(5, 5) == []
    assert nodes_for_ranges([(0, 7), (4, 8), (6, 7)]) == [(2, 0), (1, 2), (0, 6), (2, 1)]


@pytest.mark.parametrize(("index", "size"), [(0, 0), (3, 3), (-1, 4), (4, 4), (9, 8)])
def test_inclusion_rejects_bad_arguments(index: int, size: int) -> None:
    with pytest.raises(MerkleError):
        inclusion_proof_ranges(index, size)
    with pytest.raises(MerkleError):
        inclusion_proof(index, size, vector_tree().fetch)


@pytest.mark.parametrize(("old", "new"), [(-1, 3), (4, 3), (1, 0)])
def test_consistency_rejects_bad_arguments(old: int, new: int) -> None:
    with pytest.raises(MerkleError):
        consistency_proof_ranges(old, new)
    with pytest.raises(MerkleError):
        consistency_proof(old, new, vector_tree().fetch)


# --------------------------------------------------------------------------- proofs vs vectors/reference


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vectors(index: int, size: int, proof: list[str]) -> None:
    want = [bytes.fromhex(h) for h in proof]
    tree = vector_tree()
    assert tree.inclusion_proof(index, size) == want
    assert inclusion_proof(index, size, tree.fetch) == want
    assert verify_inclusion(LEAVES[index], index, size, want, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vectors(old: int, new: int, proof: list[str]) -> None:
    want = [bytes.fromhex(h) for h in proof]
    tree = vector_tree()
    assert tree.consistency_proof(old, new) == want
    assert consistency_proof(old, new, tree.fetch) == want
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], want)


def test_all_proofs_match_rfc_reference_up_to_40() -> None:
    leaves = numbered_leaves(40)
    tree = MemoryTree(leaves)
    for size in range(41):
        root = ref_mth(leaves[:size])
        assert tree.root_at(size) == root
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == ref_path(index, leaves[:size])
            assert verify_inclusion(leaves[index], index, size, proof, root)
        for old in range(size + 1):
            proof = tree.consistency_proof(old, size)
            assert proof == ref_proof(old, leaves[:size])
            assert verify_consistency(old, size, ref_mth(leaves[:old]), root, proof)


def test_hashes_for_ranges_preserves_order() -> None:
    ranges = inclusion_proof_ranges(5, 8)
    tree = vector_tree()
    assert hashes_for_ranges(ranges, tree.fetch(nodes_for_ranges(ranges))) == tree.inclusion_proof(5, 8)


def test_fetch_called_once_or_never() -> None:
    tree = MemoryTree(numbered_leaves(37))
    fetch = CountingFetch(tree)
    inclusion_proof(11, 37, fetch)
    assert fetch.calls == [nodes_for_ranges(inclusion_proof_ranges(11, 37))]
    fetch.calls.clear()
    consistency_proof(13, 37, fetch)
    assert fetch.calls == [nodes_for_ranges(consistency_proof_ranges(13, 37))]
    fetch.calls.clear()
    assert inclusion_proof(0, 1, fetch) == []
    assert consistency_proof(0, 37, fetch) == []
    assert consistency_proof(37, 37, fetch) == []
    assert fetch.calls == []


def test_bad_fetch_results_raise_merkle_error() -> None:
    with pytest.raises(MerkleError):
        inclusion_proof(0, 8, lambda nodes: {})
    with pytest.raises(MerkleError):
        inclusion_proof(0, 8, lambda nodes: dict.fromkeys(nodes, b"\x00" * 33))
    with pytest.raises(MerkleError):
        consistency_proof(3, 8, lambda nodes: {})


# --------------------------------------------------------------------------- verifiers


def inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, bytes, int, int, list[bytes], bytes]]:
    """transparency-dev's corruptInclusionProof, as (desc, leaf, index, size, proof, root)."""
    probes = [
        ("index-1", leaf, index - 1, size, proof, root),
        ("index+1", leaf, index + 1, size, proof, root),
        ("index^2", leaf, index ^ 2, size, proof, root),
        ("size*2", leaf, index, size * 2, proof, root),
        ("size//2", leaf, index, size // 2, proof, root),
        ("wrong leaf", b"WrongLeaf", index, size, proof, root),
        ("empty root", leaf, index, size, proof, EMPTY_ROOT),
        ("random root", leaf, index, size, proof, SOME_HASH),
        ("trailing garbage", leaf, index, size, [*proof, b""], root),
        ("trailing root", leaf, index, size, [*proof, root], root),
        ("preceding garbage", leaf, index, size, [b"", *proof], root),
        ("preceding root", leaf, index, size, [root, *proof], root),
        # Past the top the RFC 9162 loop would keep hashing; only its in-loop sn == 0 check
        # stops a longer proof from "proving" a forged root built on top of the real one.
        ("extended, forged root", leaf, index, size, [*proof, SOME_HASH], node_hash(SOME_HASH, root)),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((f"flip proof[{i}]", leaf, index, size, bad, root))
    if proof:
        probes.append(("removed", leaf, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append(("inserted", leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_verify_inclusion_rejects_corruptions(index: int, size: int, proof: list[str]) -> None:
    hashes = [bytes.fromhex(h) for h in proof]
    for desc, leaf, i, n, p, root in inclusion_probes(index, size, hashes, ROOTS[size], LEAVES[index]):
        assert not verify_inclusion(leaf, i, n, p, root), desc


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1), (-1, 1)])
def test_verify_inclusion_degenerate(index: int, size: int) -> None:
    assert not verify_inclusion(SOME_HASH, index, size, [], b"")
    assert not verify_inclusion(b"", index, size, [], EMPTY_ROOT)
    assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


def test_verify_inclusion_single_entry() -> None:
    h = leaf_hash(b"data")
    assert verify_inclusion(h, 0, 1, [], h)
    assert not verify_inclusion(h, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], h)
    assert not verify_inclusion(b"", 0, 1, [], b"")
    assert not verify_inclusion(h + b"\x00", 0, 1, [], h + b"\x00")


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS[1:])
def test_verify_consistency_rejects_corruptions(old: int, new: int, proof: list[str]) -> None:
    p = [bytes.fromhex(h) for h in proof]
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        (old - 1, new, r1, r2, p),
        (old + 1, new, r1, r2, p),
        (old ^ 2, new, r1, r2, p),
        (old, new * 2, r1, r2, p),
        (old, new // 2, r1, r2, p),
        (old, new, b"WrongRoot", r2, p),
        (old, new, r1, b"WrongRoot", p),
        (old, new, r2, r1, p),
        (old, new, SOME_HASH, r2, p),
        (old, new, r1, SOME_HASH, p),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*p, b""]),
        (old, new, r1, r2, [*p, r1]),
        (old, new, r1, r2, [*p, r2]),
        (old, new, r1, r2, [b"", *p]),
        (old, new, r1, r2, [r1, *p]),
        (old, new, r1, r2, [r2, *p]),
        (old, new, r1, r2, [p[0], *p]),
        (old, new, r1, r2, p[:-1]),
        (old, new, node_hash(SOME_HASH, r1), node_hash(SOME_HASH, r2), [*p, SOME_HASH]),
    ]
    for i in range(len(p)):
        bad = list(p)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((old, new, r1, r2, bad))
    for o, n, a, b, q in probes:
        assert not verify_consistency(o, n, a, b, q), (o, n, q)


def test_verify_consistency_trivial_cases() -> None:
    r1, r2 = SOME_HASH, ROOTS[5]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, r2, [])
    assert verify_consistency(5, 5, r2, r2, [])
    assert not verify_consistency(0, 5, SOME_HASH, r2, [])  # the empty tree has one root
    assert not verify_consistency(0, 0, EMPTY_ROOT, r2, [])
    assert not verify_consistency(5, 5, r1, r2, [])
    assert not verify_consistency(5, 5, r2, r2, [r2])
    assert not verify_consistency(0, 5, EMPTY_ROOT, r2, [r2])
    assert not verify_consistency(1, 0, r1, r2, [])
    assert not verify_consistency(2, 1, r1, r2, [])
    assert not verify_consistency(-1, 5, r1, r2, [])
    assert not verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])
    assert not verify_consistency(5, 5, b"x", b"x", [])


# --------------------------------------------------------------------------- CompactRange and MemoryTree


def test_compact_range_append_reports_completed_nodes() -> None:
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    assert compact.append(LEAVES[0]) == [(0, 0, LEAVES[0])]
    assert compact.append(LEAVES[1]) == [(0, 1, LEAVES[1]), (1, 0, NODE_HASHES[1][0])]
    for leaf in LEAVES[2:7]:
        compact.append(leaf)
    assert compact.append(LEAVES[7]) == [
        (0, 7, LEAVES[7]),
        (1, 3, NODE_HASHES[1][3]),
        (2, 1, NODE_HASHES[2][1]),
        (3, 0, ROOTS[8]),
    ]


def test_compact_range_from_fetch_and_copy() -> None:
    tree = vector_tree()
    fetch = CountingFetch(tree)
    compact = CompactRange.from_fetch(7, fetch)
    assert len(fetch.calls) == 1
    assert compact.size == 7 and compact.root() == ROOTS[7]
    clone = compact.copy()
    clone.append(LEAVES[7])
    assert clone.root() == ROOTS[8] and compact.root() == ROOTS[7] and compact.size == 7
    fetch.calls.clear()
    assert CompactRange.from_fetch(0, fetch).root() == EMPTY_ROOT
    assert fetch.calls == []
    with pytest.raises(MerkleError):
        CompactRange.from_fetch(7, lambda nodes: {})


def test_compact_range_validation() -> None:
    with pytest.raises(MerkleError):
        CompactRange(3, [LEAVES[0]])
    with pytest.raises(MerkleError):
        CompactRange(-1, [])
    with pytest.raises(MerkleError):
        CompactRange(1, [b"short"])
    with pytest.raises(MerkleError):
        CompactRange().append(b"short")


def test_memory_tree_bounds() -> None:
    tree = MemoryTree(LEAVES[:5])
    assert tree.size == 5
    with pytest.raises(MerkleError):
        tree.fetch([(1, 2)])  # leaves 4..5 not complete yet
    with pytest.raises(MerkleError):
        tree.node(4, 0)
    with pytest.raises(MerkleError):
        tree.node(0, -1)
    with pytest.raises(MerkleError):
        tree.root_at(6)
    with pytest.raises(MerkleError):
        tree.inclusion_proof(0, 6)
    with pytest.raises(MerkleError):
        tree.consistency_proof(2, 6)
    assert tree.inclusion_proof(4) == inclusion_proof(4, 5, tree.fetch)
    assert tree.consistency_proof(2) == [bytes.fromhex(h) for h in CONSISTENCY_VECTORS[3][2]]
    with pytest.raises(MerkleError):
        tree.append(b"\x00" * 31)
    assert tree.size == 5
