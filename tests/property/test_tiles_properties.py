"""Hypothesis properties of creditflow.ledger.tiles: paths, bundles, and the checking tile reader.

The server side here is the simplest possible one (a MemoryTree's stored nodes, concatenated), so
the reader's proofs are compared with merkle.py's own proofs over the same tree.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from creditflow.ledger import merkle, tiles
from creditflow.ledger.tiles import TileError, TileHashReader, TileRef

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BIG = 65536 + 256 * 3 + 7  # three tile levels: level 2 has a partial tile of width 1


@functools.lru_cache(maxsize=8)
def tree_of(size: int) -> merkle.MemoryTree:
    return merkle.MemoryTree(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size))


def serve(tree: merkle.MemoryTree, size: int) -> dict[str, bytes]:
    """Every tile of the tree at ``size``, as a static mirror would hold it."""
    return {
        ref.path: b"".join(tree.node(*node) for node in tiles.hash_tile_nodes(ref))
        for ref in tiles.tiles_for_size(size)
    }


indices = st.integers(min_value=0, max_value=tiles.MAX_INDEX)
widths = st.integers(min_value=1, max_value=tiles.TILE_WIDTH)


@SETTINGS
@given(level=st.integers(min_value=0, max_value=63), index=indices, width=widths)
def test_tile_paths_round_trip(level: int, index: int, width: int) -> None:
    path = tiles.tile_path(level, index, width)
    assert tiles.parse_tile_path(path) == TileRef(level, index, width)
    bundle = tiles.entries_path(index, width)
    assert tiles.parse_tile_path(bundle) == TileRef(None, index, width)


def test_tile_path_examples() -> None:
    assert tiles.tile_path(0, 1234) == "tile/0/x001/234"
    assert tiles.tile_path(1, 5, 17) == "tile/1/005.p/17"
    assert tiles.tile_path(4, 1234067, 1) == "tile/4/x001/x234/067.p/1"
    assert tiles.entries_path(1234) == "tile/entries/x001/234"
    assert tiles.entries_path(0, 3) == "tile/entries/000.p/3"


@pytest.mark.parametrize(
    "path",
    [
        "tile/00/000",
        "tile/64/000",
        "tile/0/0",
        "tile/0/x000/001",
        "tile/0/001.p/256",
        "tile/0/001.p/0",
        "tile/0/001.p/017",
        "tile/0/001.p/",
        "/tile/0/000",
        "tile/0/000/",
        "tile/data/000",
        "tile/8/0/000",
        "tile/0/x1000/000",
        "tile/-1/000",
        "tile/0/+01",
        "tile/entries/x000/000",
        "tile/0/000.p/1/",
        "",
        "tile/0/x009/x223/x372/x036/x854/x775/808",  # 2**63: beyond int64
    ],
)
def test_non_canonical_paths_are_refused(path: str) -> None:
    with pytest.raises(TileError):
        tiles.parse_tile_path(path)


@SETTINGS
@given(st.lists(st.binary(max_size=300), max_size=tiles.TILE_WIDTH))
def test_bundles_round_trip(entries: list[bytes]) -> None:
    assert tiles.decode_bundle(tiles.encode_bundle(entries)) == entries


def test_bundle_limits() -> None:
    assert tiles.decode_bundle(tiles.encode_bundle([b"x" * 0xFFFF])) == [b"x" * 0xFFFF]
    with pytest.raises(TileError, match=r"entry 1 .* 65536 bytes"):
        tiles.encode_bundle([b"", b"x" * 0x10000])
    with pytest.raises(TileError, match="truncated"):
        tiles.decode_bundle(b"\x00\x05abc")
    with pytest.raises(TileError, match="truncated"):
        tiles.decode_bundle(b"\x00")
    with pytest.raises(TileError, match="at most 256"):
        tiles.decode_bundle(b"\x00\x00" * 257)


def test_tiles_for_size_matches_the_spec_examples() -> None:
    # tlog-tiles: "a tree of size 70,000 ... 273 full level 0 tiles, one partial level 0 tile of width
    # 112, one full level 1 tile, one partial level 1 tile of width 17, and one partial level 2 tile of
    # width 1"; "a tree of size 256 ... a full level 0 tile and a partial level 1 tile of width 1".
    refs = tiles.tiles_for_size(70_000)
    assert sum(1 for r in refs if r.level == 0 and r.width == 256) == 273
    assert [r for r in refs if r.is_partial] == [TileRef(0, 273, 112), TileRef(1, 1, 17), TileRef(2, 0, 1)]
    assert TileRef(1, 0, 256) in refs and len(refs) == 273 + 1 + 1 + 1 + 1
    assert tiles.tiles_for_size(256) == [TileRef(0, 0, 256), TileRef(1, 0, 1)]
    assert tiles.tiles_for_size(0) == []
    assert tiles.bundles_for_size(300) == [TileRef(None, 0, 256), TileRef(None, 1, 44)]
    assert tiles.hash_tile_nodes(TileRef(1, 2, 3)) == [(8, 512), (8, 513), (8, 514)]


@SETTINGS
@given(size=st.integers(min_value=1, max_value=1200), data=st.data())
@example(size=256, data=None)
@example(size=BIG, data=None)
def test_reader_proofs_equal_merkle_proofs(size: int, data: st.DataObject | None) -> None:
    tree = tree_of(size)
    mirror = serve(tree, size)
    reader = TileHashReader(size, tree.root(), mirror.__getitem__)
    if data is None:
        index, old = size - 1, size // 2 + 1
    else:
        index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
        old = data.draw(st.integers(min_value=0, max_value=size), label="old_size")
    assert reader.inclusion_proof(index) == tree.inclusion_proof(index)
    assert reader.consistency_proof(old) == tree.consistency_proof(old)
    assert reader.root_at(old) == tree.root_at(old)
    assert reader.leaf_hashes(index, min(size, index + 3)) == [
        tree.node(0, i) for i in range(index, min(size, index + 3))
    ]
    assert merkle.verify_inclusion(tree.node(0, index), index, size, reader.inclusion_proof(index), tree.root())
    fetched = reader.fetched
    reader.inclusion_proof(index)  # cached: nothing fetched again
    assert reader.fetched == fetched <= len(mirror)


def test_empty_tree_needs_no_tiles() -> None:
    reader = TileHashReader(0, merkle.EMPTY_ROOT, {}.__getitem__)
    assert reader.consistency_proof(0) == [] and reader.root_at(0) == merkle.EMPTY_ROOT
    with pytest.raises(TileError):
        reader.node_hash(0, 0)


@SETTINGS
@given(size=st.integers(min_value=1, max_value=1200), data=st.data())
def test_any_corrupted_tile_byte_is_detected(size: int, data: st.DataObject) -> None:
    tree = tree_of(size)
    mirror = serve(tree, size)
    path = data.draw(st.sampled_from(sorted(mirror)), label="tile")
    byte = data.draw(st.integers(min_value=0, max_value=len(mirror[path]) - 1), label="byte")
    corrupt = bytearray(mirror[path])
    corrupt[byte] ^= 1 << data.draw(st.integers(min_value=0, max_value=7), label="bit")
    mirror[path] = bytes(corrupt)
    reader = TileHashReader(size, tree.root(), mirror.__getitem__)
    ref = tiles.parse_tile_path(path)
    assert ref.level is not None
    node = tiles.hash_tile_nodes(ref)[byte // merkle.HASH_SIZE]
    with pytest.raises(TileError):
        reader.node_hash(*node)
    # and a whole read of the tree (every leaf) fails too, whichever tile was hit
    with pytest.raises(TileError):
        TileHashReader(size, tree.root(), mirror.__getitem__).leaf_hashes(0, size)


@pytest.mark.parametrize("size", [1, 255, 256, 257, 300, 65536])
def test_wrong_lengths_and_wrong_roots_are_refused(size: int) -> None:
    tree = tree_of(size)
    mirror = serve(tree, size)
    with pytest.raises(TileError, match="rebuild the trusted root"):
        TileHashReader(size, bytes(32), mirror.__getitem__).node_hash(0, 0)
    first = tiles.tiles_for_size(size)[0].path
    mirror[first] = mirror[first] + bytes(32)
    with pytest.raises(TileError, match="bytes, expected"):
        TileHashReader(size, tree.root(), mirror.__getitem__).node_hash(0, 0)
    with pytest.raises(TileError, match="not complete"):
        TileHashReader(size, tree.root(), mirror.__getitem__).node_hash(0, size)


@SETTINGS
@given(size=st.integers(min_value=1, max_value=700), data=st.data())
def test_bundles_are_checked_against_the_level_0_tiles(size: int, data: st.DataObject) -> None:
    entries = [b"entry %d" % i for i in range(size)]
    tree = merkle.MemoryTree(merkle.leaf_hash(e) for e in entries)
    mirror = serve(tree, size)
    reader = TileHashReader(size, tree.root(), mirror.__getitem__)
    ref = data.draw(st.sampled_from(tiles.bundles_for_size(size)), label="bundle")
    first = ref.index * tiles.TILE_WIDTH
    own = entries[first : first + ref.width]
    assert reader.check_bundle(ref, tiles.encode_bundle(own)) == own
    changed = list(own)
    at = data.draw(st.integers(min_value=0, max_value=len(own) - 1), label="entry")
    changed[at] += b"!"
    with pytest.raises(TileError, match=f"entry {first + at} "):
        reader.check_bundle(ref, tiles.encode_bundle(changed))
    with pytest.raises(TileError, match="entries, expected"):
        reader.check_bundle(ref, tiles.encode_bundle(own[:-1]))
    with pytest.raises(TileError, match="beyond the tree"):
        reader.check_bundle(TileRef(None, size // tiles.TILE_WIDTH + 1, 1), b"")
