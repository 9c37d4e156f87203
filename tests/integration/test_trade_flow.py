"""The trade rules with `enforce_trade_rules` ON (the production default), on SQLite and PostgreSQL.

* an issue rests on a payable confirmed by two different users of the core enterprise, within its
  credit line; the line is given back when a certificate goes void or is cleared;
* a transfer cites an imported invoice from the recipient (seller) to the sender (buyer), and the value
  moved against one invoice never exceeds its gross amount; a rejected or expired transfer gives it back;
* every refusal changes nothing: not the log, not the pieces, not the usage tables.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Table, event, select

from conftest import START, USCC, make_settings, onboard, person, table_rows
from creditflow.bootstrap import App, build
from creditflow.financing.tables import bank_limits, clearing_runs, financing_agreements, payments
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import DomainError
from creditflow.ledger.model.certificates import CertificateState, PieceState
from creditflow.ledger.tables import certificates, ledger_entries, pieces
from creditflow.trade.service import TradeService
from creditflow.trade.tables import credit_lines, invoice_usage, payable_approvals, payables, piece_trade_refs

MATURITY = dt.date(2026, 9, 1)
MATURITY_MS = int(dt.datetime(2026, 9, 1, 9, 0, tzinfo=START.tzinfo).timestamp() * 1000)
DAY_MS = 86_400_000
WATCHED: tuple[Table, ...] = (
    ledger_entries,
    pieces,
    certificates,
    payables,
    payable_approvals,
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
def tapp(store_url: str, clock: ManualClock) -> Iterator[App]:
    with build(make_settings(store_url, enforce_trade_rules=True), clock=clock) as app:
        onboard(app)
        PEOPLE.clear()
        for org, user in [("xcmg", "alice"), ("xcmg", "bob"), ("xcmg", "carol"), ("factory", "frank")]:
            PEOPLE[user] = person(app, org, user, ("maker", "approver"))
        PEOPLE["rita"] = person(app, "rival", "rita", ("maker", "approver"))
        PEOPLE["vera"] = person(app, "xcmg", "vera", ("viewer",))
        yield app


PEOPLE: dict[str, Any] = {}  # user id -> the Principal of their personal token (the fixture fills it)


def approve(app: App, payable_id: str, user: str) -> dict[str, Any]:
    """``user`` approves in person (their personal token)."""
    return app.confirmation.approve(payable_id, PEOPLE[user])


def snapshot(app: App) -> dict[str, list[tuple[Any, ...]]]:
    return table_rows(app, WATCHED)


def refused(app: App, code: str, action: Callable[[], object]) -> DomainError:
    """``action`` must fail with ``code`` and leave every watched table exactly as it was."""
    before = snapshot(app)
    with pytest.raises(DomainError) as caught:
        action()
    assert caught.value.code == code, caught.value
    assert snapshot(app) == before
    return caught.value


def confirmed_payable(app: App, face: int, holder: str = "factory") -> str:
    payable = app.payables.create_payable("xcmg", holder, face, f"PO-{uuid.uuid4().hex[:8]}")
    approve(app, payable.id, "alice")
    approve(app, payable.id, "bob")
    return payable.id


def issue(app: App, face: int, holder: str = "factory", *, accept: bool = True) -> dict[str, Any]:
    receipt = app.ledger.issue("xcmg", confirmed_payable(app, face, holder), face, MATURITY)
    if accept:
        app.ledger.accept(holder, str(receipt.result["piece_id"]))
    return dict(receipt.result)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def invoice_json(number: str, buyer: str, seller: str, net_minor: int) -> bytes:
    """One VAT invoice at 13 %, one line: the seller sold goods to the buyer for ``net_minor`` fen."""
    tax = (net_minor * 13 + 50) // 100
    document = {
        "invoice_number": number,
        "invoice_date": "2026-03-01",
        "buyer_uscc": USCC[buyer],
        "seller_uscc": USCC[seller],
        "currency": "CNY",
        "lines": [
            {
                "line_no": 1,
                "item": "精密轴承 bearing",
                "quantity": "1",
                "unit_price": yuan(net_minor),
                "net": yuan(net_minor),
                "tax_rate": "13%",
                "tax": yuan(tax),
                "gross": yuan(net_minor + tax),
            }
        ],
    }
    return json.dumps({"kind": "invoice", "documents": [document]}, ensure_ascii=False).encode()


def import_invoice(app: App, number: str, buyer: str, seller: str, net_minor: int) -> tuple[str, int]:
    """Import as the buyer; return (digest, gross in fen)."""
    trade = TradeService(app.engine, app.settings, app.clock)
    report = trade.import_file(buyer, "invoice", invoice_json(number, buyer, seller, net_minor), f"{number}.json")
    assert report.outcome == "ok", report.errors()
    [stored] = report.imported
    gross = trade.get_document(stored.document_id).document.gross_minor
    assert gross is not None
    return stored.digest, gross


def usage(app: App, trade_ref: str) -> tuple[int, int] | None:
    with app.engine.connect() as conn:
        row = conn.execute(
            select(invoice_usage.c.gross_minor, invoice_usage.c.used_minor).where(
                invoice_usage.c.trade_ref == trade_ref
            )
        ).first()
    return None if row is None else (int(row.gross_minor), int(row.used_minor))


def line(app: App) -> tuple[int, int]:
    state = app.confirmation.credit_line("xcmg")
    return state["limit_minor"], state["used_minor"]


# --- issue and confirmation ------------------------------------------------------------------------------


def test_issue_on_a_draft_or_matched_payable_is_refused(tapp: App) -> None:
    tapp.confirmation.set_credit_line("xcmg", 1_000_000_000)
    draft = tapp.payables.create_payable("xcmg", "factory", 100_000_000, "PO-draft")
    refused(tapp, "payable_not_confirmed", lambda: tapp.ledger.issue("xcmg", draft.id, 100_000_000, MATURITY))
    # one approval is not enough
    assert approve(tapp, draft.id, "alice")["status"] == "draft"
    refused(tapp, "payable_not_confirmed", lambda: tapp.ledger.issue("xcmg", draft.id, 100_000_000, MATURITY))
    # a three-way match makes a payable eligible, not confirmed
    matched = tapp.payables.create_payable("xcmg", "factory", 100_000_000, "invoice INV-9", status="matched")
    refused(tapp, "payable_not_confirmed", lambda: tapp.ledger.issue("xcmg", matched.id, 100_000_000, MATURITY))
    assert line(tapp) == (1_000_000_000, 0)
    assert tapp.verify().entries == 9  # the 9 organisations registered, nothing else


def test_maker_checker_needs_two_different_approvers_of_the_debtor(tapp: App) -> None:
    tapp.confirmation.set_credit_line("xcmg", 1_000_000_000)
    payable = tapp.payables.create_payable("xcmg", "factory", 50_000_000, "PO-mc", created_by="carol")
    assert tapp.payables.get_payable(payable.id).created_by == "carol"
    # a person of the supplier, or of another core enterprise, cannot confirm xcmg's debt
    refused(tapp, "not_debtor_user", lambda: approve(tapp, payable.id, "frank"))
    refused(tapp, "not_debtor_user", lambda: approve(tapp, payable.id, "rita"))
    # the organisation-wide key is nobody: it prepares, it never approves
    key = tapp.access.authenticate(tapp.access.create_key("xcmg", "erp"))
    refused(tapp, "person_required", lambda: tapp.confirmation.approve(payable.id, key))
    # a viewer only looks; the maker never approves their own payable
    refused(tapp, "user_role_not_allowed", lambda: approve(tapp, payable.id, "vera"))
    refused(tapp, "maker_cannot_approve", lambda: approve(tapp, payable.id, "carol"))
    first = approve(tapp, payable.id, "alice")
    assert first == {
        "payable_id": payable.id,
        "approvals": 1,
        "required": 2,
        "status": "draft",
        "approved_by": "alice",
        "auth": "personal_token",
    }
    refused(tapp, "same_approver", lambda: approve(tapp, payable.id, "alice"))
    assert approve(tapp, payable.id, "bob")["status"] == "confirmed"
    assert tapp.payables.get_payable(payable.id).status == "confirmed"
    refused(tapp, "already_confirmed", lambda: approve(tapp, payable.id, "carol"))
    # who, when, how: each approval names the personal token it came with
    assert [(a["user_id"], a["auth"], a["credential"]) for a in tapp.confirmation.approvals(payable.id)] == [
        ("alice", "personal_token", f"key:{PEOPLE['alice'].key_id}"),
        ("bob", "personal_token", f"key:{PEOPLE['bob'].key_id}"),
    ]
    receipt = tapp.ledger.issue("xcmg", payable.id, 50_000_000, MATURITY)
    assert tapp.queries.certificate(str(receipt.result["certificate_id"])).face_minor == 50_000_000
    assert line(tapp) == (1_000_000_000, 50_000_000)


def test_an_approver_whose_role_was_taken_away_no_longer_approves(tapp: App) -> None:
    """The approval reads the approver's roles as stored now, not as a principal remembered them."""
    payable = tapp.payables.create_payable("xcmg", "factory", 50_000_000, "PO-demoted")
    admin = person(tapp, "xcmg", "adam", ("admin",))
    tapp.people.set_roles(admin, "alice", ["maker"])
    refused(tapp, "user_role_not_allowed", lambda: approve(tapp, payable.id, "alice"))


