"""A real log for the monitor's tests: every kind of operation the platform signs, made through the services.

`varied_log` registers the demo's cast (platform-signed), issues and accepts certificates, transfers, splits,
rejects, freezes and unfreezes, rotates a key and lets a piece expire: the rules a replay must re-apply.
`more_entries` appends ``n`` cheap operations (transfers and accepts) for growth between monitor rounds.
"""

from __future__ import annotations

from collections.abc import Iterator

from conftest import issue_accepted, onboard
from creditflow.bootstrap import App
from creditflow.ledger import store

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
