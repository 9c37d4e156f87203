"""Acknowledged means durable, and a crash leaves nothing half-applied.

A child process appends operations from several threads and prints each acknowledged receipt; the
parent kills it with SIGKILL in the middle of the load, then checks the database as the next process
finds it: every acknowledged operation is in the log at the position its receipt gave, `verify` is
green before anything else touches the database, and a new App carries on appending.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import START_MS, issue_accepted, make_settings, onboard
from creditflow.bootstrap import build
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.engine import make_engine
from creditflow.ledger.audit import verify_database
from creditflow.ledger.tables import ledger_entries

ACKS_BEFORE_KILL = 300

CHILD = textwrap.dedent(
    """
    import datetime as dt
    import sys
    import threading

    url, start_ms, tests_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sys.path.insert(0, tests_dir)

    from conftest import make_settings  # the same settings as the tests (fast key derivation)

    from creditflow.bootstrap import build
    from creditflow.kernel.clock import ManualClock

    app = build(make_settings(url), clock=ManualClock(start_ms))
    out = threading.Lock()


    def ack(receipt):
        with out:
            sys.stdout.write(f"{receipt.op_id} {receipt.seq} {receipt.op_type}\\n")
            sys.stdout.flush()


    def work(holder, recipient):
        while True:
            payable = app.payables.create_payable("xcmg", holder, 100_000, "PO-crash")
            issued = app.ledger.issue("xcmg", payable.id, 100_000, dt.date(2026, 9, 1))
            ack(issued)
            root = str(issued.result["piece_id"])
            ack(app.ledger.accept(holder, root))
            split = app.ledger.split(holder, root, [30_000, 70_000])
            ack(split)
            first, second = (str(p) for p in split.result["piece_ids"])
            sent = app.ledger.transfer(holder, first, recipient, 10_000)
            ack(sent)
            ack(app.ledger.accept(recipient, str(sent.result["piece_id"])))
            ack(app.ledger.freeze("operator", second, "crash test"))


    pairs = [("factory", "steel"), ("steel", "ore"), ("ore", "other"), ("other", "bank")]
    for holder, recipient in pairs:
        app.custody.signer(holder)
    threads = [threading.Thread(target=work, args=pair, daemon=True) for pair in pairs]
    print("ready", flush=True)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
)


def test_sigkill_mid_load_loses_nothing_acknowledged(store_url: str, tmp_path: Path) -> None:
    clock = ManualClock(START_MS)
    with build(make_settings(store_url), clock=clock) as app:
        onboard(app)
        log_keys = app.log_keys
        start = app.proofs.latest_head().tree_size

    script = tmp_path / "appender.py"
    script.write_text(CHILD)
    args = [str(START_MS), str(Path(__file__).resolve().parent.parent)]
    child = subprocess.Popen(
        [sys.executable, str(script), store_url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml")},
    )
    acked: dict[str, int] = {}
    deadline = time.monotonic() + 60
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        while len(acked) < ACKS_BEFORE_KILL:
            line = child.stdout.readline()
            assert line, f"the appender died: {child.stderr.read() if child.stderr else ''}"
            op_id, seq, _kind = line.split()
            acked[op_id] = int(seq)
            assert time.monotonic() < deadline, "too slow to reach the kill point"
        os.kill(child.pid, signal.SIGKILL)
        rest, _err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    for line in rest.splitlines():  # acknowledged between our last read and the kill
        if line.strip():
            op_id, seq, _kind = line.split()
            acked[op_id] = int(seq)

    # The database as the next process finds it, before anything (migrations, a sequencer) touches it.
    engine = make_engine(store_url)
    try:
        with engine.connect() as conn:
            stored = {r.op_id: int(r.seq) for r in conn.execute(select(ledger_entries.c.op_id, ledger_entries.c.seq))}
        missing = {op: seq for op, seq in acked.items() if stored.get(op) != seq}
        assert not missing, f"{len(missing)} acknowledged operations lost or moved: {list(missing.items())[:5]}"
        report = verify_database(engine, log_keys)
        assert report.entries == len(stored) >= start + len(acked)
    finally:
        engine.dispose()

    # A new process carries on where the log stopped.
    with build(make_settings(store_url), clock=clock) as app:
        before = app.proofs.latest_head().tree_size
        assert before == report.entries
        issue_accepted(app, 50_000, holder="ore")
        assert app.proofs.latest_head().tree_size == before + 2
        after = app.verify()
        assert after.entries == before + 2
        assert after.certificates == report.certificates + 1


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
def test_sigkill_soak(store_url: str, tmp_path: Path, round_: int) -> None:
    """More kills at other points of the load (run by `make bench`)."""
    test_sigkill_mid_load_loses_nothing_acknowledged(store_url, tmp_path)
