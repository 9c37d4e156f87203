"""Hypothesis properties of the whole ledger, on a real App over a SQLite file.

1. `LedgerMachine`: random sequences of payable/issue/accept/reject/transfer/split/freeze/unfreeze/
   revoke/expire/rotate-key/register operations and clock moves, by random actors (often the wrong one)
   with random (often invalid) amounts. After every step: conservation on the read model, payables draw
   exactly the face of their live certificates, frozen pieces do not move, an accepted operation appends
   exactly one entry per receipt, and a refused one changes no row of any table. At the end, `verify` is
   green.
2. `test_any_single_change_is_detected`: after a random run, one byte of one stored thing is changed
   behind the ledger's back; `verify_database` names the entry or row.

Each example builds its own App on a copy of a migrated, onboarded template database (about 10 ms), so
no function-scoped fixture is shared between examples.
"""

from __future__ import annotations

import atexit
import datetime as dt
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, inspect, select, update

from conftest import ROLES, START_MS, USCC, make_settings, onboard
from creditflow.bootstrap import App, build
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import DomainError
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger import merkle
from creditflow.ledger.entries import sign_operation
from creditflow.ledger.model.certificates import CHINA_TZ, CertificateState, PieceState
from creditflow.ledger.sequencer import Receipt
from creditflow.ledger.tables import (
    certificates,
    ledger_entries,
    log_head,
    merkle_nodes,
    parties,
    party_keys,
    piece_events,
    pieces,
    tree_heads,
)
from creditflow.ledger.verifier import VerificationFailure
from creditflow.migrations.schema import metadata

# Shrinking a failure replays whole runs on a real database; Hypothesis allows itself five minutes for it,
# as long as pytest's own timeout. One minute still gives a short example and leaves time to report it.
SHRINKING_SECONDS = 60
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)  # no slow "explain" phase


@pytest.fixture(autouse=True)
def _bounded_shrinking(monkeypatch: pytest.MonkeyPatch) -> None:
    from hypothesis.internal.conjecture import engine

    # Documented in hypothesis as monkeypatchable; if a future version drops it, shrinking just runs longer.
    monkeypatch.setattr(engine, "MAX_SHRINKING_SECONDS", SHRINKING_SECONDS, raising=False)


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
ORGS = list(ROLES)
NEW_ORGS = ["newco", "xcmg", "n.2", "bad id!", ""]  # a fresh id, a taken one, a valid one, two invalid
NEW_ROLES = ["supplier", "bank", "core_enterprise", "operator", "auditor", "pirate"]
NEW_USCC = [make_uscc("91320300134780077"), USCC["factory"], "91320300134780077X", "not-a-uscc"]
REASONS = ["court order", "法院冻结 (court freeze)", "court order", "", "x" * 201]


FULL_ROWS = {
    "log_head",
    "ledger_entries",
    "merkle_nodes",
    "tree_heads",
    "parties",
    "party_keys",
    "certificates",
    "pieces",
    "piece_events",
    "payables",
    "custody_keys",
    "credit_lines",
    "invoice_usage",
    "piece_trade_refs",
    "bank_limits",
}
OPTIONAL_FULL_ROWS = {"credit_lines", "invoice_usage", "piece_trade_refs", "bank_limits"}  # trade finance


def _piece_ids(result: dict[str, Any]) -> list[str]:
    """Pieces an operation created, in a fixed order (ids are random, positions must not be)."""
    out = [result[k] for k in ("piece_id", "change_piece_id") if k in result]
    out += list(result.get("piece_ids", []))
    if "returned_piece_id" in result:
        out.append(result["returned_piece_id"])
    return [str(x) for x in out]


