"""Maturity clearing (到期清分) and overdue handling, with trade rules ON, on SQLite and PostgreSQL.

The chain used throughout: xcmg issues 1,000,000.00 to factory; factory pays steel 400,000.00 against an
invoice; steel discounts 250,000.00 of it with the bank (with recourse). Live at maturity: factory
600,000.00, steel 150,000.00, bank 250,000.00.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import Table, select

from conftest import START, USCC, approve_as, make_settings, onboard, table_rows
from creditflow.bootstrap import App, build
from creditflow.financing import pain001
from creditflow.financing.tables import (
    bank_limits,
    clearing_runs,
    financing_agreements,
    held_payouts,
    payments,
    payout_releases,
    settlement_account_changes,
    settlement_accounts,
)
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import Conflict, DomainError, InvalidInput
from creditflow.ledger.model.certificates import CertificateState, PieceState
from creditflow.ledger.tables import certificates, ledger_entries, pieces
from creditflow.trade.service import TradeService
from creditflow.trade.tables import credit_lines, invoice_usage, payables, piece_trade_refs

MATURITY = dt.date(2026, 9, 1)
TZ = START.tzinfo
MATURITY_MS = int(dt.datetime(2026, 9, 1, 9, 0, tzinfo=TZ).timestamp() * 1000)
DAY_MS = 86_400_000
FACE = 100_000_000
NS = {"p": pain001.NAMESPACE}
ACCOUNTS = {
    "xcmg": ("徐州工程机械集团有限公司", "6222020200110001", "ICBKCNBJ"),
    "factory": ("江苏精艺精密零部件有限公司", "6222020200112233", "PCBCCNBJXZH"),
    "steel": ("徐州钢铁有限公司", "6217000010000001", "ABOCCNBJ"),
    "bank": ("中国银行徐州分行", "6013820000001", "BKCHCNBJ"),
}
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
    settlement_accounts,
    settlement_account_changes,
    held_payouts,
    payout_releases,
)


@dataclass(frozen=True)
class Chain:
    certificate_id: str
    factory_piece: str  # 60,000,000 fen
    steel_piece: str  # 15,000,000 fen
    bank_piece: str  # 25,000,000 fen, financed by steel with recourse


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def capp(store_url: str, clock: ManualClock) -> Iterator[App]:
    with build(make_settings(store_url, enforce_trade_rules=True), clock=clock) as app:
        onboard(app)
        app.people.add("xcmg", "alice", "Alice", ["maker", "approver"])
        app.people.add("xcmg", "bob", "Bob", ["maker", "approver"])
        app.confirmation.set_credit_line("xcmg", 10**12)
        app.financing.set_rating("xcmg", "AAA")
        app.financing.set_limit("bank", "xcmg", 10**10)
        app.financing.create_product("bank", "recourse", {"AAA": {365: 450}}, product_id="prd-rec")
        app.financing.create_product(
            "bank", "no recourse", {"AAA": {365: 600}}, with_recourse=False, product_id="prd-nr"
        )
        yield app


def set_accounts(app: App, *orgs: str) -> None:
    for org in orgs or tuple(ACCOUNTS):
        app.clearing.set_account(org, *ACCOUNTS[org])


def snapshot(app: App) -> dict[str, list[tuple[Any, ...]]]:
    return table_rows(app, WATCHED)


def refused(app: App, code: str, action: Callable[[], object]) -> DomainError:
    before = snapshot(app)
    with pytest.raises(DomainError) as caught:
        action()
    assert caught.value.code == code, caught.value
    assert snapshot(app) == before
    return caught.value


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def import_invoice(app: App, buyer: str, seller: str, net_minor: int) -> str:
    tax = (net_minor * 13 + 50) // 100
    document = {
        "invoice_number": f"INV-{uuid.uuid4().hex[:8]}",
        "invoice_date": "2026-03-01",
        "buyer_uscc": USCC[buyer],
        "seller_uscc": USCC[seller],
        "lines": [
            {
                "line_no": 1,
                "quantity": "1",
                "unit_price": yuan(net_minor),
                "net": yuan(net_minor),
                "tax_rate": "13%",
                "tax": yuan(tax),
                "gross": yuan(net_minor + tax),
            }
        ],
    }
    data = json.dumps({"kind": "invoice", "documents": [document]}).encode()
    report = TradeService(app.engine, app.settings, app.clock).import_file(buyer, "invoice", data, "inv.json")
    assert report.outcome == "ok", report.errors()
    return report.imported[0].digest


def make_chain(app: App) -> Chain:
    payable = app.payables.create_payable("xcmg", "factory", FACE, f"PO-{uuid.uuid4().hex[:8]}")
    approve_as(app, payable.id, "alice")
    approve_as(app, payable.id, "bob")
    issued = app.ledger.issue("xcmg", payable.id, FACE, MATURITY).result
    app.ledger.accept("factory", str(issued["piece_id"]))
    paid = app.ledger.transfer(
        "factory",
        str(issued["piece_id"]),
        "steel",
        40_000_000,
        trade_ref=import_invoice(app, "factory", "steel", 40_000_000),
    ).result
    app.ledger.accept("steel", str(paid["piece_id"]))
    financed = app.financing.request("steel", str(paid["piece_id"]), "bank", "prd-rec", 25_000_000)
    assert financed.approved, financed.reasons
    assert financed.receipt is not None
    return Chain(
        certificate_id=str(issued["certificate_id"]),
        factory_piece=str(paid["change_piece_id"]),
        steel_piece=str(financed.receipt["result"]["change_piece_id"]),
        bank_piece=str(financed.receipt["result"]["piece_id"]),
    )


def at(clock: ManualClock, day: dt.date) -> None:
    clock.set(int(dt.datetime(day.year, day.month, day.day, 9, 0, tzinfo=TZ).timestamp() * 1000))


def live_amounts(app: App, certificate_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in app.queries.tree(certificate_id):
        if p.live:
            out[p.holder] = out.get(p.holder, 0) + p.amount_minor
    return out


def bank_used(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(bank_limits.c.used_minor)).scalar_one())


# --- accounts and payments -------------------------------------------------------------------------------


def test_settlement_accounts_are_stored_and_replaced(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    capp.clearing.set_account("factory", "精艺 new account", "6222999900001111", "PCBCCNBJ")
    with pytest.raises(DomainError) as caught:
        capp.clearing.set_account("nobody", "X", "1", "ICBKCNBJ")
    assert caught.value.code == "party_not_found"
    chain = make_chain(capp)
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "maturity")
    at(clock, MATURITY)
    doc = etree.fromstring(capp.clearing.clear(chain.certificate_id).payment_file)
    accounts = [e.text for e in doc.xpath("//p:CdtTrfTxInf/p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS)]
    assert "6222999900001111" in accounts
    assert ACCOUNTS["factory"][1] not in accounts


def test_a_bad_account_is_refused_as_invalid_input_and_changes_nothing(capp: App) -> None:
    set_accounts(capp, "factory")
    for name, number, bic, field in [
        ("F", "6222020200112233", "icbkcnbj", "bic"),
        ("F", "6222020200112233", "ICBKCN", "bic"),
        ("F", "", "ICBKCNBJ", "account_number"),
        ("F", "6" * 35, "ICBKCNBJ", "account_number"),
        ("F", "6222-0202-0011", "ICBKCNBJ", "account_number"),
        ("F", "DE89370400440532013001", "ICBKCNBJ", "account_number"),  # an IBAN with a wrong check
        ("", "6222020200112233", "ICBKCNBJ", "account_name"),
        ("精" * 141, "6222020200112233", "ICBKCNBJ", "account_name"),
        ("Factory\x07 Ltd", "6222020200112233", "ICBKCNBJ", "account_name"),
        ("Factory\u202e Ltd", "6222020200112233", "ICBKCNBJ", "account_name"),
        (" Factory", "6222020200112233", "ICBKCNBJ", "account_name"),
    ]:
        error = refused(
            capp,
            f"invalid_{field}",
            lambda a=name, n=number, b=bic: capp.clearing.set_account("factory", a, n, b),
        )
        assert isinstance(error, InvalidInput)
        assert error.field == field


def test_record_payment_rules(capp: App) -> None:
    chain = make_chain(capp)
    refused(capp, "not_issuer", lambda: capp.clearing.record_payment("factory", chain.certificate_id, FACE, "x"))
    refused(capp, "not_issuer", lambda: capp.clearing.record_payment("rival", chain.certificate_id, FACE, "x"))
    for wrong in (FACE - 1, FACE + 1, FACE // 2):
        refused(
            capp, "payment_mismatch", lambda w=wrong: capp.clearing.record_payment("xcmg", chain.certificate_id, w, "x")
        )
    refused(capp, "invalid_amount", lambda: capp.clearing.record_payment("xcmg", chain.certificate_id, 0, "x"))
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "付款 maturity")
    refused(capp, "already_paid", lambda: capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "again"))
    with capp.engine.connect() as conn:
        rows = [
            tuple(r) for r in conn.execute(select(payments.c.certificate_id, payments.c.payer, payments.c.amount_minor))
        ]
    assert rows == [(chain.certificate_id, "xcmg", FACE)]


def test_a_pending_certificate_cannot_be_paid(capp: App) -> None:
    payable = capp.payables.create_payable("xcmg", "factory", FACE, "PO-p")
    approve_as(capp, payable.id, "alice")
    approve_as(capp, payable.id, "bob")
    cert = str(capp.ledger.issue("xcmg", payable.id, FACE, MATURITY).result["certificate_id"])
    refused(capp, "certificate_not_outstanding", lambda: capp.clearing.record_payment("xcmg", cert, FACE, "x"))


# --- clearing ----------------------------------------------------------------------------------------


def test_clear_refusals_change_nothing(capp: App, clock: ManualClock) -> None:
    set_accounts(capp, "xcmg", "factory", "bank")  # steel has none yet
    chain = make_chain(capp)
    clear = lambda: capp.clearing.clear(chain.certificate_id)  # noqa: E731
    refused(capp, "not_matured", clear)
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "early")
    # maturity is a date in China time: the last millisecond of 31 August (+08:00) is still too early
    midnight = int(dt.datetime(2026, 9, 1, tzinfo=TZ).timestamp() * 1000)
    clock.set(midnight - 1)
    refused(capp, "not_matured", clear)
    clock.set(midnight)
    # steel has no account: its payout is held, the others are paid (tests/integration/test_payouts.py)
    result = capp.clearing.clear(chain.certificate_id)
    assert result.held == [
        {"piece_id": chain.steel_piece, "holder": "steel", "amount_minor": 15_000_000, "code": "no_settlement_account"}
    ]


def test_clear_without_payment_is_refused(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    chain = make_chain(capp)
    at(clock, MATURITY)
    refused(capp, "not_paid", lambda: capp.clearing.clear(chain.certificate_id))


def test_an_issuer_without_an_account_cannot_be_cleared(capp: App, clock: ManualClock) -> None:
    set_accounts(capp, "factory", "steel", "bank")
    chain = make_chain(capp)
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "x")
    at(clock, MATURITY)
    error = refused(capp, "no_settlement_account", lambda: capp.clearing.clear(chain.certificate_id))
    assert "xcmg" in error.message


def test_clearing_at_maturity_pays_every_holder_exactly(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    chain = make_chain(capp)
    assert bank_used(capp) == 25_000_000
    assert capp.confirmation.credit_line("xcmg")["used_minor"] == FACE
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "maturity payment")
    at(clock, MATURITY)
    result = capp.clearing.clear(chain.certificate_id)

    pain001.validate(result.payment_file)
    assert capp.clearing.payment_file(chain.certificate_id) == result.payment_file
    doc = etree.fromstring(result.payment_file)

    def texts(path: str) -> list[str]:
        return [str(e.text) for e in doc.xpath(path, namespaces=NS)]

    assert texts("//p:GrpHdr/p:MsgId") == [result.message_id]
    assert texts("//p:GrpHdr/p:NbOfTxs") == ["3"]
    assert texts("//p:GrpHdr/p:CtrlSum") == texts("//p:PmtInf/p:CtrlSum") == ["1000000.00"]
    assert sum(Decimal(t) for t in texts("//p:InstdAmt")) * 100 == FACE
    assert texts("//p:PmtInf/p:Dbtr/p:Nm") == [ACCOUNTS["xcmg"][0]]
    assert texts("//p:PmtInf/p:DbtrAcct/p:Id/p:Othr/p:Id") == [ACCOUNTS["xcmg"][1]]
    assert texts("//p:PmtInf/p:ReqdExctnDt/p:Dt") == ["2026-09-01"]
    paid = sorted(
        (
            str(tx.findtext("p:Cdtr/p:Nm", namespaces=NS)),
            str(tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS)),
            str(tx.findtext("p:CdtrAgt/p:FinInstnId/p:BICFI", namespaces=NS)),
            int(Decimal(str(tx.findtext("p:Amt/p:InstdAmt", namespaces=NS))) * 100),
        )
        for tx in doc.xpath("//p:CdtTrfTxInf", namespaces=NS)
    )
    assert paid == sorted(
        [
            (*ACCOUNTS["factory"], 60_000_000),
            (*ACCOUNTS["steel"], 15_000_000),
            (*ACCOUNTS["bank"], 25_000_000),
        ]
    )
    assert sorted((t["holder"], t["amount_minor"], t["piece_id"]) for t in result.transfers) == sorted(
        [
            ("factory", 60_000_000, chain.factory_piece),
            ("steel", 15_000_000, chain.steel_piece),
            ("bank", 25_000_000, chain.bank_piece),
        ]
    )
    assert result.total_minor == FACE

    # the ledger: every piece that was live is cleared, the certificate is cleared, value is conserved
    cert = capp.queries.certificate(chain.certificate_id)
    assert cert.state == CertificateState.CLEARED
    tree = capp.queries.tree(chain.certificate_id)
    cleared = [p for p in tree if p.state == PieceState.CLEARED]
    assert sorted(p.id for p in cleared) == sorted([chain.factory_piece, chain.steel_piece, chain.bank_piece])
    assert not [p for p in tree if p.live]
    assert sum(p.amount_minor for p in cleared) == cert.face_minor == FACE
    with capp.engine.connect() as conn:
        run = conn.execute(select(clearing_runs)).one()
        last = conn.execute(select(ledger_entries).where(ledger_entries.c.seq == result.seq)).one()
    assert (run.certificate_id, run.message_id, run.total_minor, run.transfers) == (
        chain.certificate_id,
        result.message_id,
        FACE,
        3,
    )
    assert (last.op_type, last.actor) == ("clear", "platform")
    # the bank's limit and the issuer's credit line are given back
    assert bank_used(capp) == 0
    assert capp.confirmation.credit_line("xcmg")["used_minor"] == 0
    assert capp.queries.liability("xcmg").outstanding_minor == 0
    capp.verify()


def test_a_cleared_certificate_cannot_be_cleared_again(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    chain = make_chain(capp)
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "x")
    at(clock, MATURITY)
    capp.clearing.clear(chain.certificate_id)
    error = refused(capp, "certificate_not_outstanding", lambda: capp.clearing.clear(chain.certificate_id))
    assert isinstance(error, Conflict)
    refused(
        capp,
        "certificate_not_outstanding",
        lambda: capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, ""),
    )


def test_a_frozen_piece_blocks_clearing(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    chain = make_chain(capp)
    capp.ledger.freeze("operator", chain.steel_piece, "ownership dispute")
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "x")
    at(clock, MATURITY)
    refused(capp, "piece_frozen", lambda: capp.clearing.clear(chain.certificate_id))
    assert capp.queries.certificate(chain.certificate_id).state == CertificateState.OUTSTANDING
    capp.ledger.unfreeze("operator", chain.steel_piece, "dispute settled")
    capp.clearing.clear(chain.certificate_id)
    assert capp.queries.certificate(chain.certificate_id).state == CertificateState.CLEARED
    capp.verify()


# --- overdue -----------------------------------------------------------------------------------------


def test_unpaid_past_maturity_becomes_overdue_with_penalty_and_recourse(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    chain = make_chain(capp)
    # factory also discounts 100,000.00 of its piece, without recourse
    sold = capp.financing.request("factory", chain.factory_piece, "bank", "prd-nr", 10_000_000)
    assert sold.approved and sold.receipt is not None
    factory_rest = str(sold.receipt["result"]["change_piece_id"])
    bank_no_recourse = str(sold.receipt["result"]["piece_id"])

    next_midnight = int(dt.datetime(2026, 9, 2, tzinfo=TZ).timestamp() * 1000)
    clock.set(next_midnight - 1)
    assert capp.clearing.mark_overdue_due() == []  # due on 1 September (China time), not yet late
    clock.set(next_midnight)
    assert capp.clearing.owed_report() == []
    at(clock, MATURITY + dt.timedelta(days=10))
    assert capp.clearing.mark_overdue_due() == [chain.certificate_id]
    assert capp.clearing.mark_overdue_due() == []
    assert capp.queries.certificate(chain.certificate_id).state == CertificateState.OVERDUE
    live = [p for p in capp.queries.tree(chain.certificate_id) if p.live]
    assert {p.state for p in live} == {PieceState.OVERDUE}
    assert sum(p.amount_minor for p in live) == FACE
    assert capp.queries.liability("xcmg").overdue_minor == FACE
    assert capp.confirmation.credit_line("xcmg")["used_minor"] == FACE  # still owed: the line stays drawn

    rows = {r["piece_id"]: r for r in capp.clearing.owed_report()}
    assert capp.clearing.owed_report(issuer="rival") == []

    def penalty(amount: int, days: int) -> int:  # ACT/360, half-up, in integers
        n, d = amount * capp.settings.penalty_rate_bps * days, 10_000 * 360
        return (2 * n + d) // (2 * d)

    expected = {
        factory_rest: ("factory", 50_000_000, None),
        chain.steel_piece: ("steel", 15_000_000, None),
        chain.bank_piece: ("bank", 25_000_000, "steel"),
        bank_no_recourse: ("bank", 10_000_000, None),
    }
    assert set(rows) == set(expected)
    for piece_id, (holder, owed, recourse) in expected.items():
        row = rows[piece_id]
        assert (row["holder"], row["owed_minor"], row["recourse_to"]) == (holder, owed, recourse)
        assert (row["days_overdue"], row["issuer"], row["maturity_date"]) == (10, "xcmg", "2026-09-01")
        assert row["penalty_minor"] == penalty(owed, 10)
    # 18.25 % a year on 500,000.00 for 10 days: 2,534.72 (2,534.7222...)
    assert rows[factory_rest]["penalty_minor"] == 253_472
    # 250,000.00: 1,267.36 (1,267.3611...); 150,000.00: 760.42 (760.4166...)
    assert rows[chain.bank_piece]["penalty_minor"] == 126_736
    assert rows[chain.steel_piece]["penalty_minor"] == 76_042

    # overdue value is frozen in place
    with pytest.raises(DomainError) as caught:
        capp.ledger.split("steel", chain.steel_piece, [5_000_000, 10_000_000])
    assert caught.value.code == "piece_not_live"

    # a late payment clears the overdue certificate and pays every holder
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "late payment")
    result = capp.clearing.clear(chain.certificate_id)
    pain001.validate(result.payment_file)
    assert result.total_minor == FACE
    assert sorted((t["holder"], t["amount_minor"]) for t in result.transfers) == [
        ("bank", 10_000_000),
        ("bank", 25_000_000),
        ("factory", 50_000_000),
        ("steel", 15_000_000),
    ]
    assert capp.queries.certificate(chain.certificate_id).state == CertificateState.CLEARED
    assert live_amounts(capp, chain.certificate_id) == {}
    assert capp.clearing.owed_report() == []
    assert bank_used(capp) == 0
    assert capp.confirmation.credit_line("xcmg")["used_minor"] == 0
    capp.verify()


def test_recourse_follows_a_bank_piece_through_repeated_splits(capp: App, clock: ManualClock) -> None:
    chain = make_chain(capp)
    kept, rest = capp.ledger.split("bank", chain.bank_piece, [15_000_000, 10_000_000]).result["piece_ids"]
    small_a, small_b = capp.ledger.split("bank", str(rest), [5_000_000, 5_000_000]).result["piece_ids"]
    at(clock, MATURITY + dt.timedelta(days=3))
    assert capp.clearing.mark_overdue_due() == [chain.certificate_id]
    # the network view moves all 250,000.00 back to steel ...
    steel = next(h for h in capp.network.what_if_default("xcmg")["holders"] if h["org_id"] == "steel")
    assert steel["loss_after_recourse_minor"] == 15_000_000 + 25_000_000
    # ... so the owed report must name steel for every bank piece that came from the financed one
    recourse = {r["piece_id"]: r["recourse_to"] for r in capp.clearing.owed_report() if r["holder"] == "bank"}
    assert recourse == {str(kept): "steel", str(small_a): "steel", str(small_b): "steel"}
