"""C2SP tlog-tiles (c2sp.org/tlog-tiles): the log's Merkle tree and entries as static, cacheable files.

Standard library only, like ``merkle`` and ``note``, so a monitor or an auditor can read a mirror with
nothing else installed.

* A hash tile at level ``L``, index ``N``, width ``W`` is the concatenation of the ``W`` node hashes at
  Merkle level ``8L``, indices ``256N .. 256N+W-1`` (32 bytes each). A full tile has ``W = 256``; the
  rightmost tile of a level is *partial* (``W = floor(size / 256**L) mod 256``) and is never hashed
  into the level above. Level-0 tiles hold leaf hashes.
* Paths are ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``; ``N`` is written in groups of
  three digits, all but the last prefixed with ``x`` (``1234067`` is ``x001/x234/067``), so a
  filesystem can hold millions of tiles without oversized directories.
* An entry bundle is the entries of a level-0 tile, each a big-endian uint16 length then the bytes.

The client side, :class:`TileHashReader`, trusts nothing it fetches: as Go's ``tlog.TileHashReader``
does, it checks the partial tiles against the trusted root (every hash in a partial tile is part of the
root's decomposition) and every full tile against its hash in the (already checked) tile above, before
it uses a single byte of it. So a mirror, a CDN or the operator itself cannot feed it a wrong hash.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from creditflow.ledger import merkle

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = merkle.HASH_SIZE
MAX_LEVEL = 63  # tlog-tiles: L is 0..63
MAX_INDEX = (1 << 63) - 1  # int64, as Go's tlog.Tile.N: larger indices are never canonical here
MAX_ENTRY_BYTES = 0xFFFF  # a uint16 length prefix
_PATH_RE = re.compile(r"^tile/(0|[1-9][0-9]?|entries)/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?$")


class TileError(ValueError):
    """A tile path, bundle or tile content that is not what tlog-tiles (or the trusted root) allows."""


@dataclass(frozen=True)
class TileRef:
    """One tile: ``level`` None is the entry bundle of the level-0 tile with the same index and width."""

    level: int | None
    index: int
    width: int

    @property
    def path(self) -> str:
        if self.level is None:
            return entries_path(self.index, self.width)
        return tile_path(self.level, self.index, self.width)

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH


def _index_path(index: int, width: int) -> str:
    if index < 0 or index > MAX_INDEX:
        raise TileError(f"tile index {index} outside 0..{MAX_INDEX}")
    if not 1 <= width <= TILE_WIDTH:
        raise TileError(f"tile width {width} outside 1..{TILE_WIDTH}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    encoded = "/".join(reversed(groups))
    return encoded if width == TILE_WIDTH else f"{encoded}.p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/0/x001/234`` (full) or ``tile/1/005.p/17`` (partial, width 17)."""
    if not 0 <= level <= MAX_LEVEL:
        raise TileError(f"tile level {level} outside 0..{MAX_LEVEL}")
    return f"tile/{level}/{_index_path(index, width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/x001/234`` or ``tile/entries/234.p/17``: the bundle beside level-0 tile ``index``."""
    return f"tile/entries/{_index_path(index, width)}"


def parse_tile_path(path: str) -> TileRef:
    """The tile a path names; TileError for anything that is not the one canonical spelling.

    Canonical only (no leading zeroes on L or W, no redundant ``x000/`` groups, no ``.p/256``), so one
    tile has one URL and one file: a cache or a mirror can never hold two versions of it.
    """
    match = _PATH_RE.match(path)
    if match is None:
        raise TileError(f"not a tile path: {path[:120]!r}")
    level_text, index_text, width_text = match.groups()
    index = int(index_text.replace("x", "").replace("/", ""))
    width = TILE_WIDTH if width_text is None else int(width_text)
    level = None if level_text == "entries" else int(level_text)
    if level is not None and level > MAX_LEVEL:
        raise TileError(f"tile level {level} outside 0..{MAX_LEVEL}")
    if (width_text is not None and width >= TILE_WIDTH) or index > MAX_INDEX:
        raise TileError(f"not a canonical tile path: {path[:120]!r}")
    ref = TileRef(level, index, width)
    if ref.path != path:
        raise TileError(f"not a canonical tile path: {path[:120]!r}")
    return ref


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """Entries as a tlog-tiles bundle; TileError names the first entry too long for a uint16 length."""
    if len(entries) > TILE_WIDTH:
        raise TileError(f"a bundle holds at most {TILE_WIDTH} entries, got {len(entries)}")
    out = bytearray()
    for i, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_BYTES:
            raise TileError(f"entry {i} of the bundle is {len(entry)} bytes; tlog-tiles allows {MAX_ENTRY_BYTES}")
        out += struct.pack(">H", len(entry)) + entry
    return bytes(out)