class Driver:
    """Runs operations against a real App and checks, for each one, that a refusal changed nothing and
    an acceptance appended exactly its receipts. Pieces and certificates are tracked in creation order,
    so that Hypothesis picks the same one by position on every replay although ids are random."""

    def __init__(self, app: App, clock: ManualClock):
        self.app = app
        self.clock = clock
        self.orgs = list(ORGS)
        self.pieces: list[str] = []
        self.certs: list[str] = []
        self.payables: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.tables: list[Any] = []

    # --- observation ---------------------------------------------------------------------------

    def log_size(self) -> int:
        with self.app.engine.connect() as conn:
            return int(conn.execute(select(log_head.c.tree_size)).scalar_one())

    def snapshot(self) -> dict[str, Any]:
        """Every row of the tables a ledger operation writes (the log, the read model, payables, custody,
        and the trade reservations its prechecks and projections keep), and the row count of every
        other table the database has."""
        if not self.tables:
            present = set(inspect(self.app.engine).get_table_names())
            self.tables = [t for t in metadata.sorted_tables if t.name in present]
            assert present >= FULL_ROWS - OPTIONAL_FULL_ROWS
        full = [t for t in self.tables if t.name in FULL_ROWS]
        counted = [t for t in self.tables if t.name not in FULL_ROWS]
        with self.app.engine.connect().execution_options(read_only=True) as conn:
            out = {t.name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr) for t in full}
            counts = select(*(select(func.count()).select_from(t).scalar_subquery().label(t.name) for t in counted))
            out["row counts"] = dict(conn.execute(counts).one()._mapping)
        return out

    def states(self) -> dict[str, Any]:
        with self.app.engine.connect() as conn:
            return {r.id: r for r in conn.execute(select(pieces))}

    def pick_piece(self, ref: int, live: bool, want: tuple[str, ...] = ("pending", "active")) -> Any | None:
        """The ref-th piece in creation order: among those in a state the operation wants (``live``),
        or among all of them, spent and closed ones included."""
        rows = self.states()
        candidates = [rows[p] for p in self.pieces if not live or rows[p].state in want]
        return candidates[ref % len(candidates)] if candidates else None

    def actor(self, who: str | None, natural: str) -> str:
        return natural if who is None else who

    # --- running -------------------------------------------------------------------------------

    def run(self, label: str, fn: Callable[[], Receipt | list[Receipt]]) -> list[Receipt] | None:
        before = self.snapshot()
        size = len(before["ledger_entries"])
        try:
            out = fn()
        except DomainError as exc:
            after = self.snapshot()
            changed = [k for k in before if before[k] != after[k]]
            assert not changed, f"{label} was refused ({exc.code}) but changed {changed}"
            self.outcomes[f"{label}: {exc.code}"] += 1
            event(f"{label} refused {exc.code}")
            return None
        receipts = out if isinstance(out, list) else [out]
        assert self.log_size() == size + len(receipts), f"{label} appended a wrong number of entries"
        self.check_frozen_stayed(label, before, self.snapshot())
        for i, receipt in enumerate(receipts):
            assert receipt.seq == size + i
            assert receipt.tree_size == receipt.seq + 1  # one submitter: one operation per group commit
            assert receipt.op_type == label or label == "expire_due"
            for pid in _piece_ids(receipt.result):
                if pid not in self.pieces:
                    self.pieces.append(pid)
            cert_id = receipt.result.get("certificate_id")
            if cert_id is not None and cert_id not in self.certs:
                self.certs.append(str(cert_id))
        self.outcomes[f"{label}: ok"] += len(receipts)
        if receipts:
            event(f"{label} ok")
        return receipts

    @staticmethod
    def check_frozen_stayed(label: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        """Frozen pieces do not move: only an unfreeze may change a frozen piece's row."""
        names = [c.name for c in pieces.c]
        old = {row[0]: dict(zip(names, row, strict=True)) for row in before["pieces"]}
        new = {row[0]: dict(zip(names, row, strict=True)) for row in after["pieces"]}
        for piece_id, row in old.items():
            if row["frozen"] and new[piece_id] != row:
                assert label == "unfreeze", f"{label} changed frozen piece {piece_id}: {row} -> {new[piece_id]}"
                assert {k for k in row if row[k] != new[piece_id][k]} == {"frozen"}

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, CHINA_TZ).date()

    # --- operations (None for `who` means the natural actor) -----------------------------------

    def create_payable(self, debtor: str, creditor: str, amount: int) -> None:
        before = self.snapshot()
        try:
            payable = self.app.payables.create_payable(debtor, creditor, amount, f"PO-{len(self.payables)}")
        except DomainError as exc:
            assert self.snapshot() == before, f"create_payable refused ({exc.code}) but changed something"
            self.outcomes[f"create_payable: {exc.code}"] += 1
            return
        after = self.snapshot()
        assert {k for k in before if before[k] != after[k]} == {"payables"}
        self.payables.append(payable.id)
        self.outcomes["create_payable: ok"] += 1

    def issue(self, who: str | None, payable_ref: int, face_spec: tuple[str, int], maturity_days: int) -> None:
        payable = self.app.payables.get_payable(self.payables[payable_ref % len(self.payables)])
        kind, value = face_spec
        face = payable.amount_minor * value // 100 if kind == "part" else value
        maturity = self.today() + dt.timedelta(days=maturity_days)
        actor = self.actor(who, payable.debtor)
        self.run("issue", lambda: self.app.ledger.issue(actor, payable.id, face, maturity))

    def accept(self, who: str | None, ref: int, live: bool) -> None:
        piece = self.pick_piece(ref, live, ("pending",))
        if piece is not None:
            self.run("accept", lambda: self.app.ledger.accept(self.actor(who, piece.holder), piece.id))

    def reject(self, who: str | None, ref: int, live: bool) -> None:
        piece = self.pick_piece(ref, live, ("pending",))
        if piece is not None:
            self.run("reject", lambda: self.app.ledger.reject(self.actor(who, piece.holder), piece.id))

    def transfer(self, who: str | None, ref: int, live: bool, to: str, amount_spec: tuple[str, int]) -> None:
        piece = self.pick_piece(ref, live, ("active",))
        if piece is None:
            return
        kind, value = amount_spec
        amount = piece.amount_minor * value // 100 if kind == "part" else value
        actor = self.actor(who, piece.holder)
        self.run("transfer", lambda: self.app.ledger.transfer(actor, piece.id, to, amount))

    def split(self, who: str | None, ref: int, live: bool, spec: tuple[str, Any]) -> None:
        piece = self.pick_piece(ref, live, ("active",))
        if piece is None:
            return
        kind, value = spec
        if kind == "weights":  # a partition of the piece, then nudged by delta on the last amount
            weights, delta = value
            total = sum(weights)
            amounts = [piece.amount_minor * w // total for w in weights]
            amounts[-1] += piece.amount_minor - sum(amounts) + delta
        else:
            amounts = list(value)
        actor = self.actor(who, piece.holder)
        self.run("split", lambda: self.app.ledger.split(actor, piece.id, amounts))

    def freeze(self, who: str | None, ref: int, live: bool, reason: str, frozen: bool) -> None:
        piece = self.pick_piece(ref, live)
        if piece is None:
            return
        actor = self.actor(who, "operator")
        if frozen:
            self.run("freeze", lambda: self.app.ledger.freeze(actor, piece.id, reason))
        else:
            self.run("unfreeze", lambda: self.app.ledger.unfreeze(actor, piece.id, reason))

    def revoke(self, who: str | None, ref: int, live: bool) -> None:
        certs = [self.app.queries.certificate(c) for c in self.certs]
        candidates = [c for c in certs if not live or c.state == CertificateState.PENDING]
        if not candidates:
            return
        cert = candidates[ref % len(candidates)]
        self.run("revoke", lambda: self.app.ledger.revoke(self.actor(who, cert.issuer), cert.id))

    def expire_due(self) -> None:
        def sweep() -> list[Receipt]:
            receipts = self.app.ledger.expire_due()
            # Same deadline, same position: order by where the expired piece sits in our list.
            return sorted(receipts, key=lambda r: self.pieces.index(str(r.result["piece_id"])))

        self.run("expire_due", sweep)

    def expire_one(self, who: str | None, ref: int, live: bool) -> None:
        """A hand-made expire operation, straight to the sequencer: the replayed rule must judge it
        (platform only, pending only, deadline passed), not the service."""
        piece = self.pick_piece(ref, live, ("pending",))
        if piece is None:
            return
        actor = self.actor(who, "platform")
        payload = {"v": 1, "type": "expire", "op_id": str(uuid.uuid4()), "actor": actor, "piece_id": piece.id}
        signer = self.app.log_signer if actor == "platform" else self.app.custody.signer(actor)
        signed = sign_operation(payload, [signer])
        self.run("expire", lambda: self.app.sequencer.submit(signed))
        if who is not None:
            self.run("expire", lambda: self.app.ledger.submit_signed(signed))  # the service refuses it too

    def rotate_key(self, who: str) -> None:
        self.run("rotate_key", lambda: self.app.ledger.rotate_key(who))

    def register(self, org_id: str, role: str, uscc: str) -> None:
        out = self.run(
            "register_party", lambda: self.app.ledger.register_organisation(org_id, org_id.title(), role, uscc)
        )
        if out is not None:
            self.orgs.append(org_id)

    # --- invariants ----------------------------------------------------------------------------

    def check_conservation(self) -> None:
        """Read through `app.queries`, as a user would see it."""
        payable_drawn: Counter[str] = Counter()
        for cert_id in self.certs:
            cert = self.app.queries.certificate(cert_id)
            tree = self.app.queries.tree(cert_id)
            live = sum(p.amount_minor for p in tree if p.live)
            expected = 0 if cert.state == CertificateState.VOID else cert.face_minor
            assert live == expected, f"certificate {cert_id} ({cert.state}): live pieces {live}, face {expected}"
            root = next(p for p in tree if p.id == cert.root_piece_id)
            if cert.state == CertificateState.PENDING:
                assert root.state == PieceState.PENDING
            if cert.state != CertificateState.VOID:
                payable_drawn[cert.payable_id] += cert.face_minor
        for payable_id in self.payables:
            payable = self.app.payables.get_payable(payable_id)
            assert payable.issued_minor == payable_drawn[payable_id], f"payable {payable_id} drawn wrongly"
            assert 0 <= payable.issued_minor <= payable.amount_minor
        with self.app.engine.connect() as conn:
            assert len(conn.execute(select(certificates.c.id)).scalars().all()) == len(self.certs)
            assert set(conn.execute(select(pieces.c.id)).scalars()) == set(self.pieces)


_TEMPLATE: list[Path] = []


def _template() -> Path:
    """A migrated database with the cast onboarded, made once per process: each example starts from a
    copy (a file copy instead of migrations and nine registrations keeps examples, and shrinking, fast)."""
    if not _TEMPLATE:
        directory = Path(tempfile.mkdtemp(prefix="creditflow-template-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        with build(make_settings(f"sqlite:///{directory / 'template.db'}"), clock=ManualClock(START_MS)) as app:
            onboard(app)
        assert not (directory / "template.db-wal").exists(), "the template was not checkpointed"
        _TEMPLATE.append(directory / "template.db")
    return _TEMPLATE[0]


def new_app(directory: str) -> tuple[App, ManualClock]:
    target = Path(directory) / "ledger.db"
    shutil.copyfile(_template(), target)
    clock = ManualClock(START_MS)
    app = build(make_settings(f"sqlite:///{target}"), clock=clock, run_migrations=False)
    return app, clock


# --- strategies ------------------------------------------------------------------------------------

# None = the natural actor (two times in three); otherwise anyone, often the wrong one.
who = st.one_of(st.none(), st.none(), st.sampled_from(ORGS))
holder_or_anyone = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(ORGS))  # for moves that build trees
refs = st.integers(min_value=0, max_value=10_000)
lives = st.sampled_from([True, True, True, False])  # mostly pick among live pieces
recipients = st.one_of(st.sampled_from(["steel", "ore", "other", "bank"]), st.sampled_from(ORGS))
# one_of picks its branches about equally often: valid shapes are listed more than once.
valid_part = st.tuples(st.just("part"), st.integers(min_value=1, max_value=100))  # % of the piece
amount_specs = st.one_of(
    valid_part,
    valid_part,
    st.tuples(st.just("part"), st.integers(min_value=0, max_value=130)),  # 0 and >100 are invalid
    st.tuples(st.just("raw"), st.sampled_from([-1, 0, 1, 10**17, 10**17 + 1, 2**63])),
)
_SPLITS = {
    "partition": st.tuples(st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=5), st.just(0)),
    "nudged": st.tuples(  # a partition one fen off, or of a single amount
        st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=6), st.sampled_from([0, -1, 1])
    ),
    "raw": st.lists(st.integers(min_value=-2, max_value=10**9), max_size=4),
    "fanout": st.lists(st.just(1), min_size=51, max_size=52),  # above the configured fan-out limit
}
split_specs = st.sampled_from(["partition"] * 6 + ["nudged"] * 2 + ["raw", "fanout"]).flatmap(
    lambda kind: st.tuples(st.just("weights" if kind in ("partition", "nudged") else "raw"), _SPLITS[kind])
)
clock_moves = st.sampled_from([HOUR_MS, DAY_MS, 3 * DAY_MS, 8 * DAY_MS, HOUR_MS, 60 * DAY_MS])


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.app, clock = new_app(self.tmp.name)
        self.driver = Driver(self.app, clock)

    @initialize()
    def two_certificates(self) -> None:
        """Start with something to act on: one accepted certificate and one awaiting acceptance."""
        self.driver.create_payable("xcmg", "factory", 10_000_000)
        self.driver.create_payable("rival", "steel", 5_000_000)
        self.driver.issue(None, 0, ("part", 100), 120)
        self.driver.issue(None, 1, ("part", 60), 90)
        self.driver.accept(None, 0, True)
        assert len(self.driver.certs) == 2

    def teardown(self) -> None:
        try:
            if hasattr(self, "app"):
                note(f"outcomes: {dict(sorted(self.driver.outcomes.items()))}")
                report = self.app.verify()
                assert report.entries == self.driver.log_size()
                assert report.pieces == len(self.driver.pieces)
                assert report.certificates == len(self.driver.certs)
        finally:
            if hasattr(self, "app"):
                self.app.close()
            self.tmp.cleanup()

    # Rules are picked uniformly, so the moves that build deep trees (transfer, split, accept) are
    # listed twice, and the rarer administrative ones share a rule.

    @rule(
        debtor=st.sampled_from(["xcmg", "xcmg", "rival", "factory"]),
        creditor=st.sampled_from(ORGS),
        amount=st.one_of(
            st.integers(min_value=1, max_value=10**9),
            st.integers(min_value=1, max_value=10**9),
            st.sampled_from([0, -5, 10**17 + 1]),
        ),
    )
    def create_payable(self, debtor: str, creditor: str, amount: int) -> None:
        self.driver.create_payable(debtor, creditor, amount)

    @precondition(lambda self: bool(self.driver.payables))
    @rule(
        who=who,
        ref=refs,
        face=st.one_of(
            st.tuples(st.just("part"), st.sampled_from([30, 50, 100])),
            st.tuples(st.just("part"), st.sampled_from([30, 50, 100, 101, 0])),
            st.tuples(st.just("raw"), st.sampled_from([-1, 0, 10**17 + 1])),
        ),
        maturity_days=st.sampled_from([90, 180, 30, 0, -1, 366]),
    )
    def issue(self, who: str | None, ref: int, face: tuple[str, int], maturity_days: int) -> None:
        self.driver.issue(who, ref, face, maturity_days)

    @rule(who=who, ref=refs, live=lives, reject=st.sampled_from([False, False, True]))
    def accept_or_reject(self, who: str | None, ref: int, live: bool, reject: bool) -> None:
        (self.driver.reject if reject else self.driver.accept)(who, ref, live)

    @rule(who=who, ref=refs, live=lives)
    def accept(self, who: str | None, ref: int, live: bool) -> None:
        self.driver.accept(who, ref, live)

    @rule(who=holder_or_anyone, ref=refs, live=lives, to=recipients, amount=amount_specs)
    def transfer(self, who: str | None, ref: int, live: bool, to: str, amount: tuple[str, int]) -> None:
        self.driver.transfer(who, ref, live, to, amount)

    @rule(who=holder_or_anyone, ref=refs, live=lives, to=recipients, amount=amount_specs)
    def transfer_more(self, who: str | None, ref: int, live: bool, to: str, amount: tuple[str, int]) -> None:
        self.driver.transfer(who, ref, live, to, amount)

    @rule(who=holder_or_anyone, ref=refs, live=lives, spec=split_specs)
    def split(self, who: str | None, ref: int, live: bool, spec: tuple[str, Any]) -> None:
        self.driver.split(who, ref, live, spec)

    @rule(who=holder_or_anyone, ref=refs, live=lives, spec=split_specs)
    def split_more(self, who: str | None, ref: int, live: bool, spec: tuple[str, Any]) -> None:
        self.driver.split(who, ref, live, spec)

    @rule(who=who, ref=refs, live=lives, reason=st.sampled_from(REASONS), frozen=st.booleans())
    def freeze_or_unfreeze(self, who: str | None, ref: int, live: bool, reason: str, frozen: bool) -> None:
        self.driver.freeze(who, ref, live, reason, frozen)

    @rule(who=who, ref=refs, live=lives)
    def revoke(self, who: str | None, ref: int, live: bool) -> None:
        self.driver.revoke(who, ref, live)

    @rule(
        ms=clock_moves,
        then=st.sampled_from(["nothing", "expire_due", "expire_one"]),
        who=who,
        ref=refs,
        live=lives,
    )
    def time_passes(self, ms: int, then: str, who: str | None, ref: int, live: bool) -> None:
        self.driver.clock.advance(ms)
        if then == "expire_due":
            self.driver.expire_due()
        elif then == "expire_one":
            self.driver.expire_one(who, ref, live)

    @rule(
        kind=st.sampled_from(["rotate", "register"]),
        org=st.sampled_from(["factory", "xcmg", "operator", "steel"]),
        org_id=st.sampled_from(NEW_ORGS),
        role=st.sampled_from(NEW_ROLES),
        uscc=st.sampled_from(NEW_USCC),
    )
    def admin(self, kind: str, org: str, org_id: str, role: str, uscc: str) -> None:
        if kind == "rotate":
            self.driver.rotate_key(org)
        else:
            self.driver.register(org_id, role, uscc)

    @invariant()
    def conservation(self) -> None:
        self.driver.check_conservation()


LedgerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase


# --- tampering -------------------------------------------------------------------------------------

TARGETS = [
    ("ledger_entries", "entry"),
    ("ledger_entries", "entry+leaf_hash"),  # a careful forger recomputes the leaf hash
    ("ledger_entries", "leaf_hash"),
    ("merkle_nodes", "hash"),
    ("tree_heads", "root_hash"),
    ("tree_heads", "signature"),
    ("pieces", "amount_minor"),
    ("pieces", "holder"),
    ("pieces", "state"),
    ("pieces", "frozen"),
    ("certificates", "face_minor"),
    ("certificates", "state"),
    ("parties", "name"),
    ("party_keys", "public_key"),
    ("piece_events", "event"),
]

op_steps = st.lists(
    st.one_of(
        st.tuples(st.just("transfer"), who, refs, lives, recipients, amount_specs),
        st.tuples(st.just("split"), who, refs, lives, split_specs),
        st.tuples(st.just("accept"), who, refs, lives),
        st.tuples(st.just("reject"), who, refs, lives),
        st.tuples(st.just("freeze"), who, refs, lives, st.sampled_from(REASONS), st.booleans()),
        st.tuples(st.just("revoke"), who, refs, lives),
        st.tuples(st.just("issue"), who, refs, st.just(("part", 50)), st.just(120)),
        st.tuples(st.just("advance"), clock_moves),
        st.tuples(st.just("expire_due")),
    ),
    max_size=12,
)


