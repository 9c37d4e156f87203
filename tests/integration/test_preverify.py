"""The sequencer's pre-verifier, on SQLite and PostgreSQL (forced on for both).

It checks signatures on a second thread ahead of the writer, under the keys the last commit knew. It must
only ever save time: a forged signature, a key rotated out, a key it has not seen yet all end exactly as
without it, and whatever it did the log replays green.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import pytest

from conftest import make_settings
from creditflow.bootstrap import App, build
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import DomainError
from creditflow.ledger import store
from creditflow.ledger.entries import SignedOperation, sign_operation
from creditflow.ledger.sequencer import Receipt, _Submission
from creditflow.ledger.signing import Signer
from creditflow.tools.bench.ledger import Workload

BATCH = 8


@pytest.fixture
def pre_app(store_url: str, clock: ManualClock) -> Iterator[App]:
    # Small batches: the writer claims at most BATCH operations before it waits at the held lock.
    settings = make_settings(store_url, sequencer_preverify=True, sequencer_batch_max=BATCH)
    with build(settings, clock=clock) as application:
        yield application


@contextmanager
def writer_held(app: App) -> Iterator[None]:
    """Hold the log head lock from another connection: the writer waits at its first batch (SQLite's
    busy timeout and PostgreSQL's row lock both wait 30 s and more), the pre-verifier does not."""
    with app.engine.begin() as conn:
        store.lock_head(conn)
        yield


def preverified_op_ids(app: App, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Record which operations the pre-verifier found sound."""
    seen: set[str] = set()
    original = app.sequencer._preverify

    def recording(sub: _Submission) -> None:
        original(sub)
        if sub.verified:
            seen.add(sub.signed.op.op_id)

    monkeypatch.setattr(app.sequencer, "_preverify", recording)
    return seen


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the pre-verifier did not get there in time"
        time.sleep(0.01)


def outcome(future: Future[Receipt]) -> str:
    try:
        return future.result(timeout=60).op_type
    except DomainError as exc:
        return exc.code


def forged(signed: SignedOperation, by: Signer) -> SignedOperation:
    """The same operation with its signature made by ``by`` under the original key id."""
    block = dataclasses.replace(signed.sigs[0], sig=by.sign(signed.message))
    return dataclasses.replace(signed, sigs=(block,))


def test_a_preverified_pair_counts_only_for_its_own_message() -> None:
    signer, other = Signer.generate("k1"), Signer.generate("k2")
    payload = {
        "v": 1,
        "type": "split",
        "op_id": str(uuid.uuid4()),
        "actor": "a",
        "piece_id": str(uuid.uuid4()),
        "amounts_minor": [1, 2],
    }
    signed = sign_operation(payload, [signer])
    sub = _Submission(signed, None, Future())
    sig = signed.sigs[0].sig
    assert sub.verify(signer.public_key, signed.message, sig)  # not pre-verified: checked for real
    assert not sub.verify(other.public_key, signed.message, sig)
    # A recorded verdict is trusted for exactly that key, signature and message, and nothing else.
    sub.verified = frozenset({(other.public_key, sig)})
    assert sub.verify(other.public_key, signed.message, sig)
    assert not sub.verify(other.public_key, signed.message + b"x", sig)
    assert not sub.verify(other.public_key, signed.message, bytes(64))


def test_pipelined_operations_are_preverified_and_bad_ones_still_refused(
    pre_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = pre_app
    work = Workload(app, lanes=8)
    seen = preverified_op_ids(app, monkeypatch)
    good = work.operations(400)
    intruder = Signer.generate("k1")
    bad = forged(work.sign("alpha", {"type": "split", "piece_id": work.heads[0], "amounts_minor": [1, 1]}), intruder)
    with writer_held(app):
        futures = [app.sequencer.submit_async(s) for s in good[:200]]
        futures.append(app.sequencer.submit_async(bad))
        futures += [app.sequencer.submit_async(s) for s in good[200:]]
        wait_for(lambda: len(seen) >= len(good) - BATCH)  # all but the writer's first batch
    outcomes = [outcome(f) for f in futures]
    assert bad.op.op_id not in seen
    assert outcomes[200] == "bad_signature"
    assert outcomes[:200] + outcomes[201:] == [s.op.TYPE for s in good]
    assert app.sequencer.ops_preverified > 0  # the second thread did work ahead of the writer
    assert app.verify().entries == app.sequencer.ops_committed


def test_a_key_rotated_out_is_refused_though_its_signature_was_preverified(
    pre_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = pre_app
    seen = preverified_op_ids(app, monkeypatch)
    work = Workload(app, lanes=4)
    for f in [app.sequencer.submit_async(s) for s in work.operations(40)]:
        f.result(timeout=60)  # the pre-verifier now knows alpha's key k1
    old, new = work.signers["alpha"], Signer.generate("k2")
    app.ledger.submit_signed(
        work.sign(
            "alpha", {"type": "rotate_key", "org_id": "alpha", "key_id": "k2", "public_key": new.public_key.hex()}
        )
    )
    heads, amounts = list(work.heads), list(work.amounts)
    stale = work.operations(100)  # still signed with k1, which the pre-verifier will find sound
    work.heads, work.amounts, work.signers["alpha"] = heads, amounts, new
    fresh = work.operations(100)
    before = app.sequencer.ops_committed
    with writer_held(app):
        futures = [app.sequencer.submit_async(s) for s in stale]
        wait_for(lambda: len(seen & {s.op.op_id for s in stale}) >= len(stale) - BATCH)  # sound, by the old key
    assert {outcome(f) for f in futures} == {"key_not_valid"}
    assert app.sequencer.ops_committed == before
    assert {outcome(f) for f in [app.sequencer.submit_async(s) for s in fresh]} == {"transfer", "split"}
    assert old.public_key != new.public_key
    assert app.verify().entries == app.sequencer.ops_committed