def decode_bundle(data: bytes) -> list[bytes]:
    """The entries of a bundle; TileError on a truncated one or one with more than 256 entries."""
    entries: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise TileError(f"bundle truncated in the length of entry {len(entries)}")
        (length,) = struct.unpack_from(">H", data, offset)
        offset += 2
        if offset + length > len(data):
            raise TileError(f"bundle truncated in entry {len(entries)}")
        entries.append(bytes(data[offset : offset + length]))
        offset += length
        if len(entries) > TILE_WIDTH:
            raise TileError(f"a bundle holds at most {TILE_WIDTH} entries")
    return entries


def _level_tiles(size: int, level: int) -> list[TileRef]:
    nodes = size >> (TILE_HEIGHT * level)
    refs = [TileRef(level, n, TILE_WIDTH) for n in range(nodes >> TILE_HEIGHT)]
    if nodes % TILE_WIDTH:
        refs.append(TileRef(level, nodes >> TILE_HEIGHT, nodes % TILE_WIDTH))
    return refs


def tiles_for_size(size: int) -> list[TileRef]:
    """Every hash tile of the tree of ``size`` leaves, level by level, full ones then the partial one.

    A tree of 256 leaves is one full level-0 tile and a level-1 tile of width 1 (tlog-tiles' example).
    """
    if size < 0:
        raise TileError(f"tree size {size} is negative")
    refs: list[TileRef] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        refs.extend(_level_tiles(size, level))
        level += 1
    return refs


def bundles_for_size(size: int) -> list[TileRef]:
    """Every entry bundle of a log of ``size`` entries (the level-0 tiles' indices and widths)."""
    if size < 0:
        raise TileError(f"tree size {size} is negative")
    return [TileRef(None, ref.index, ref.width) for ref in _level_tiles(size, 0)]


def tile_for_size(size: int, level: int, index: int) -> TileRef | None:
    """The tile (level, index) as it exists in the tree of ``size`` (full or partial), None if empty."""
    nodes = size >> (TILE_HEIGHT * level)
    if index < nodes >> TILE_HEIGHT:
        return TileRef(level, index, TILE_WIDTH)
    if index == nodes >> TILE_HEIGHT and nodes % TILE_WIDTH:
        return TileRef(level, index, nodes % TILE_WIDTH)
    return None


def hash_tile_nodes(ref: TileRef) -> list[tuple[int, int]]:
    """The Merkle ``(level, index)`` nodes a hash tile holds, in tile order (one batched read serves it)."""
    if ref.level is None:
        raise TileError("an entry bundle holds entries, not Merkle nodes")
    first = ref.index * TILE_WIDTH
    level = ref.level * TILE_HEIGHT
    return [(level, first + i) for i in range(ref.width)]


def subtree_hash(data: bytes) -> bytes:
    """The Merkle hash over ``2**k`` concatenated hashes (Go's ``tileHash``): a full tile's parent node."""
    count = len(data) // HASH_SIZE
    if count == 0 or count & (count - 1) or len(data) % HASH_SIZE:
        raise TileError(f"{len(data)} bytes are not a power-of-two number of hashes")
    hashes = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
    while len(hashes) > 1:
        hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return bytes(hashes[0])


