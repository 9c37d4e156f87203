"""`creditflow serve` returns pieces nobody accepted in time, on its own (the expiry sweep)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from conftest import START_MS, issue_accepted, make_settings, onboard
from creditflow.bootstrap import build
from creditflow.http.app import create_app
from creditflow.kernel.clock import ManualClock
from creditflow.ledger.model.certificates import PieceState

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DAY_MS = 86_400_000


def test_the_server_returns_expired_pieces_to_their_senders(tmp_path: Path) -> None:
    clock = ManualClock(START_MS)
    settings = make_settings(f"sqlite:///{tmp_path / 'sweep.db'}", expiry_sweep_interval_s=0.05)
    with build(settings, clock=clock) as app:
        onboard(app, "xcmg", "factory", "steel")
        root = issue_accepted(app)
        sent = str(app.ledger.transfer("factory", root, "steel", 1_000).result["piece_id"])
        with TestClient(create_app(app)):
            time.sleep(0.3)
            assert app.queries.piece(sent).state == PieceState.PENDING  # the deadline is still ahead
            clock.advance(settings.accept_deadline_days * DAY_MS)
            deadline = time.monotonic() + 10
            while app.queries.piece(sent).state == PieceState.PENDING and time.monotonic() < deadline:
                time.sleep(0.05)
        assert app.queries.piece(sent).state == PieceState.EXPIRED
        back = [p for p in app.queries.pieces_by_holder("factory").items if p.parent_id == sent]
        assert [p.amount_minor for p in back] == [1_000]
        app.verify()