def _flip(value: bytes, position: int, mask: int) -> bytes:
    data = bytearray(value)
    data[position % len(data)] ^= mask
    return bytes(data)


def tamper(app: App, driver: Driver, target: tuple[str, str], data: st.DataObject) -> str:
    """Change one byte or one value of one row of ``target``; return the `where` verify must name."""
    table_name, column = target
    position = data.draw(st.integers(min_value=0, max_value=10_000), label="byte")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="mask")
    with app.engine.begin() as conn:
        if table_name == "ledger_entries":
            seqs = conn.execute(select(ledger_entries.c.seq).order_by(ledger_entries.c.seq)).scalars().all()
            seq = data.draw(st.sampled_from(seqs), label="seq")
            row = conn.execute(select(ledger_entries).where(ledger_entries.c.seq == seq)).one()
            if column == "leaf_hash":
                values = {"leaf_hash": _flip(row.leaf_hash, position, mask)}
            else:
                entry = _flip(row.entry, position, mask)
                values = {"entry": entry}
                if column == "entry+leaf_hash":
                    values["leaf_hash"] = merkle.leaf_hash(entry)
            conn.execute(update(ledger_entries).where(ledger_entries.c.seq == seq).values(**values))
            return f"log entry {seq}"
        if table_name == "merkle_nodes":
            keys = conn.execute(select(merkle_nodes.c.node_key).order_by(merkle_nodes.c.node_key)).scalars().all()
            key = data.draw(st.sampled_from(keys), label="node")
            old = conn.execute(select(merkle_nodes.c.hash).where(merkle_nodes.c.node_key == key)).scalar_one()
            conn.execute(
                update(merkle_nodes).where(merkle_nodes.c.node_key == key).values(hash=_flip(old, position, mask))
            )
            level, index = divmod(key, 2**48)
            return f"merkle_nodes row level={level} index={index}"
        if table_name == "tree_heads":
            sizes = conn.execute(select(tree_heads.c.tree_size).order_by(tree_heads.c.tree_size)).scalars().all()
            size = data.draw(st.sampled_from(sizes), label="tree_size")
            old = conn.execute(select(tree_heads.c[column]).where(tree_heads.c.tree_size == size)).scalar_one()
            conn.execute(
                update(tree_heads).where(tree_heads.c.tree_size == size).values({column: _flip(old, position, mask)})
            )
            return f"tree_heads row tree_size={size}"
        if table_name == "pieces":
            piece_id = data.draw(st.sampled_from(driver.pieces), label="piece")
            row = conn.execute(select(pieces).where(pieces.c.id == piece_id)).one()
            if column == "amount_minor":
                new: Any = row.amount_minor + data.draw(st.sampled_from([1, -1, 100, 10**6]), label="delta")
                new = new if new > 0 else row.amount_minor + 1
            elif column == "holder":
                new = data.draw(st.sampled_from([o for o in [*ORGS, "nobody"] if o != row.holder]), label="holder")
            elif column == "state":
                new = data.draw(st.sampled_from([s.value for s in PieceState if s.value != row.state]), label="state")
            else:
                new = not row.frozen
            conn.execute(update(pieces).where(pieces.c.id == piece_id).values({column: new}))
            return f"pieces row id={piece_id}"
        if table_name == "certificates":
            cert_id = data.draw(st.sampled_from(driver.certs), label="certificate")
            row = conn.execute(select(certificates).where(certificates.c.id == cert_id)).one()
            if column == "face_minor":
                new = row.face_minor + data.draw(st.sampled_from([1, 100, 10**6]), label="delta")
            else:
                new = data.draw(
                    st.sampled_from([s.value for s in CertificateState if s.value != row.state]), label="state"
                )
            conn.execute(update(certificates).where(certificates.c.id == cert_id).values({column: new}))
            return f"certificates row id={cert_id}"
        if table_name == "parties":
            org = data.draw(st.sampled_from(ORGS), label="org")
            name = conn.execute(select(parties.c.name).where(parties.c.org_id == org)).scalar_one()
            i = position % len(name)
            new_name = name[:i] + chr(ord(name[i]) ^ (mask & 0x1F or 1)) + name[i + 1 :]
            conn.execute(update(parties).where(parties.c.org_id == org).values(name=new_name))
            return f"parties row org_id={org}"
        if table_name == "party_keys":
            keys = conn.execute(
                select(party_keys.c.org_id, party_keys.c.key_id).order_by(party_keys.c.org_id, party_keys.c.key_id)
            ).all()
            org, key_id = data.draw(st.sampled_from([tuple(k) for k in keys]), label="key")
            old = conn.execute(
                select(party_keys.c.public_key).where(party_keys.c.org_id == org, party_keys.c.key_id == key_id)
            ).scalar_one()
            conn.execute(
                update(party_keys)
                .where(party_keys.c.org_id == org, party_keys.c.key_id == key_id)
                .values(public_key=_flip(old, position, mask))
            )
            return f"party_keys row (org_id, key_id)={(org, key_id)}"
        assert (table_name, column) == ("piece_events", "event")
        events = conn.execute(
            select(piece_events.c.piece_id, piece_events.c.seq, piece_events.c.event).order_by(
                piece_events.c.seq, piece_events.c.event
            )
        ).all()
        piece_id, seq, old_event = data.draw(st.sampled_from([tuple(e) for e in events]), label="event")
        new_event = data.draw(st.sampled_from([e for e in ("accepted", "split", "transferred") if e != old_event]))
        conn.execute(
            update(piece_events)
            .where(piece_events.c.piece_id == piece_id, piece_events.c.seq == seq)
            .values(event=new_event)
        )
        return f"piece_events row (piece_id, seq)={(piece_id, seq)}"