class TileHashReader:
    """Client side: reads node hashes out of tiles fetched with ``fetch(path) -> bytes``, checking every
    tile it uses against the trusted ``(size, root_hash)`` as Go's ``tlog.TileHashReader`` does; caches
    the checked tiles, so a proof after the first costs few or no fetches.

    ``fetch`` errors propagate unchanged; a tile of the wrong length or content raises TileError.
    """

    def __init__(self, size: int, root_hash: bytes, fetch: Callable[[str], bytes]) -> None:
        if size < 0 or len(root_hash) != HASH_SIZE:
            raise TileError("a trusted tree needs a size >= 0 and a 32-byte root")
        self.size = size
        self.root_hash = bytes(root_hash)
        self._fetch = fetch
        self._tiles: dict[TileRef, bytes] = {}  # checked tiles only
        self._root_checked = False
        self.fetched = 0

    # --- fetching and checking -------------------------------------------------------------------
    def _download(self, ref: TileRef) -> bytes:
        data = bytes(self._fetch(ref.path))
        self.fetched += 1
        if len(data) != ref.width * HASH_SIZE:
            raise TileError(f"{ref.path} is {len(data)} bytes, expected {ref.width * HASH_SIZE}")
        return data

    def _check_root(self) -> None:
        """Fetch the partial tiles (the right edge of the tree) and check they rebuild the root.

        The root decomposes into the perfect nodes of the set bits of ``size``; those at levels
        ``8L .. 8L+7`` all lie in level L's partial tile and together use every hash in it.
        """
        if self._root_checked:
            return
        partial = [ref for ref in tiles_for_size(self.size) if ref.is_partial]
        downloaded = {ref: self._download(ref) for ref in partial}
        nodes = merkle.perfect_nodes(0, self.size)
        lookup = {node: self._hash_in(node, downloaded) for node in nodes}
        if merkle.range_hash(nodes, lookup) != self.root_hash:
            raise TileError(f"the tiles do not rebuild the trusted root of tree size {self.size}")
        self._tiles.update(downloaded)
        self._root_checked = True

    def _locate(self, level: int, index: int) -> tuple[TileRef, int, int]:
        """The tile (as it exists in this tree) holding node (level, index), and the node's hash span."""
        tile_level, inner = divmod(level, TILE_HEIGHT)
        first = index << inner  # first level-8L hash under the node
        ref = tile_for_size(self.size, tile_level, first >> TILE_HEIGHT)
        assert ref is not None, "complete nodes always lie in a tile of the tree"
        offset = first % TILE_WIDTH
        return ref, offset, offset + (1 << inner)

    def _hash_in(self, node: tuple[int, int], tiles: dict[TileRef, bytes]) -> bytes:
        ref, start, end = self._locate(*node)
        return subtree_hash(tiles[ref][start * HASH_SIZE : end * HASH_SIZE])

    def _tile(self, ref: TileRef) -> bytes:
        """A checked tile: partial ones against the root, full ones against their parent's hash."""
        cached = self._tiles.get(ref)
        if cached is not None:
            return cached
        assert ref.level is not None
        if ref.is_partial:
            self._check_root()
            return self._tiles[ref]
        self._check_root()  # so a full tile's chain of parents ends at checked partial tiles
        parent = tile_for_size(self.size, ref.level + 1, ref.index >> TILE_HEIGHT)
        assert parent is not None, "a full tile always has a parent in the tree"
        slot = ref.index % TILE_WIDTH
        expected = self._tile(parent)[slot * HASH_SIZE : (slot + 1) * HASH_SIZE]
        data = self._download(ref)
        if subtree_hash(data) != expected:
            raise TileError(f"{ref.path} does not match its hash in {parent.path}")
        self._tiles[ref] = data
        return data

    # --- reading ---------------------------------------------------------------------------------
    def node_hash(self, level: int, index: int) -> bytes:
        """Hash of the perfect node (level, index); TileError if this tree does not hold it yet."""
        if level < 0 or index < 0 or self.size < (index + 1) << level:
            raise TileError(f"node {(level, index)} is not complete in the tree of size {self.size}")
        ref, start, end = self._locate(level, index)
        return subtree_hash(self._tile(ref)[start * HASH_SIZE : end * HASH_SIZE])

    def _nodes(self, nodes: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        return {node: self.node_hash(*node) for node in nodes}

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 6962 audit path of leaf ``index`` in this tree (as ``merkle.inclusion_proof``)."""
        try:
            return merkle.inclusion_proof(index, self.size, self._nodes)
        except merkle.MerkleError as exc:
            raise TileError(str(exc)) from None

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """RFC 6962 consistency proof from the tree of ``old_size`` to this one."""
        try:
            return merkle.consistency_proof(old_size, self.size, self._nodes)
        except merkle.MerkleError as exc:
            raise TileError(str(exc)) from None

    def root_at(self, old_size: int) -> bytes:
        """Root of the tree at ``old_size`` <= size, from checked tiles of this tree."""
        if not 0 <= old_size <= self.size:
            raise TileError(f"size {old_size} outside 0..{self.size}")
        nodes = merkle.perfect_nodes(0, old_size)
        return merkle.range_hash(nodes, self._nodes(nodes))

    def leaf_hashes(self, start: int, stop: int) -> list[bytes]:
        """Leaf hashes ``start .. stop-1`` (level-0 tiles, checked), e.g. to check an entry bundle."""
        if not 0 <= start <= stop <= self.size:
            raise TileError(f"leaf range [{start}, {stop}) outside the tree of size {self.size}")
        out: list[bytes] = []
        while start < stop:  # a level-0 tile at a time: one checked tile, sliced
            ref, offset, _ = self._locate(0, start)
            take = min(stop - start, ref.width - offset)
            data = self._tile(ref)
            out += [data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(offset, offset + take)]
            start += take
        return out

    def check_bundle(self, ref: TileRef, data: bytes) -> list[bytes]:
        """The entries of bundle ``ref`` fetched as ``data``, each checked against its leaf hash in the
        (checked) level-0 tiles: TileError if one differs, or the bundle has the wrong number of entries."""
        if ref.level is not None:
            raise TileError(f"{ref.path} is a hash tile, not an entry bundle")
        first = ref.index * TILE_WIDTH
        if first + ref.width > self.size:
            raise TileError(f"{ref.path} is beyond the tree of size {self.size}")
        entries = decode_bundle(data)
        if len(entries) != ref.width:
            raise TileError(f"{ref.path} holds {len(entries)} entries, expected {ref.width}")
        for offset, (entry, leaf) in enumerate(zip(entries, self.leaf_hashes(first, first + ref.width), strict=True)):
            if merkle.leaf_hash(entry) != leaf:
                raise TileError(f"entry {first + offset} in {ref.path} does not hash to its leaf in the tree")
        return entries