def test_issue_without_a_credit_line_is_refused(tapp: App) -> None:
    payable_id = confirmed_payable(tapp, 10_000_000)
    refused(tapp, "no_credit_line", lambda: tapp.ledger.issue("xcmg", payable_id, 10_000_000, MATURITY))
    refused(tapp, "no_credit_line", lambda: tapp.confirmation.credit_line("xcmg"))


def test_issue_over_the_credit_line_is_refused_and_an_exact_fit_is_not(tapp: App) -> None:
    tapp.confirmation.set_credit_line("xcmg", 100_000_000)
    issue(tapp, 60_000_000)
    assert line(tapp) == (100_000_000, 60_000_000)
    over = confirmed_payable(tapp, 40_000_001)
    error = refused(tapp, "credit_line_exceeded", lambda: tapp.ledger.issue("xcmg", over, 40_000_001, MATURITY))
    assert "40000000 fen free" in error.message
    # a pending (not yet accepted) certificate uses the line too
    issue(tapp, 40_000_000, accept=False)
    assert line(tapp) == (100_000_000, 100_000_000)
    one_fen = confirmed_payable(tapp, 1)
    refused(tapp, "credit_line_exceeded", lambda: tapp.ledger.issue("xcmg", one_fen, 1, MATURITY))
    # the line cannot be cut below what is outstanding
    refused(tapp, "limit_below_use", lambda: tapp.confirmation.set_credit_line("xcmg", 99_999_999))
    assert tapp.verify().certificates == 2