def _run_steps(driver: Driver, steps: list[tuple[Any, ...]]) -> None:
    for kind, *args in steps:
        if kind == "advance":
            driver.clock.advance(args[0])
        elif kind == "freeze":
            driver.freeze(*args)
        else:
            getattr(driver, kind)(*args)


@pytest.mark.parametrize("target", TARGETS, ids=["/".join(t) for t in TARGETS])
@settings(max_examples=6, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(steps=op_steps, data=st.data())
def test_any_single_change_is_detected(
    target: tuple[str, str], steps: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app, clock = new_app(tmp)
        driver = Driver(app, clock)
        try:
            # A known start, so every table has rows (piece events need an accepted piece), then chaos.
            driver.create_payable("xcmg", "factory", 10_000_000)
            driver.issue(None, 0, ("part", 100), 150)
            driver.accept(None, 0, True)
            driver.split(None, 0, True, ("weights", ([3, 1], 0)))
            driver.transfer(None, 1, True, "steel", ("part", 40))
            _run_steps(driver, steps)
            assert len(driver.certs) >= 1 and len(driver.pieces) >= 4
            app.verify()  # clean before the change
            app.sequencer.close()
            where = tamper(app, driver, target, data)
            note(f"tampered {target} at {where}")
            with pytest.raises(VerificationFailure) as failure:
                app.verify()
            assert failure.value.where == where, f"{failure.value} (expected it at {where})"
        finally:
            app.close()
