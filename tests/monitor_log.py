"""A real log for the monitor's tests: every kind of operation the platform signs, made through the services.

`varied_log` registers the demo's cast (platform-signed), issues and accepts certificates, transfers, splits,
rejects, freezes and unfreezes, rotates a key and lets a piece expire: the rules a replay must re-apply.
`more_entries` appends ``n`` cheap operations (transfers and accepts) for growth between monitor rounds.
`MemoryLog` serves a log's checkpoint, tiles and bundles from memory, for the monitor's unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from conftest import issue_accepted, onboard
from creditflow.bootstrap import App
from creditflow.ledger import merkle, store, tiles
from creditflow.ledger.monitor import FetchError
from creditflow.ledger.note import Checkpoint, Note, NoteSigner

HOUR_MS = 3_600_000


def varied_log(app: App) -> None:
    onboard(app)
    root = issue_accepted(app, 50_000_000)
    sent = app.ledger.transfer("factory", root, "steel", 20_000_000).result
    app.ledger.accept("steel", str(sent["piece_id"]))
    change = str(sent["change_piece_id"]) if sent.get("change_piece_id") else None
    if change:
        parts = app.ledger.split("factory", change, [10_000_000, 20_000_000]).result
        first = str(parts["piece_ids"][0])
        app.ledger.freeze("operator", first, "court order")
        app.ledger.unfreeze("operator", first, "released")
    refused = issue_accepted(app, 7_000_000, holder="ore")
    back = app.ledger.transfer("ore", refused, "steel", 1_000_000).result
    app.ledger.reject("steel", str(back["piece_id"]))
    app.ledger.rotate_key("steel")
    app.ledger.transfer("ore", str(back.get("change_piece_id") or refused), "factory", 500_000)  # never accepted
    app.clock.advance(30 * 24 * HOUR_MS)  # type: ignore[attr-defined]
    assert app.ledger.expire_due(), "the unaccepted transfer should have expired"


def more_entries(app: App, n: int) -> None:
    """``n`` more entries (n even): a fresh certificate for ore, then 1-fen transfers to steel, each accepted."""
    piece = issue_accepted(app, 10_000_000_000, holder="ore")
    done = 2
    while done + 2 <= n:
        sent = app.ledger.transfer("ore", piece, "steel", 1).result
        app.ledger.accept("steel", str(sent["piece_id"]))
        piece = str(sent["change_piece_id"])
        done += 2


def log_entries(app: App, start: int = 0) -> Iterator[tuple[int, bytes]]:
    with app.engine.connect().execution_options(read_only=True) as conn:
        for seq, _op, _type, _actor, _ts, entry, _leaf in store.stream_entries(conn):
            if seq >= start:
                yield seq, entry


class MemoryLog:
    """A tlog-tiles source in memory: the checkpoint (signed by ``signer`` as ``origin``, cosigned by
    ``witnesses``), hash tiles and entry bundles of ``entries``, as `creditflow monitor` fetches them.

    Tests mutate it behind the monitor's back: `entries` (then `sign`), `tamper` (path -> bytes), `refuse`."""

    def __init__(self, origin: str, signer: Any, entries: list[bytes], witnesses: tuple[Any, ...] = ()):
        self.note_signer = NoteSigner(origin, signer)
        self.entries = list(entries)
        self.witnesses = witnesses
        self.tamper: dict[str, Callable[[bytes], bytes]] = {}
        self.paths: list[str] = []
        self.sign()

    @property
    def vkey(self) -> str:
        return self.note_signer.verifier.encode()

    def sign(self, size: int | None = None) -> None:
        """Publish the checkpoint of the first ``size`` entries (default all)."""
        self.size = len(self.entries) if size is None else size
        self.tree = merkle.MemoryTree(merkle.leaf_hash(e) for e in self.entries[: self.size])
        text = Checkpoint(self.note_signer.name, self.size, self.tree.root()).text()
        sigs = [self.note_signer.sign(text)] + [w.sign(text, 1_780_000_000) for w in self.witnesses]
        self.checkpoint = Note(text, tuple(sigs)).encode()

    def fetch(self, path: str) -> bytes:
        self.paths.append(path)
        data = self._serve(path)
        if path in self.tamper:
            return self.tamper[path](data)
        return data

    def _serve(self, path: str) -> bytes:
        if path == "checkpoint":
            return self.checkpoint.encode()
        ref = tiles.parse_tile_path(path)
        if ref.level is None:
            first = ref.index * tiles.TILE_WIDTH
            if first + ref.width > self.size:
                raise FetchError(path, "HTTP 404", 404)
            return tiles.encode_bundle(self.entries[first : first + ref.width])
        if tiles.tile_for_size(self.size, ref.level, ref.index) != ref:
            raise FetchError(path, "HTTP 404", 404)
        return b"".join(self.tree.node(lv, ix) for lv, ix in tiles.hash_tile_nodes(ref))

    def hash_tiles(self) -> list[str]:
        return [p for p in self.paths if not p.startswith("tile/entries/") and p != "checkpoint"]

    def bundles(self) -> list[str]:
        return [p for p in self.paths if p.startswith("tile/entries/")]