def test_the_line_is_released_on_revoke_reject_expiry_and_clearing(tapp: App, clock: ManualClock) -> None:
    tapp.confirmation.set_credit_line("xcmg", 100_000_000)

    revoked = issue(tapp, 100_000_000, accept=False)
    assert line(tapp) == (100_000_000, 100_000_000)
    tapp.ledger.revoke("xcmg", revoked["certificate_id"])
    assert tapp.queries.certificate(revoked["certificate_id"]).state == CertificateState.VOID
    assert line(tapp) == (100_000_000, 0)

    rejected = issue(tapp, 100_000_000, accept=False)
    tapp.ledger.reject("factory", rejected["piece_id"])
    assert tapp.queries.certificate(rejected["certificate_id"]).state == CertificateState.VOID
    assert line(tapp) == (100_000_000, 0)

    expired = issue(tapp, 100_000_000, accept=False)
    clock.advance(tapp.settings.accept_deadline_days * DAY_MS)
    assert len(tapp.ledger.expire_due()) == 1
    assert tapp.queries.certificate(expired["certificate_id"]).state == CertificateState.VOID
    assert line(tapp) == (100_000_000, 0)

    cleared = issue(tapp, 100_000_000)
    assert line(tapp) == (100_000_000, 100_000_000)
    for org in ("xcmg", "factory"):
        tapp.clearing.set_account(org, f"{org} 结算户", f"62220{len(org)}0001", "ICBKCNBJ")
    tapp.clearing.record_payment("xcmg", cleared["certificate_id"], 100_000_000, "maturity payment")
    clock.set(MATURITY_MS)
    tapp.clearing.clear(cleared["certificate_id"])
    assert tapp.queries.certificate(cleared["certificate_id"]).state == CertificateState.CLEARED
    assert line(tapp) == (100_000_000, 0)
    tapp.verify()


# --- transfers cite invoices ----------------------------------------------------------------------------


def test_a_transfer_without_trade_ref_is_refused(tapp: App) -> None:
    tapp.confirmation.set_credit_line("xcmg", 1_000_000_000)
    root = issue(tapp, 100_000_000)["piece_id"]
    refused(tapp, "trade_ref_required", lambda: tapp.ledger.transfer("factory", root, "steel", 10_000_000))
    assert tapp.queries.piece(root).state == PieceState.ACTIVE


