"""A small two-sided world for the API-wide tests (the authorization matrix, schemathesis): every role
twice, so that for any caller "its own side's object" and "another organisation's object" both exist.

Side ``own`` is the cast of `conftest.ROLES` (xcmg, factory, bank, auditor, operator); side ``other``
mirrors it (rival, steel, bank2, auditor2, operator2). On each side the core enterprise owes its supplier
a payable, and has issued on it a certificate the supplier accepted (``piece_id``), one still pending
(``pending_piece_id``) and one the supplier financed with the side's bank (``bank_piece_id``, the
bank's product, the agreement); the supplier imported a purchase order and an invoice from the core
enterprise, has a stored credit decision, and pledged a warehouse lot (asset, device, alarm) to the
side's bank for a collateral loan. Every organisation has an API key and a user (admin, maker and
approver) with a personal token; the core's user approved a second payable once.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, update

from conftest import USCC
from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind, DeviceKind, make_message
from creditflow.credit.tables import credit_decisions
from creditflow.kernel.uscc import make_uscc

ROLE_ORDER = ("core_enterprise", "supplier", "bank", "auditor", "operator")
CAST = {
    "own": {
        "core_enterprise": "xcmg",
        "supplier": "factory",
        "bank": "bank",
        "auditor": "auditor",
        "operator": "operator",
    },
    "other": {
        "core_enterprise": "rival",
        "supplier": "steel",
        "bank": "bank2",
        "auditor": "auditor2",
        "operator": "operator2",
    },
}
_EXTRA_USCC = {"bank2": make_uscc("91320300134780901"), "auditor2": make_uscc("91320300134780902")}
_EXTRA_USCC["operator2"] = make_uscc("91320300134780903")
MATURITY = dt.date(2026, 9, 1)


def uscc_of(org_id: str) -> str:
    return USCC.get(org_id) or _EXTRA_USCC[org_id]


@dataclass
class Side:
    orgs: dict[str, str]  # role -> org_id
    tokens: dict[str, str] = field(default_factory=dict)  # role -> API key
    registered_seq: dict[str, int] = field(default_factory=dict)  # role -> log index of its registration
    users: dict[str, str] = field(default_factory=dict)  # role -> a user of that organisation
    people: dict[str, str] = field(default_factory=dict)  # role -> that user's personal token (admin, approver)
    approved_payable_id: str = ""  # a payable the core's user approved once (of two)
    payable_id: str = ""
    certificate_id: str = ""
    piece_id: str = ""
    pending_certificate_id: str = ""
    pending_piece_id: str = ""
    financed_certificate_id: str = ""
    bank_piece_id: str = ""
    product_id: str = ""
    agreement_id: str = ""
    request_id: str = ""
    decision_id: str = ""
    po_id: int = 0
    invoice_id: int = 0
    asset_id: str = ""
    device_id: str = ""
    device_secret: str = ""
    loan_id: str = ""
    alarm_id: str = ""
    # issue 13 H4 (credit consent, `_credit_consent`): personal tokens of an admin+maker+approver person per
    # role, a second bank approver's, the supplier's authorisations of the side's bank, a referred decision
    credit_tokens: dict[str, str] = field(default_factory=dict)
    credit_token_b: str = ""
    authorisation_id: str = ""
    spare_authorisation_id: str = ""
    refer_decision_id: str = ""

    @property
    def core(self) -> str:
        return self.orgs["core_enterprise"]

    @property
    def supplier(self) -> str:
        return self.orgs["supplier"]

    @property
    def bank(self) -> str:
        return self.orgs["bank"]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def person_headers(self, role: str) -> dict[str, str]:
        """As the organisation's user in person (personal token), not its organisation-wide key."""
        return {"Authorization": f"Bearer {self.people[role]}"}

    def object_ids(self) -> list[str]:
        """Ids of this side's objects that no organisation of the other side is party to."""
        return [
            self.certificate_id,
            self.piece_id,
            self.pending_piece_id,
            self.financed_certificate_id,
            self.bank_piece_id,
            self.agreement_id,
            self.request_id,
        ]


@dataclass
class World:
    app: App
    own: Side
    other: Side

    def side(self, name: str) -> Side:
        return self.own if name == "own" else self.other


