"""The log as C2SP tlog-tiles (c2sp.org/tlog-tiles): the newest checkpoint, hash tiles and entry bundles.

What `/log/` serves and `creditflow log export-tiles` writes. A tile is a run of stored perfect-subtree
hashes (``merkle_nodes``, leaves beside the entries), so serving one is one range read and no hashing.
Every tile of a tree that holds it is immutable, partial ones included: a partial tile of width W is
the first W hashes of its full tile, and those never change once the log holds them. So any tile the
current tree covers is served, whatever checkpoint the client holds.

Entry bundles name parties and amounts: who may read them is the caller's (HTTP, CLI) decision.
"""

from __future__ import annotations

from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import LimitExceeded, NotFound
from creditflow.ledger import store, tiles
from creditflow.ledger.checkpoints import Checkpoints
from creditflow.ledger.note import Checkpoint, parse_checkpoint, parse_note
from creditflow.ledger.tiles import TileRef


class TileServer:
    def __init__(self, engine: Engine, checkpoints: Checkpoints):
        self.engine = engine
        self.checkpoints = checkpoints

    @property
    def origin(self) -> str:
        return self.checkpoints.origin

    def _read(self) -> Connection:
        return self.engine.connect().execution_options(read_only=True)

    def checkpoint(self) -> tuple[int, str]:
        """The newest checkpoint (size, signed note text): published with cosignatures if there is one."""
        with self._read() as conn:
            return self.checkpoints.latest(conn)

    def checkpoint_body(self, note_text: str) -> Checkpoint:
        """The origin, size and root a checkpoint of this log states (its own signature is not re-checked)."""
        return parse_checkpoint(parse_note(note_text).text)

    @staticmethod
    def parse(path: str) -> TileRef:
        """The tile a ``tile/...`` path names; 404 ``tile_path_invalid`` for a non-canonical one."""
        try:
            return tiles.parse_tile_path(path)
        except tiles.TileError as exc:
            raise NotFound(str(exc), code="tile_path_invalid") from None

    @staticmethod
    def _check_in_tree(ref: TileRef, size: int) -> None:
        level = ref.level or 0
        if (size >> (tiles.TILE_HEIGHT * level)) < ref.index * tiles.TILE_WIDTH + ref.width:
            what = "entry bundle" if ref.level is None else "tile"
            raise NotFound(f"{what} {ref.path} is beyond the log of size {size}", code="tile_not_found")

    def tile(self, ref: TileRef, size: int | None = None) -> bytes:
        """A hash tile's bytes; 404 ``tile_not_found`` if the tree (of ``size``, default now) lacks it."""
        if ref.level is None:
            raise NotFound("an entry bundle is not a hash tile", code="tile_path_invalid")
        with self._read() as conn:
            self._check_in_tree(ref, store.read_head(conn)[0] if size is None else size)
            level, first = tiles.hash_tile_nodes(ref)[0]
            hashes = store.node_run(conn, level, first, ref.width)
        if len(hashes) != ref.width:  # the head says the tree holds them: storage lost some
            raise AssertionError(f"{ref.path}: {len(hashes)} of {ref.width} stored nodes found")
        return b"".join(hashes)

    def bundle(self, ref: TileRef, size: int | None = None) -> bytes:
        """An entry bundle's bytes; 413 ``entry_too_long_for_bundle`` for an entry over 65535 bytes."""
        if ref.level is not None:
            raise NotFound("a hash tile is not an entry bundle", code="tile_path_invalid")
        with self._read() as conn:
            self._check_in_tree(ref, store.read_head(conn)[0] if size is None else size)
            entries = store.entry_run(conn, ref.index * tiles.TILE_WIDTH, ref.width)
        if len(entries) != ref.width:
            raise AssertionError(f"{ref.path}: {len(entries)} of {ref.width} entries found")
        try:
            return tiles.encode_bundle(entries)
        except tiles.TileError as exc:
            raise LimitExceeded(str(exc), code="entry_too_long_for_bundle") from None
