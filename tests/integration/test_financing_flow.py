"""Certificate financing (融资/贴现) end to end, with trade rules ON, on SQLite and PostgreSQL.

A holder asks; the bank's automatic policy decides; an approval is one ledger entry signed by both the
holder and the bank that moves the piece (or the financed part of it) to the bank, draws the bank's
limit and stores the agreement; a decline is recorded with every reason and moves nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Table, select

from conftest import START, USCC, approve_as, make_settings, onboard, table_rows
from creditflow.bootstrap import App, build
from creditflow.financing.policy import CreditView, Product
from creditflow.financing.service import FinancingOutcome, agreement_digest
from creditflow.financing.tables import bank_limits, clearing_runs, financing_agreements, financing_requests, payments
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import DomainError
from creditflow.ledger import store
from creditflow.ledger.entries import parse_entry
from creditflow.ledger.model.certificates import PieceState
from creditflow.ledger.signing import verify_signature
from creditflow.ledger.tables import certificates, ledger_entries, pieces
from creditflow.trade.service import TradeService
from creditflow.trade.tables import credit_lines, invoice_usage, payables, piece_trade_refs

MATURITY = dt.date(2026, 9, 1)
MATURITY_MS = int(dt.datetime(2026, 9, 1, 9, 0, tzinfo=START.tzinfo).timestamp() * 1000)
DAYS = (MATURITY - START.date()).days  # 183: the 365-day bucket
RATES = {"AAA": {30: 300, 90: 350, 180: 400, 365: 450}}
LIMIT = 500_000_000
WATCHED: tuple[Table, ...] = (
    ledger_entries,
    pieces,
    certificates,
    payables,
    credit_lines,
    invoice_usage,
    piece_trade_refs,
    bank_limits,
    financing_agreements,
    payments,
    clearing_runs,
)


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def fapp(store_url: str, clock: ManualClock) -> Iterator[App]:
    with build(make_settings(store_url, enforce_trade_rules=True), clock=clock) as app:
        onboard(app)
        app.people.add("xcmg", "alice", "Alice", ["maker", "approver"])
        app.people.add("xcmg", "bob", "Bob", ["maker", "approver"])
        app.confirmation.set_credit_line("xcmg", 10**12)
        yield app


@pytest.fixture
def product(fapp: App) -> Product:
    fapp.financing.set_rating("xcmg", "AAA")
    fapp.financing.set_limit("bank", "xcmg", LIMIT)
    return fapp.financing.create_product("bank", "凭证贴现", RATES, fee_bps=10, product_id="prd-disc")


def snapshot(app: App) -> dict[str, list[tuple[Any, ...]]]:
    return table_rows(app, WATCHED)


def request_rows(app: App) -> list[dict[str, Any]]:
    with app.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(financing_requests))]


def issue(app: App, face: int, holder: str = "factory") -> dict[str, Any]:
    payable = app.payables.create_payable("xcmg", holder, face, f"PO-{uuid.uuid4().hex[:8]}")
    approve_as(app, payable.id, "alice")
    approve_as(app, payable.id, "bob")
    receipt = app.ledger.issue("xcmg", payable.id, face, MATURITY)
    app.ledger.accept(holder, str(receipt.result["piece_id"]))
    return dict(receipt.result)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def import_invoice(app: App, number: str, buyer: str, seller: str, net_minor: int) -> str:
    tax = (net_minor * 13 + 50) // 100
    line = {
        "line_no": 1,
        "item": "钢材 steel plate",
        "quantity": "1",
        "unit_price": yuan(net_minor),
        "net": yuan(net_minor),
        "tax_rate": "13%",
        "tax": yuan(tax),
        "gross": yuan(net_minor + tax),
    }
    document = {
        "invoice_number": number,
        "invoice_date": "2026-03-01",
        "buyer_uscc": USCC[buyer],
        "seller_uscc": USCC[seller],
        "lines": [line],
    }
    data = json.dumps({"kind": "invoice", "documents": [document]}).encode()
    report = TradeService(app.engine, app.settings, app.clock).import_file(buyer, "invoice", data, "inv.json")
    assert report.outcome == "ok", report.errors()
    return report.imported[0].digest


def pay_steel(app: App, piece_id: str, amount: int) -> str:
    """factory pays steel ``amount`` out of ``piece_id`` against a fresh invoice; steel accepts."""
    ref = import_invoice(app, f"INV-{uuid.uuid4().hex[:8]}", "factory", "steel", amount)
    receipt = app.ledger.transfer("factory", piece_id, "steel", amount, trade_ref=ref)
    sent = str(receipt.result["piece_id"])
    app.ledger.accept("steel", sent)
    return sent


def limit_used(app: App, bank: str = "bank", core: str = "xcmg") -> int:
    with app.engine.connect() as conn:
        return int(
            conn.execute(
                select(bank_limits.c.used_minor).where(bank_limits.c.bank == bank, bank_limits.c.core == core)
            ).scalar_one()
        )


def declined(
    app: App, holder: str, piece_id: str, product_id: str, amount: int | None = None, *, bank: str = "bank"
) -> FinancingOutcome:
    """Ask, expect a decline that moves nothing and is recorded with its reasons."""
    before = snapshot(app)
    rows_before = len(request_rows(app))
    outcome = app.financing.request(holder, piece_id, bank, product_id, amount)
    assert not outcome.approved
    assert outcome.agreement is None and outcome.receipt is None
    assert snapshot(app) == before
    rows = request_rows(app)
    assert len(rows) == rows_before + 1
    [row] = [r for r in rows if r["id"] == outcome.request_id]
    assert (row["status"], row["holder"], row["bank"], row["piece_id"]) == ("declined", holder, bank, piece_id)
    assert json.loads(row["reasons_json"]) == [r.to_json() for r in outcome.reasons]
    return outcome


def codes(outcome: FinancingOutcome) -> list[str]:
    return [r.code for r in outcome.reasons]


@pytest.fixture
def loose(store_url: str, fapp: App, clock: ManualClock) -> Iterator[App]:
    """A second App on the same database with trade rules OFF: stands for entries written before the
    rules were switched on (a certificate on an unconfirmed payable, a transfer that cites no invoice)."""
    with build(make_settings(store_url, enforce_trade_rules=False), clock=clock) as app:
        yield app


# --- set-up ----------------------------------------------------------------------------------------


def test_products_ratings_and_limits(fapp: App) -> None:
    made = fapp.financing.create_product(
        "bank", "快贴", RATES, fee_bps=5, fee_fixed_minor=2_000, min_minor=100, max_minor=10**9, with_recourse=False
    )
    assert fapp.financing.product(made.id) == made
    assert [p.id for p in fapp.financing.products("bank")] == [made.id]

    def fails(code: str, action: Callable[[], object]) -> None:
        with pytest.raises(DomainError) as caught:
            action()
        assert caught.value.code == code

    fails("role_not_allowed", lambda: fapp.financing.create_product("factory", "x", RATES))
    fails("invalid_input", lambda: fapp.financing.create_product("bank", "x", {"C": {30: 300}}))
    fails("invalid_input", lambda: fapp.financing.create_product("bank", "x", {"AAA": {60: 300}}))
    fails("invalid_input", lambda: fapp.financing.create_product("bank", "x", {"AAA": {30: 5001}}))
    fails("invalid_input", lambda: fapp.financing.create_product("bank", "x", RATES, min_minor=10, max_minor=9))
    fails("product_not_found", lambda: fapp.financing.product("prd-none"))
    fails("invalid_input", lambda: fapp.financing.set_rating("xcmg", "D"))
    fails("invalid_input", lambda: fapp.financing.set_rating("factory", "AAA"))
    fails("invalid_input", lambda: fapp.financing.set_limit("bank", "xcmg", -1))
    assert [p.id for p in fapp.financing.products("bank")] == [made.id]


# --- approvals ---------------------------------------------------------------------------------------


def test_full_financing_moves_the_piece_to_the_bank_under_two_signatures(fapp: App, product: Product) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    outcome = fapp.financing.request("factory", root, "bank", product.id)
    assert outcome.approved, outcome.reasons
    assert outcome.reasons == ()
    quote = outcome.decision.quote
    assert quote is not None
    # 1,000,000.00 x 4.50 % x 183 / 360 = 22,875.00; fee 0.10 % = 1,000.00
    assert quote.to_json() == {
        "face_minor": 100_000_000,
        "annual_rate_bps": 450,
        "days": DAYS,
        "interest_minor": 2_287_500,
        "fees_minor": 100_000,
        "disbursement_minor": 97_612_500,
    }
    assert outcome.receipt is not None and outcome.agreement is not None
    assert "change_piece_id" not in outcome.receipt["result"]
    bank_piece = fapp.queries.piece(outcome.receipt["result"]["piece_id"])
    assert (bank_piece.holder, bank_piece.state, bank_piece.amount_minor) == ("bank", PieceState.ACTIVE, 100_000_000)
    assert (bank_piece.parent_id, bank_piece.sender, bank_piece.tier) == (root, "factory", 1)
    assert fapp.queries.piece(root).state == PieceState.SPENT
    assert fapp.queries.pieces_by_holder("factory").items == []
    assert limit_used(fapp) == 100_000_000

    [agreement] = fapp.financing.agreements(bank="bank")
    assert agreement["interest_minor"] + agreement["fees_minor"] + agreement["disbursement_minor"] == 100_000_000
    assert (agreement["interest_minor"], agreement["fees_minor"], agreement["disbursement_minor"]) == (
        2_287_500,
        100_000,
        97_612_500,
    )
    assert (agreement["piece_id"], agreement["bank_piece_id"], agreement["seller"]) == (root, bank_piece.id, "factory")
    assert (agreement["rate_bps"], agreement["days"], agreement["tier"]) == (450, DAYS, 1)
    assert agreement["financed_on"] == START.date()
    assert bool(agreement["with_recourse"]) is True
    terms = {k: v for k, v in outcome.agreement.items() if k not in ("agreement_digest", "bank_piece_id")}
    assert agreement_digest(terms) == agreement["agreement_digest"] == outcome.agreement["agreement_digest"]
    [row] = request_rows(fapp)
    assert (row["status"], json.loads(row["reasons_json"]), row["amount_minor"]) == ("approved", [], 100_000_000)

    # the log entry: one finance operation, signed by the holder AND the bank, each with its registered key
    seq = outcome.receipt["seq"]
    with fapp.engine.connect() as conn:
        data = conn.execute(select(ledger_entries.c.entry).where(ledger_entries.c.seq == seq)).scalar_one()
        keys = {k.org_id: k for k in store.load_keys(conn, ["factory", "bank"])}
    entry = parse_entry(bytes(data))
    assert entry.signed.payload["type"] == "finance"
    assert entry.signed.payload["agreement_digest"] == agreement["agreement_digest"]
    assert entry.signed.payload["amount_minor"] == 100_000_000
    assert [s.signer for s in entry.signed.sigs] == ["factory", "bank"]
    for sig in entry.signed.sigs:
        assert sig.key_id == keys[sig.signer].key_id
        assert verify_signature(keys[sig.signer].public_key, entry.signed.message, sig.sig)
    assert fapp.verify().entries == seq + 1


def test_partial_financing_leaves_the_change_with_the_seller(fapp: App, product: Product) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    steel_piece = pay_steel(fapp, root, 40_000_000)  # tier 2, backed by an invoice
    outcome = fapp.financing.request("steel", steel_piece, "bank", product.id, 25_000_000)
    assert outcome.approved, outcome.reasons
    assert outcome.receipt is not None
    result = outcome.receipt["result"]
    bank_piece = fapp.queries.piece(result["piece_id"])
    change = fapp.queries.piece(result["change_piece_id"])
    assert (bank_piece.holder, bank_piece.state, bank_piece.amount_minor, bank_piece.tier) == (
        "bank",
        PieceState.ACTIVE,
        25_000_000,
        2,
    )
    assert (change.holder, change.state, change.amount_minor, change.tier) == (
        "steel",
        PieceState.ACTIVE,
        15_000_000,
        2,
    )
    assert bank_piece.parent_id == change.parent_id == steel_piece
    # 250,000.00 x 4.50 % x 183 / 360 = 5,718.75; fee 250.00
    [agreement] = fapp.financing.agreements(seller="steel")
    assert (
        agreement["face_minor"],
        agreement["interest_minor"],
        agreement["fees_minor"],
        agreement["disbursement_minor"],
    ) == (25_000_000, 571_875, 25_000, 24_403_125)
    assert agreement["tier"] == 2
    assert limit_used(fapp) == 25_000_000
    # the seller may finance the change later; the limit adds up
    again = fapp.financing.request("steel", change.id, "bank", product.id)
    assert again.approved
    assert limit_used(fapp) == 40_000_000
    assert sum(p.amount_minor for p in fapp.queries.pieces_by_holder("bank").items) == 40_000_000
    fapp.verify()


def test_days_to_maturity_are_counted_in_china_time(fapp: App, product: Product, clock: ManualClock) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    # 00:30 on 3 March in Beijing is still 2 March in UTC: 182 days to 1 September, not 183
    clock.set(int(dt.datetime(2026, 3, 3, 0, 30, tzinfo=START.tzinfo).timestamp() * 1000))
    outcome = fapp.financing.request("factory", root, "bank", product.id)
    assert outcome.approved
    assert outcome.decision.quote is not None
    assert (outcome.decision.quote.days, outcome.decision.quote.interest_minor) == (182, 2_275_000)
    [agreement] = fapp.financing.agreements()
    assert (agreement["days"], agreement["financed_on"]) == (182, dt.date(2026, 3, 3))


def test_the_bank_limit_is_drawn_then_released_at_clearing(fapp: App, product: Product, clock: ManualClock) -> None:
    cert = issue(fapp, 100_000_000)
    outcome = fapp.financing.request("factory", cert["piece_id"], "bank", product.id, 30_000_000)
    assert outcome.approved
    assert limit_used(fapp) == 30_000_000
    for org in ("xcmg", "factory", "bank"):
        fapp.clearing.set_account(org, org, f"6222{len(org)}000", "ICBKCNBJ")
    fapp.clearing.record_payment("xcmg", cert["certificate_id"], 100_000_000, "maturity")
    clock.set(MATURITY_MS)
    fapp.clearing.clear(cert["certificate_id"])
    assert limit_used(fapp) == 0
    fapp.verify()


# --- declines ----------------------------------------------------------------------------------------


def test_blacklisted_holder_is_declined(fapp: App, product: Product) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    fapp.financing.blacklist("bank", "factory", "fraud investigation")
    outcome = declined(fapp, "factory", root, product.id)
    assert codes(outcome) == ["holder_blacklisted"]


def test_over_the_bank_limit_is_declined(fapp: App, product: Product) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    fapp.financing.set_limit("bank", "xcmg", 99_999_999)
    outcome = declined(fapp, "factory", root, product.id)
    assert codes(outcome) == ["bank_limit_exceeded"]
    assert "99999999 fen free" in outcome.reasons[0].message
    # an exact fit is fine
    assert fapp.financing.request("factory", root, "bank", product.id, 99_999_999).approved
    with pytest.raises(DomainError) as caught:
        fapp.financing.set_limit("bank", "xcmg", 1)
    assert caught.value.code == "limit_below_use"


def test_a_frozen_piece_is_declined(fapp: App, product: Product) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    fapp.ledger.freeze("operator", root, "court order")
    outcome = declined(fapp, "factory", root, product.id)
    assert codes(outcome) == ["piece_not_financeable"]
    assert outcome.reasons[0].message == "the piece is frozen"


def test_a_matured_piece_is_declined(fapp: App, product: Product, clock: ManualClock) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    clock.set(MATURITY_MS)
    outcome = declined(fapp, "factory", root, product.id)
    assert codes(outcome) == ["piece_not_financeable"]
    assert "matured" in outcome.reasons[0].message


def test_a_core_enterprise_without_rating_is_declined(fapp: App, product: Product) -> None:
    fapp.financing.set_limit("bank", "rival", LIMIT)
    fapp.people.add("rival", "rita", "Rita", ["maker", "approver"])
    fapp.people.add("rival", "ray", "Ray", ["maker", "approver"])
    fapp.confirmation.set_credit_line("rival", 10**10)
    payable = fapp.payables.create_payable("rival", "factory", 10_000_000, "PO-R1")
    approve_as(fapp, payable.id, "rita")
    approve_as(fapp, payable.id, "ray")
    piece = str(fapp.ledger.issue("rival", payable.id, 10_000_000, MATURITY).result["piece_id"])
    fapp.ledger.accept("factory", piece)
    assert codes(declined(fapp, "factory", piece, product.id)) == ["rating_not_covered"]


def test_a_certificate_on_an_unconfirmed_payable_is_declined(fapp: App, loose: App, product: Product) -> None:
    payable = loose.payables.create_payable("xcmg", "factory", 10_000_000, "PO-old")
    piece = str(loose.ledger.issue("xcmg", payable.id, 10_000_000, MATURITY).result["piece_id"])
    loose.ledger.accept("factory", piece)
    outcome = declined(fapp, "factory", piece, product.id)
    assert codes(outcome) == ["trade_evidence_incomplete"]
    assert outcome.reasons[0].message == f"payable {payable.id} behind the certificate is not confirmed"


def test_a_transfer_in_the_chain_without_an_invoice_is_declined(fapp: App, loose: App, product: Product) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    receipt = loose.ledger.transfer("factory", root, "steel", 30_000_000)  # cites nothing
    uncited = str(receipt.result["piece_id"])
    fapp.ledger.accept("steel", uncited)
    # further down, a proper payment to ore: its own step is cited, the one above it is not
    to_ore = fapp.ledger.transfer(
        "steel", uncited, "ore", 5_000_000, trade_ref=import_invoice(fapp, "INV-SO-1", "steel", "ore", 5_000_000)
    )
    ore_piece = str(to_ore.result["piece_id"])
    fapp.ledger.accept("ore", ore_piece)
    steel_change = str(to_ore.result["change_piece_id"])
    for holder, piece in (("steel", steel_change), ("ore", ore_piece)):
        outcome = declined(fapp, holder, piece, product.id, 1_000_000)
        assert codes(outcome) == ["trade_evidence_incomplete"]
        assert outcome.reasons[0].message.startswith("the transfer to steel at log entry ")
        assert outcome.reasons[0].message.endswith(" cites no invoice")
    # the change factory kept never moved between parties: nothing to cite
    change = str(receipt.result["change_piece_id"])
    assert fapp.financing.request("factory", change, "bank", product.id).approved


def test_every_reason_is_reported_at_once(fapp: App, product: Product) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    fapp.financing.blacklist("bank", "factory", "fraud")
    fapp.financing.set_limit("bank", "xcmg", 1_000)
    fapp.ledger.freeze("operator", root, "court order")
    outcome = declined(fapp, "factory", root, product.id, 100_000_001)
    assert codes(outcome) == ["piece_not_financeable", "invalid_amount", "bank_limit_exceeded", "holder_blacklisted"]


def test_only_the_holder_may_ask(fapp: App, product: Product) -> None:
    root = issue(fapp, 100_000_000)["piece_id"]
    before = snapshot(fapp)
    for asker in ("steel", "bank", "xcmg"):
        with pytest.raises(DomainError) as caught:
            fapp.financing.request(asker, root, "bank", product.id)
        assert caught.value.code == "not_holder"
    assert snapshot(fapp) == before
    assert request_rows(fapp) == []


def test_a_declining_credit_model_declines(store_url: str, clock: ManualClock) -> None:
    calls: list[tuple[str, int]] = []

    def hook(holder: str, amount: int) -> CreditView:
        calls.append((holder, amount))
        return CreditView(approve=False, score=420.0, pd=0.31, reasons=("pd too high",))

    with build(make_settings(store_url, enforce_trade_rules=True), clock=clock) as app:
        app.financing.credit_hook = hook
        onboard(app)
        app.people.add("xcmg", "alice", "Alice", ["maker", "approver"])
        app.people.add("xcmg", "bob", "Bob", ["maker", "approver"])
        app.confirmation.set_credit_line("xcmg", 10**12)
        app.financing.set_rating("xcmg", "AAA")
        app.financing.set_limit("bank", "xcmg", LIMIT)
        prd = app.financing.create_product("bank", "disc", RATES)
        root = issue(app, 100_000_000)["piece_id"]
        outcome = declined(app, "factory", root, prd.id, 60_000_000)
        assert [r.to_json() for r in outcome.reasons] == [{"code": "credit_score_declined", "message": "pd too high"}]
        assert calls == [("factory", 60_000_000)]
        app.financing.credit_hook = lambda _holder, _amount: CreditView(approve=True, score=780.0)
        assert app.financing.request("factory", root, "bank", prd.id, 60_000_000).approved


# --- concurrency -----------------------------------------------------------------------------------------


def race(n: int, attempt: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = attempt(i)
        except Exception as exc:  # reported by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_ten_concurrent_financings_against_a_limit_for_three(fapp: App, product: Product) -> None:
    fapp.financing.set_limit("bank", "xcmg", 3_500_000)
    root = issue(fapp, 10_000_000)["piece_id"]
    piece_ids = [str(p) for p in fapp.ledger.split("factory", root, [1_000_000] * 10).result["piece_ids"]]
    results = race(10, lambda i: fapp.financing.request("factory", piece_ids[i], "bank", product.id))
    outcomes = [r for r in results if isinstance(r, FinancingOutcome)]
    assert len(outcomes) == 10, results
    approved = [o for o in outcomes if o.approved]
    assert len(approved) == 3
    assert Counter(tuple(codes(o)) for o in outcomes if not o.approved) == {("bank_limit_exceeded",): 7}
    agreements = fapp.financing.agreements(bank="bank")
    assert sorted(a["id"] for a in agreements) == sorted(o.request_id for o in approved)
    assert limit_used(fapp) == sum(a["face_minor"] for a in agreements) == 3_000_000
    assert sum(p.amount_minor for p in fapp.queries.pieces_by_holder("bank").items) == 3_000_000
    statuses = Counter(r["status"] for r in request_rows(fapp))
    assert statuses == {"approved": 3, "declined": 7}
    fapp.verify()


def test_ten_concurrent_transfers_citing_one_invoice(fapp: App) -> None:
    root = issue(fapp, 10_000_000)["piece_id"]
    piece_ids = [str(p) for p in fapp.ledger.split("factory", root, [1_000_000] * 10).result["piece_ids"]]
    ref = import_invoice(fapp, "INV-SHARED", "factory", "steel", 3_000_000)  # gross 3,390,000: room for three

    def attempt(i: int) -> object:
        try:
            return fapp.ledger.transfer("factory", piece_ids[i], "steel", 1_000_000, trade_ref=ref)
        except DomainError as exc:
            return exc.code

    results = race(10, attempt)
    assert Counter(r if isinstance(r, str) else "ok" for r in results) == {"ok": 3, "invoice_exhausted": 7}, results
    with fapp.engine.connect() as conn:
        gross, used = conn.execute(
            select(invoice_usage.c.gross_minor, invoice_usage.c.used_minor).where(invoice_usage.c.trade_ref == ref)
        ).one()
        cited = list(conn.execute(select(piece_trade_refs.c.amount_minor).where(piece_trade_refs.c.trade_ref == ref)))
    assert (gross, used) == (3_390_000, 3_000_000)
    assert sum(r.amount_minor for r in cited) == used
    assert sum(p.amount_minor for p in fapp.queries.pieces_by_holder("steel").items) == 3_000_000
    fapp.verify()