def _po_csv(buyer: str, seller: str, number: str) -> bytes:
    return (
        "po_number,order_date,buyer_uscc,seller_uscc,currency,line_no,item,quantity,unit_price,net\n"
        f"{number},2026-02-20,{uscc_of(buyer)},{uscc_of(seller)},CNY,1,bearing,1000,12.50,12500.00\n"
    ).encode()


def _invoice_csv(buyer: str, seller: str, number: str, po_number: str) -> bytes:
    return (
        "invoice_number,invoice_date,buyer_uscc,seller_uscc,currency,po_number,line_no,item,quantity,"
        "unit_price,net,tax_rate,tax,gross\n"
        f"{number},2026-02-25,{uscc_of(buyer)},{uscc_of(seller)},CNY,{po_number},1,bearing,1000,12.50,"
        "12500.00,13%,1625.00,14125.00\n"
    ).encode()


def _store_decision(app: App, org_id: str) -> str:
    """A stored credit decision (as `CreditService.decide` writes it), without training a model."""
    decision_id = str(uuid.uuid4())
    with app.engine.begin() as conn:
        conn.execute(
            insert(credit_decisions).values(
                id=decision_id,
                org_id=org_id,
                product="pure_credit",
                outcome="approve",
                pd=0.02,
                score=720,
                requested_minor=3_000_000,
                limit_minor=5_000_000,
                granted_minor=3_000_000,
                rate_bps=520,
                reasons_json="[]",
                knockouts_json="[]",
                policy_version="test",
                policy_sha256="0" * 64,
                model_version="test",
                feature_hash="0" * 64,
                features_json="{}",
                as_of=dt.date(2026, 3, 2),
                decided_ts_ms=app.clock.now_ms(),
                decision_us=500,
            )
        )
    return decision_id


def _issue(app: App, side: Side, face_minor: int, *, accept: bool) -> tuple[str, str]:
    receipt = app.ledger.issue(side.core, side.payable_id, face_minor, MATURITY)
    certificate_id, piece_id = str(receipt.result["certificate_id"]), str(receipt.result["piece_id"])
    if accept:
        app.ledger.accept(side.supplier, piece_id)
    return certificate_id, piece_id


def _collateral(app: App, side: Side, name: str) -> None:
    c = app.iot.collateral
    side.asset_id, side.device_id, side.loan_id = f"lot-{name}", f"scale-{name}", f"loan-{name}"
    c.register_asset(
        AssetSpec(
            owner=side.supplier,
            asset_id=side.asset_id,
            kind=AssetKind.WAREHOUSE_LOT,
            name="rebar",
            commodity="steel",
            quantity_kg=50_000,
            receipt_no=f"WR-{name}",
        )
    )
    side.device_secret = c.register_device(side.device_id, side.asset_id, DeviceKind.SCALE)
    c.set_price("steel", 400, source=side.bank, book=side.bank)
    # the bank proposes the loan and the pledge; the supplier (borrower, the lot's owner) accepts both
    c.create_loan(side.loan_id, side.supplier, side.bank, 10_000_000, "default")
    c.accept_loan(side.loan_id, side.supplier)
    c.propose_pledge(side.loan_id, side.asset_id, 1000, side.bank)
    c.accept_pledge(side.loan_id, side.asset_id, side.supplier)
    # stock leaves the lot without a release: the rules raise an alarm
    secret, now = bytes.fromhex(side.device_secret), app.clock.now_ms()
    for seq, (ts, weight) in enumerate([(now, 50_000.0), (now + 1000, 45_000.0)], start=1):
        message = make_message(secret, side.device_id, ts, seq, {"weight_kg": weight})
        result = app.iot.pipeline.submit(message, source="http", block=True).result(timeout=30)
        assert result.accepted, result.to_json()
    alarms = c.alarms(asset_id=side.asset_id)
    assert alarms, "no alarm was raised"
    side.alarm_id = str(alarms[0]["alarm_id"])


