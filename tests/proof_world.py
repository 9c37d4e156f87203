"""A small world for the proof tests: a certificate issued to a supplier, part transferred on, part financed by
a bank; checkpoints published with witnesses' cosignatures as the publisher would store them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from conftest import issue_accepted
from creditflow.bootstrap import App
from creditflow.ledger import store
from creditflow.ledger.note import COSIGNATURE_V1, NoteSigner
from creditflow.ledger.signing import Signer


@dataclass(frozen=True)
class Flow:
    issue_seq: int  # xcmg issues to factory
    transfer_seq: int  # factory transfers to steel
    finance_seq: int  # factory sells a piece to bank (signed by both)
    register_steel_seq: int  # the platform registers steel


def entry_seq(app: App, op_type: str, actor: str | None = None) -> int:
    size = app.proofs.latest_head().tree_size
    rows = [r for r in app.proofs.entry_rows(0, size, 500) if r["op_type"] == op_type and actor in (None, r["actor"])]
    return int(rows[-1]["seq"])


def register_seq(app: App, org: str) -> int:
    size = app.proofs.latest_head().tree_size
    for r in app.proofs.entry_rows(0, size, 500):
        if r["op_type"] == "register_party" and f'"org_id":"{org}"'.encode().hex() in r["entry"]:
            return int(r["seq"])
    raise AssertionError(f"{org} was not registered")


def small_flow(app: App) -> Flow:
    """On an onboarded world: issue, transfer, financing (one entry each that names two parties)."""
    root = issue_accepted(app, 100_000_000, "factory")
    issue_seq = entry_seq(app, "issue")
    transfer = app.ledger.transfer("factory", root, "steel", 30_000_000)
    app.financing.set_rating("xcmg", "AAA")
    app.financing.set_limit("bank", "xcmg", 10**9)
    app.financing.create_product("bank", "discounting", {"AAA": {30: 300, 90: 350, 180: 400, 365: 450}}, product_id="p")
    change = app.queries.pieces_by_holder("factory").items[0].id
    assert app.financing.request("factory", change, "bank", "p", 20_000_000).approved
    return Flow(issue_seq, transfer.seq, entry_seq(app, "finance"), register_seq(app, "steel"))


def witness(name: str) -> NoteSigner:
    return NoteSigner(name, Signer.generate(name), COSIGNATURE_V1)


def publish(app: App, cosigners: Sequence[NoteSigner], *, bad: str | None = None) -> tuple[int, str]:
    """Publish the checkpoint of the current size with ``cosigners``' cosignatures, as the publisher does
    (log signature, then cosignature/v1 lines); ``bad`` names a cosigner whose cosignature is corrupted."""
    with app.engine.begin() as conn:
        size = store.read_head(conn)[0]
        note = app.checkpoints.sign(size, app.checkpoints.root_at(conn, size))
        when = app.clock.now_ms() // 1000
        sigs = []
        for c in cosigners:
            sig = c.sign(note.text, when)
            if c.name == bad:
                sig = type(sig)(sig.name, sig.key_id, sig.signature[:-1] + bytes([sig.signature[-1] ^ 1]))
            sigs.append(sig)
        text = note.with_signatures(sigs).encode()
        store.save_checkpoint(conn, size, text, len(cosigners), app.clock.now_ms())
    return size, text
