"""No double spend under concurrency, and no gaps when several appenders share one log.

Several `App`s on the same database stand for several server processes (each with its own sequencer
and engine); threads within each stand for concurrent requests. Runs on SQLite and PostgreSQL (the
PostgreSQL variant skips, saying why, without CREDITFLOW_TEST_PG_URL).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import START_MS, issue_accepted, make_settings, onboard
from creditflow.bootstrap import App, build
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import DomainError
from creditflow.ledger.model.certificates import CertificateState, PieceState
from creditflow.ledger.tables import ledger_entries, log_head

THREADS = 20
RECIPIENTS = ["steel", "ore", "other", "bank"]


def race(apps: list[App], piece_id: str, kinds: list[str]) -> tuple[list[Any], Counter[str]]:
    """Start ``len(kinds)`` threads at once, thread i acting through ``apps[i % len(apps)]``."""
    barrier = threading.Barrier(len(kinds))
    wins: list[Any] = []
    refusals: Counter[str] = Counter()
    lock = threading.Lock()

    def attempt(i: int) -> None:
        app = apps[i % len(apps)]
        barrier.wait(timeout=30)
        try:
            if kinds[i] == "transfer":
                receipt = app.ledger.transfer("factory", piece_id, RECIPIENTS[i % len(RECIPIENTS)], 1_000 * (i + 1))
            else:
                receipt = app.ledger.split("factory", piece_id, [1_000 * (i + 1), 20_000_000 - 1_000 * (i + 1)])
        except DomainError as exc:
            with lock:
                refusals[exc.code] += 1
            return
        except Exception as exc:  # anything else is a failure of the test, reported below
            with lock:
                refusals[f"unexpected {type(exc).__name__}: {exc}"] += 1
            return
        with lock:
            wins.append(receipt)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(kinds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a submitter hung"
    return wins, refusals


def check_conservation(app: App, cert_id: str) -> None:
    cert = app.queries.certificate(cert_id)
    live = sum(p.amount_minor for p in app.queries.tree(cert_id) if p.live)
    assert live == (0 if cert.state == CertificateState.VOID else cert.face_minor)


@pytest.fixture
def apps(store_url: str, clock: ManualClock) -> Any:
    """Three Apps on one database: three sequencers and engines, like three server processes."""
    built = [build(make_settings(store_url), clock=clock) for _ in range(3)]
    try:
        yield built
    finally:
        for app in built:
            app.close()


@pytest.mark.parametrize(
    "kinds",
    [["transfer"] * THREADS, ["transfer", "split"] * (THREADS // 2)],
    ids=["20 transfers", "10 transfers and 10 splits"],
)
def test_one_piece_is_spent_once(apps: list[App], kinds: list[str]) -> None:
    onboard(apps[0])
    for app in apps:  # decrypt the signing keys before the race, as a warm server would have
        app.custody.signer("factory")
    for _round in range(3):
        root = issue_accepted(apps[0], 20_000_000)
        cert_id = apps[1].queries.piece(root).certificate_id
        size_before = apps[2].proofs.latest_head().tree_size

        wins, refusals = race(apps, root, kinds)

        assert len(wins) == 1, f"{len(wins)} operations spent the same piece: {wins}"
        assert refusals == Counter({"piece_already_spent": THREADS - 1}), refusals
        assert apps[0].proofs.latest_head().tree_size == size_before + 1
        assert apps[0].queries.piece(root).state == PieceState.SPENT
        children = [p for p in apps[1].queries.tree(cert_id) if p.parent_id == root]
        assert len(children) == 2
        assert sum(p.amount_minor for p in children) == 20_000_000
        check_conservation(apps[2], cert_id)
    report = apps[0].verify()
    assert report.certificates == 3
    assert apps[1].verify().root_hash == report.root_hash


# --- several processes appending -------------------------------------------------------------------

OPS_PER_PROCESS = 30


def _append_in_process(url: str, holder: str, out: str, barrier: Any) -> None:
    """Run in a spawned process: issue and accept certificates, write the seqs of the receipts."""
    app = build(make_settings(url), clock=ManualClock(START_MS))
    try:
        app.custody.signer("xcmg")
        app.custody.signer(holder)
        barrier.wait(timeout=60)
        seqs: list[int] = []
        for _ in range(OPS_PER_PROCESS // 2):
            payable = app.payables.create_payable("xcmg", holder, 1_000, "PO-mp")
            issued = app.ledger.issue("xcmg", payable.id, 1_000, dt.date(2026, 9, 1))
            accepted = app.ledger.accept(holder, str(issued.result["piece_id"]))
            seqs += [issued.seq, accepted.seq]
        Path(out).write_text(json.dumps(seqs))
    finally:
        app.close()


def test_two_processes_append_to_one_log(store_url: str, clock: ManualClock, tmp_path: Path) -> None:
    with build(make_settings(store_url), clock=clock) as app:
        onboard(app)
        start = app.proofs.latest_head().tree_size
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [
        ctx.Process(target=_append_in_process, args=(store_url, holder, str(out), barrier))
        for holder, out in zip(["factory", "steel"], outs, strict=True)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]

    a, b = (json.loads(out.read_text()) for out in outs)
    assert len(a) == len(b) == OPS_PER_PROCESS
    assert not set(a) & set(b)
    assert sorted(a + b) == list(range(start, start + 2 * OPS_PER_PROCESS)), "gaps or duplicates in the log"

    with build(make_settings(store_url), clock=clock) as app:
        with app.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one()
            top = conn.execute(select(func.max(ledger_entries.c.seq))).scalar_one()
            head = conn.execute(select(log_head.c.tree_size)).scalar_one()
        assert count == top + 1 == head == start + 2 * OPS_PER_PROCESS
        report = app.verify()
        assert report.entries == head
        assert report.certificates == OPS_PER_PROCESS


def test_a_writer_never_trusts_what_it_remembers_after_another_wrote(apps: list[App]) -> None:
    """Sequencer A remembers the change piece of its last commit; sequencer B (another process) then
    spends it. A must see that the log moved and read the piece again, so the second spend is refused."""
    first, second = apps[0], apps[1]
    onboard(first)
    root = issue_accepted(first)
    change = first.ledger.transfer("factory", root, "steel", 1_000).result["change_piece_id"]
    second.ledger.transfer("factory", str(change), "ore", 500)
    with pytest.raises(DomainError) as refused:
        first.ledger.transfer("factory", str(change), "steel", 500)
    assert refused.value.code == "piece_already_spent"
    check_conservation(first, first.queries.piece(root).certificate_id)