def _build_side(app: App, name: str) -> Side:
    side = Side(orgs=dict(CAST[name]))
    for role in ROLE_ORDER:
        org = side.orgs[role]
        receipt = app.ledger.register_organisation(org, org.title(), role, uscc_of(org))
        side.registered_seq[role] = receipt.seq
        side.tokens[role] = app.access.create_key(org, "api world")
        side.users[role] = f"{org}.clerk"
        app.people.add(org, side.users[role], f"{org.title()} Clerk", ["admin", "maker", "approver"])
        side.people[role] = app.access.create_key(org, "api world person", user_id=side.users[role])
    side.payable_id = app.payables.create_payable(side.core, side.supplier, 300_000_000, f"PO-{name}").id
    side.approved_payable_id = app.payables.create_payable(side.core, side.supplier, 1_000, f"PO-{name}-2").id
    app.confirmation.approve(side.approved_payable_id, app.access.authenticate(side.people["core_enterprise"]))
    side.certificate_id, side.piece_id = _issue(app, side, 100_000_000, accept=True)
    side.pending_certificate_id, side.pending_piece_id = _issue(app, side, 50_000_000, accept=False)
    side.financed_certificate_id, financed = _issue(app, side, 100_000_000, accept=True)
    app.financing.set_rating(side.core, "AA")
    app.financing.set_limit(side.bank, side.core, 1_000_000_000)
    rates = {"AA": {30: 300, 90: 350, 180: 380, 365: 420}}
    side.product_id = app.financing.create_product(side.bank, f"discounting {name}", rates).id
    outcome = app.financing.request(side.supplier, financed, side.bank, side.product_id)
    assert outcome.approved, outcome.to_json()
    side.request_id = outcome.request_id
    [agreement] = app.financing.agreements(bank=side.bank)
    side.agreement_id, side.bank_piece_id = str(agreement["id"]), str(agreement["bank_piece_id"])
    side.decision_id = _store_decision(app, side.supplier)
    po = app.trade.import_file(side.supplier, "po", _po_csv(side.core, side.supplier, f"PO-{name}"), "po.csv")
    invoice = app.trade.import_file(
        side.supplier, "invoice", _invoice_csv(side.core, side.supplier, f"INV-{name}", f"PO-{name}"), "inv.csv"
    )
    assert po.imported and invoice.imported, (po.to_json(), invoice.to_json())
    side.po_id, side.invoice_id = po.imported[0].document_id, invoice.imported[0].document_id
    _collateral(app, side, name)
    _credit_consent(app, side)
    return side


def _credit_consent(app: App, side: Side) -> None:
    """Issue 13 H4: people with roles (personal tokens), the supplier's authorisations of the side's bank
    (one to keep, one the matrix revokes), the side's decision and a referred one asked for by that bank."""
    from creditflow.identity.roles import UserRole

    every = (UserRole.ADMIN, UserRole.MAKER, UserRole.APPROVER)
    for role in ROLE_ORDER:
        org = side.orgs[role]
        app.people.add(org, f"{org}.credit", f"{org.title()} Credit", roles=every)
        side.credit_tokens[role] = app.access.create_key(org, "credit person", user_id=f"{org}.credit")
    app.people.add(side.bank, f"{side.bank}.credit2", "Second approver", roles=(UserRole.APPROVER,))
    side.credit_token_b = app.access.create_key(side.bank, "second approver", user_id=f"{side.bank}.credit2")
    admin = app.access.authenticate(side.credit_tokens["supplier"])
    grant = {"bank_id": side.bank, "purpose_code": "loan_application", "purpose": "api world", "valid_days": 300}
    side.authorisation_id = app.credit.grant_authorisation(admin, scope="decision", **grant)["authorisation_id"]
    spare = app.credit.grant_authorisation(admin, scope="decision_and_features", **grant)
    side.spare_authorisation_id = spare["authorisation_id"]
    side.decision_id = asked_decision(app, side, "approve")
    side.refer_decision_id = asked_decision(app, side, "refer")


def asked_decision(app: App, side: Side, outcome: str) -> str:
    """A stored decision about the side's supplier with ``outcome``, asked for by the side's bank."""
    decision_id = _store_decision(app, side.supplier)
    with app.engine.begin() as conn:
        conn.execute(
            update(credit_decisions)
            .where(credit_decisions.c.id == decision_id)
            .values(outcome=outcome, asked_by=side.bank, authorisation_id=side.authorisation_id)
        )
    return decision_id


def build_world(app: App) -> World:
    own = _build_side(app, "own")
    other = _build_side(app, "other")
    return World(app, own, other)


def json_of(response: Any) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):  # issue 14: tiles are binary
        return None