def test_a_transfer_citing_an_invoice_between_other_parties_is_refused(tapp: App) -> None:
    tapp.confirmation.set_credit_line("xcmg", 1_000_000_000)
    root = issue(tapp, 100_000_000)["piece_id"]
    factory_buys_from_steel, _ = import_invoice(tapp, "INV-FS-1", "factory", "steel", 20_000_000)
    steel_buys_from_factory, _ = import_invoice(tapp, "INV-SF-1", "steel", "factory", 20_000_000)

    def pay(to: str, ref: str) -> Callable[[], object]:
        return lambda: tapp.ledger.transfer("factory", root, to, 10_000_000, trade_ref=ref)

    # the invoice is steel's, not ore's
    refused(tapp, "trade_invoice_not_found", pay("ore", factory_buys_from_steel))
    # factory is the seller on this one: a buyer pays, a seller does not
    refused(tapp, "trade_invoice_not_found", pay("steel", steel_buys_from_factory))
    refused(tapp, "trade_invoice_not_found", pay("steel", "ab" * 32))
    assert usage(tapp, factory_buys_from_steel) is None

    receipt = tapp.ledger.transfer("factory", root, "steel", 10_000_000, trade_ref=factory_buys_from_steel)
    sent = str(receipt.result["piece_id"])
    with tapp.engine.connect() as conn:
        refs = [tuple(r) for r in conn.execute(select(piece_trade_refs))]
    assert refs == [(sent, factory_buys_from_steel, 10_000_000)]
    assert usage(tapp, factory_buys_from_steel) == (22_600_000, 10_000_000)
    tapp.verify()


def test_one_invoice_backs_at_most_its_gross_and_returns_value_on_reject_and_expiry(
    tapp: App, clock: ManualClock
) -> None:
    tapp.confirmation.set_credit_line("xcmg", 1_000_000_000)
    first = issue(tapp, 100_000_000)["piece_id"]
    second = issue(tapp, 50_000_000)["piece_id"]
    ref, gross = import_invoice(tapp, "INV-FS-7", "factory", "steel", 3_000_000)
    assert gross == 3_390_000  # 30,000.00 + 13 % VAT

    a = tapp.ledger.transfer("factory", first, "steel", 2_000_000, trade_ref=ref)
    change = str(a.result["change_piece_id"])
    assert usage(tapp, ref) == (gross, 2_000_000)
    # one fen more than what is left, from the same certificate or another one
    refused(
        tapp, "invoice_exhausted", lambda: tapp.ledger.transfer("factory", change, "steel", 1_390_001, trade_ref=ref)
    )
    refused(
        tapp, "invoice_exhausted", lambda: tapp.ledger.transfer("factory", second, "steel", 1_390_001, trade_ref=ref)
    )
    b = tapp.ledger.transfer("factory", second, "steel", 1_390_000, trade_ref=ref)
    assert usage(tapp, ref) == (gross, gross)
    second_change = str(b.result["change_piece_id"])
    refused(tapp, "invoice_exhausted", lambda: tapp.ledger.transfer("factory", change, "steel", 1, trade_ref=ref))

    # steel refuses the second payment: the value goes back to factory and to the invoice
    rejected = tapp.ledger.reject("steel", str(b.result["piece_id"]))
    assert usage(tapp, ref) == (gross, 2_000_000)
    returned = str(rejected.result["returned_piece_id"])
    assert tapp.queries.piece(returned).holder == "factory"

    # the freed value can be cited again; if that payment is never accepted it comes back once more
    c = tapp.ledger.transfer("factory", returned, "steel", 1_390_000, trade_ref=ref)
    assert usage(tapp, ref) == (gross, gross)
    tapp.ledger.accept("steel", str(a.result["piece_id"]))
    clock.advance(tapp.settings.accept_deadline_days * DAY_MS)
    [expired] = tapp.ledger.expire_due()
    assert expired.result["piece_id"] == c.result["piece_id"]
    assert usage(tapp, ref) == (gross, 2_000_000)
    # an accepted payment keeps its share of the invoice
    assert tapp.queries.piece(str(a.result["piece_id"])).state == PieceState.ACTIVE
    assert tapp.queries.piece(second_change).amount_minor == 50_000_000 - 1_390_000
    tapp.verify()


def test_a_transfer_refused_by_the_ledger_rules_leaves_the_invoice_untouched(tapp: App) -> None:
    tapp.confirmation.set_credit_line("xcmg", 1_000_000_000)
    root = issue(tapp, 1_000_000)["piece_id"]
    ref, _ = import_invoice(tapp, "INV-FS-8", "factory", "steel", 3_000_000)
    # the invoice has room, but the piece does not hold that much: the reservation is rolled back too
    refused(
        tapp,
        "transfer_exceeds_amount",
        lambda: tapp.ledger.transfer("factory", root, "steel", 1_000_001, trade_ref=ref),
    )
    # the ledger's own rules answer first: steel does not hold the piece, whatever the invoice says
    refused(tapp, "not_holder", lambda: tapp.ledger.transfer("steel", root, "ore", 1_000, trade_ref=ref))
    assert usage(tapp, ref) is None
    tapp.ledger.transfer("factory", root, "steel", 1_000_000, trade_ref=ref)
    assert usage(tapp, ref) == (3_390_000, 1_000_000)


