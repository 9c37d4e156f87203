"""The supply-chain network view: penetration by tier, bank exposure, what-if default.

The flow (trade rules ON): on 2026-03-02 xcmg issues 1,000,000.00 to factory (tier 1); factory pays
steel 400,000.00 and other 50,000.00 (tier 2) and sends ore 10,000.00 that ore rejects; steel pays ore
100,000.00 (tier 3); ten days later steel discounts 200,000.00 with the bank. A revoked certificate
stands by to show that void certificates are left out.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import START, USCC, approve_as, make_settings, onboard
from creditflow.bootstrap import App, build
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.uscc import make_uscc
from creditflow.trade.service import TradeService

MATURITY = dt.date(2026, 9, 1)
TZ = START.tzinfo
DAY_MS = 86_400_000
FACE = 100_000_000
TENOR_DAYS = (MATURITY - START.date()).days  # 183


@dataclass(frozen=True)
class Flow:
    certificate_id: str
    steel_change: str  # 10,000,000 fen
    ore_piece: str  # 10,000,000 fen
    bank_piece: str  # 20,000,000 fen


@pytest.fixture
def napp(store_url: str, clock: ManualClock) -> Iterator[App]:
    with build(make_settings(store_url, enforce_trade_rules=True), clock=clock) as app:
        onboard(app)
        app.ledger.register_organisation("bank2", "Bank Two", "bank", make_uscc("91320300134789001"))
        app.people.add("xcmg", "alice", "Alice", ["maker", "approver"])
        app.people.add("xcmg", "bob", "Bob", ["maker", "approver"])
        app.confirmation.set_credit_line("xcmg", 10**12)
        app.financing.set_rating("xcmg", "AAA")
        for bank in ("bank", "bank2"):
            app.financing.set_limit(bank, "xcmg", 10**10)
        rates = {"AAA": {180: 400, 365: 450}}
        app.financing.create_product("bank", "recourse", rates, product_id="prd-rec")
        app.financing.create_product("bank", "no recourse", rates, with_recourse=False, product_id="prd-nr")
        app.financing.create_product("bank2", "recourse", rates, product_id="prd-b2")
        yield app


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def invoice(app: App, buyer: str, seller: str, net_minor: int) -> str:
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


def pay(app: App, sender: str, piece_id: str, to: str, amount: int, *, accept: bool = True) -> dict[str, str]:
    receipt = app.ledger.transfer(sender, piece_id, to, amount, trade_ref=invoice(app, sender, to, amount))
    if accept:
        app.ledger.accept(to, str(receipt.result["piece_id"]))
    return {k: str(v) for k, v in receipt.result.items()}


def issue(app: App, face: int, *, accept: bool = True) -> dict[str, str]:
    payable = app.payables.create_payable("xcmg", "factory", face, f"PO-{uuid.uuid4().hex[:8]}")
    approve_as(app, payable.id, "alice")
    approve_as(app, payable.id, "bob")
    result = app.ledger.issue("xcmg", payable.id, face, MATURITY).result
    if accept:
        app.ledger.accept("factory", str(result["piece_id"]))
    return {k: str(v) for k, v in result.items()}


def three_tiers(app: App, clock: ManualClock, product_id: str = "prd-rec") -> Flow:
    void = issue(app, 7_000_000, accept=False)
    app.ledger.revoke("xcmg", void["certificate_id"])
    cert = issue(app, FACE)
    to_steel = pay(app, "factory", cert["piece_id"], "steel", 40_000_000)
    to_other = pay(app, "factory", to_steel["change_piece_id"], "other", 5_000_000)
    to_ore = pay(app, "factory", to_other["change_piece_id"], "ore", 1_000_000, accept=False)
    app.ledger.reject("ore", to_ore["piece_id"])
    steel_to_ore = pay(app, "steel", to_steel["piece_id"], "ore", 10_000_000)
    clock.advance(10 * DAY_MS)
    financed = app.financing.request("steel", steel_to_ore["change_piece_id"], "bank", product_id, 20_000_000)
    assert financed.approved, financed.reasons
    assert financed.receipt is not None
    return Flow(
        certificate_id=cert["certificate_id"],
        steel_change=str(financed.receipt["result"]["change_piece_id"]),
        ore_piece=steel_to_ore["piece_id"],
        bank_piece=str(financed.receipt["result"]["piece_id"]),
    )


def clear_at_maturity(app: App, clock: ManualClock, certificate_id: str) -> None:
    for i, org in enumerate(("xcmg", "factory", "steel", "other", "ore", "bank", "bank2")):
        app.clearing.set_account(org, f"{org} 结算账户", f"622202020011{i:04d}", "ICBKCNBJ")
    app.clearing.record_payment("xcmg", certificate_id, FACE, "maturity")
    clock.set(int(dt.datetime(2026, 9, 1, 9, 0, tzinfo=TZ).timestamp() * 1000))
    app.clearing.clear(certificate_id)


def test_penetration_by_tier(napp: App, clock: ManualClock) -> None:
    flow = three_tiers(napp, clock)
    view = napp.network.penetration("xcmg")
    assert (view["issuer"], view["certificates"], view["issued_minor"], view["deepest_tier"]) == ("xcmg", 1, FACE, 3)
    assert view["tiers"] == [
        {
            "tier": 1,
            "value_reached_minor": FACE,
            "suppliers_reached": 1,
            "financed_minor": 0,
            "financed_share": 0.0,
            "median_days_to_cash": None,
        },
        {
            "tier": 2,
            "value_reached_minor": 45_000_000,  # steel 400,000.00 + other 50,000.00; ore's rejected piece is not
            "suppliers_reached": 2,
            "financed_minor": 20_000_000,
            "financed_share": 0.4444,
            "median_days_to_cash": 10.0,
        },
        {
            "tier": 3,
            "value_reached_minor": 10_000_000,
            "suppliers_reached": 1,
            "financed_minor": 0,
            "financed_share": 0.0,
            "median_days_to_cash": None,
        },
    ]
    assert napp.network.penetration("rival") == {
        "issuer": "rival",
        "certificates": 0,
        "issued_minor": 0,
        "deepest_tier": 0,
        "tiers": [],
    }

    # at maturity every supplier piece is paid: its days to cash are the tenor
    clear_at_maturity(napp, clock, flow.certificate_id)
    after = {t["tier"]: t for t in napp.network.penetration("xcmg")["tiers"]}
    # tier 1: factory's change and the piece ore sent back; tier 2: the financing (10) and steel's and
    # other's pieces paid at clearing; tier 3: ore's piece
    assert {t: row["median_days_to_cash"] for t, row in after.items()} == {
        1: float(TENOR_DAYS),
        2: float(TENOR_DAYS),
        3: float(TENOR_DAYS),
    }
    assert {t: row["value_reached_minor"] for t, row in after.items()} == {1: FACE, 2: 45_000_000, 3: 10_000_000}
    assert after[2]["financed_minor"] == 20_000_000


def test_exposure_per_bank(napp: App, clock: ManualClock) -> None:
    flow = three_tiers(napp, clock)
    assert napp.network.exposure() == [{"bank": "bank", "core": "xcmg", "exposure_minor": 20_000_000}]
    second = napp.financing.request("ore", flow.ore_piece, "bank2", "prd-b2", 4_000_000)
    assert second.approved, second.reasons
    # the bank splitting its own piece does not change what it holds
    napp.ledger.split("bank", flow.bank_piece, [15_000_000, 5_000_000])
    assert napp.network.exposure() == [
        {"bank": "bank", "core": "xcmg", "exposure_minor": 20_000_000},
        {"bank": "bank2", "core": "xcmg", "exposure_minor": 4_000_000},
    ]
    clear_at_maturity(napp, clock, flow.certificate_id)
    assert napp.network.exposure() == []


@pytest.mark.parametrize("with_recourse", [True, False], ids=["recourse", "no-recourse"])
def test_what_if_the_core_enterprise_defaults(napp: App, clock: ManualClock, with_recourse: bool) -> None:
    flow = three_tiers(napp, clock, "prd-rec" if with_recourse else "prd-nr")
    # the bank splits its piece: recourse follows the value down the bank's own splits
    napp.ledger.split("bank", flow.bank_piece, [12_000_000, 8_000_000])
    moved = 20_000_000 if with_recourse else 0
    view = napp.network.what_if_default("xcmg")
    assert view["issuer"] == "xcmg"
    assert view["total_at_risk_minor"] == FACE
    assert view["holders"] == [
        {
            "org_id": "bank",
            "role": "bank",
            "direct_loss_minor": 20_000_000,
            "loss_after_recourse_minor": 20_000_000 - moved,
        },
        {
            "org_id": "factory",
            "role": "supplier",
            "direct_loss_minor": 55_000_000,
            "loss_after_recourse_minor": 55_000_000,
        },
        {"org_id": "ore", "role": "supplier", "direct_loss_minor": 10_000_000, "loss_after_recourse_minor": 10_000_000},
        {"org_id": "other", "role": "supplier", "direct_loss_minor": 5_000_000, "loss_after_recourse_minor": 5_000_000},
        {
            "org_id": "steel",
            "role": "supplier",
            "direct_loss_minor": 10_000_000,
            "loss_after_recourse_minor": 10_000_000 + moved,
        },
    ]
    assert sum(h["loss_after_recourse_minor"] for h in view["holders"]) == FACE
    assert napp.network.what_if_default("rival") == {"issuer": "rival", "total_at_risk_minor": 0, "holders": []}
    clear_at_maturity(napp, clock, flow.certificate_id)
    assert napp.network.what_if_default("xcmg") == {"issuer": "xcmg", "total_at_risk_minor": 0, "holders": []}
