"""A log of real, signed operations of a chosen size, for the tlog-tiles tests (HTTP, export, Go)."""

from __future__ import annotations

from conftest import issue_accepted, onboard
from creditflow.bootstrap import App

CAST = ("xcmg", "factory", "operator", "auditor")
BASE_ENTRIES = len(CAST) + 2  # onboarding, then an issue and its acceptance


def start_log(app: App) -> str:
    """Onboard the cast and give the factory an accepted certificate: returns the piece to split."""
    onboard(app, *CAST)
    return issue_accepted(app)


def grow_to(app: App, piece_id: str, size: int) -> str:
    """Split one unit off the factory's piece until the log holds ``size`` entries; returns the piece
    that remains (split it further to grow the log again). One real, signed operation per entry."""
    current = app.tiles.checkpoint()[0]
    assert current <= size, (current, size)
    for _ in range(size - current):
        receipt = app.ledger.split("factory", piece_id, [1, _amount(app, piece_id) - 1])
        piece_id = str(receipt.result["piece_ids"][1])
    assert app.tiles.checkpoint()[0] == size
    return piece_id


def _amount(app: App, piece_id: str) -> int:
    return app.queries.piece(piece_id).amount_minor