# --- confirmation from a three-way match --------------------------------------------------------------

PO_NUMBER = "PO-77"


def erp_file(kind: str, document: dict[str, Any]) -> bytes:
    return json.dumps({"kind": kind, "documents": [document]}, ensure_ascii=False).encode()


def import_order_receipt_invoices(app: App) -> tuple[int, int]:
    """xcmg orders 100 valves at 1,000.00 from factory, receives 100, is invoiced for 100 (INV-77) and then
    for 20 more (INV-78, a delivery already invoiced). Returns the two invoices' document ids."""
    parties = {"buyer_uscc": USCC["xcmg"], "seller_uscc": USCC["factory"]}
    po = {"po_number": PO_NUMBER, "order_date": "2026-02-20", **parties}
    po["lines"] = [{"line_no": 1, "item": "液压阀", "quantity": "100", "unit_price": "1000.00", "net": "100000.00"}]
    receipt = {"receipt_number": "GR-77", "po_number": PO_NUMBER, "receipt_date": "2026-02-25", **parties}
    receipt["lines"] = [{"line_no": 1, "po_line_no": 1, "quantity_received": "100"}]

    def invoice(number: str, quantity: int) -> dict[str, Any]:
        net = quantity * 100_000
        tax = net * 13 // 100
        line = {"line_no": 1, "po_line_no": 1, "quantity": str(quantity), "unit_price": "1000.00"}
        line |= {"net": yuan(net), "tax_rate": "13%", "tax": yuan(tax), "gross": yuan(net + tax)}
        return {
            "invoice_number": number,
            "po_number": PO_NUMBER,
            "invoice_date": "2026-02-26",
            **parties,
            "lines": [line],
        }

    ids = []
    for kind, document in [
        ("po", po),
        ("receipt", receipt),
        ("invoice", invoice("INV-77", 100)),
        ("invoice", invoice("INV-78", 20)),
    ]:
        report = app.trade.import_file("xcmg", kind, erp_file(kind, document), f"{kind}.json")
        assert report.outcome == "ok", report.errors()
        if kind == "invoice":
            ids.append(report.imported[0].document_id)
    return ids[0], ids[1]


def test_a_three_way_matched_invoice_becomes_a_payable_that_still_needs_two_approvals(tapp: App) -> None:
    tapp.confirmation.set_credit_line("xcmg", 1_000_000_000)
    matched_id, twice_invoiced_id = import_order_receipt_invoices(tapp)
    payable = tapp.confirmation.payable_from_invoice("xcmg", matched_id)
    assert (payable.debtor, payable.creditor, payable.amount_minor, payable.status) == (
        "xcmg",
        "factory",
        11_300_000,  # 100 x 1,000.00 + 13 % VAT
        "matched",
    )
    refused(tapp, "payable_not_confirmed", lambda: tapp.ledger.issue("xcmg", payable.id, 11_300_000, MATURITY))
    # the same delivery invoiced again does not match, and no payable comes of it
    error = refused(
        tapp, "three_way_match_failed", lambda: tapp.confirmation.payable_from_invoice("xcmg", twice_invoiced_id)
    )
    assert "INV-78" in error.message
    # only the buyer turns an invoice into its payable
    refused(tapp, "not_buyer", lambda: tapp.confirmation.payable_from_invoice("factory", matched_id))

    approve(tapp, payable.id, "alice")
    assert approve(tapp, payable.id, "bob")["status"] == "confirmed"
    receipt = tapp.ledger.issue("xcmg", payable.id, 11_300_000, MATURITY)
    cert = tapp.queries.certificate(str(receipt.result["certificate_id"]))
    assert (cert.payable_id, cert.payable_digest, cert.face_minor) == (payable.id, payable.digest, 11_300_000)
    refused(tapp, "payable_exceeded", lambda: tapp.ledger.issue("xcmg", payable.id, 1, MATURITY))
    tapp.verify()


def test_asking_again_for_the_same_invoice_returns_the_same_payable(
    tapp: App, store_url: str, request: pytest.FixtureRequest
) -> None:
    if store_url.startswith("sqlite"):
        # wait 0.5 s instead of the configured 30 s before SQLite gives up
        @event.listens_for(tapp.engine, "connect")
        def _short_wait(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA busy_timeout=500")

        tapp.engine.dispose()
    matched_id, _ = import_order_receipt_invoices(tapp)
    first = tapp.confirmation.payable_from_invoice("xcmg", matched_id)
    assert tapp.confirmation.payable_from_invoice("xcmg", matched_id) == first
