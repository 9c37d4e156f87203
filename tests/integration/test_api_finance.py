"""Financing and clearing end to end through the HTTP API, with the production trade rules on."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import START, USCC, make_settings, onboard
from creditflow.bootstrap import App, build
from creditflow.financing import pain001
from creditflow.http.app import create_app
from creditflow.kernel.clock import ManualClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

YUAN = 100
DAY_MS = 86_400_000


@pytest.fixture
def trade_app(store_url: str, clock: ManualClock) -> Iterator[App]:
    with build(make_settings(store_url, enforce_trade_rules=True), clock=clock) as application:
        onboard(application, "xcmg", "factory", "steel", "bank", "operator")
        yield application


def _h(app: App, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.access.create_key(org)}"}


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _invoice_csv(
    buyer: str, seller: str, number: str, gross_yuan: str, net_yuan: str, tax_yuan: str, qty: int, price: str
) -> bytes:
    day = (START.date() - dt.timedelta(days=3)).isoformat()
    return (
        "invoice_number,invoice_date,buyer_uscc,seller_uscc,currency,line_no,item,quantity,unit_price,net,tax_rate,tax,gross\n"
        f'{number},{day},{USCC[buyer]},{USCC[seller]},CNY,1,steel bar,{qty},{price},"{net_yuan}",13%,"{tax_yuan}","{gross_yuan}"\n'
    ).encode()


def test_issue_finance_and_clear_over_http(trade_app: App, clock: ManualClock) -> None:
    app = trade_app
    h = {org: _h(app, org) for org in ("xcmg", "factory", "steel", "bank", "operator")}
    with TestClient(create_app(app)) as client:
        # confirmation: two different approvers of the core enterprise, added by its admin, each in person
        app.people.add("xcmg", "admin", "Admin", ["admin"])
        admin = {"Authorization": f"Bearer {app.access.create_key('xcmg', 'admin', user_id='admin')}"}
        person = {}
        for user in ("maker", "checker"):
            body = {"user_id": user, "name": user.title(), "roles": ["approver"]}
            _ok(client.post("/v1/users", json=body, headers=admin), 201)
            person[user] = {"Authorization": f"Bearer {app.access.create_key('xcmg', user, user_id=user)}"}
        _ok(client.put("/v1/credit-lines/xcmg", json={"limit_minor": 2_000_000 * YUAN}, headers=h["operator"]))
        denied = client.put("/v1/credit-lines/xcmg", json={"limit_minor": 1}, headers=h["factory"])
        assert denied.status_code == 403 and denied.json()["code"] == "role_not_allowed"
        _ok(client.put("/v1/ratings/xcmg", json={"rating": "AA"}, headers=h["operator"]))
        payable = _ok(
            client.post(
                "/v1/payables",
                json={"creditor": "factory", "amount_minor": 1_000_000 * YUAN, "reference": "PO-1"},
                headers=h["xcmg"],
            ),
            201,
        )
        maturity = (START.date() + dt.timedelta(days=90)).isoformat()
        early = client.post(
            "/v1/certificates",
            json={"payable_id": payable["id"], "face_minor": 1_000_000 * YUAN, "maturity_date": maturity},
            headers=h["xcmg"],
        )
        assert early.status_code == 409 and early.json()["code"] == "payable_not_confirmed"
        approvals = f"/v1/payables/{payable['id']}/approvals"
        by_key = client.post(approvals, json={"user_id": "maker"}, headers=h["xcmg"])
        assert by_key.status_code == 403 and by_key.json()["code"] == "person_required"
        first = _ok(client.post(approvals, headers=person["maker"]))
        assert first["approvals"] == 1 and first["status"] == "draft" and first["approved_by"] == "maker"
        again = client.post(approvals, headers=person["maker"])
        assert again.status_code == 409 and again.json()["code"] == "same_approver"
        posing = client.post(approvals, json={"user_id": "maker"}, headers=person["checker"])
        assert posing.status_code == 403 and posing.json()["code"] == "approver_mismatch"
        second = _ok(client.post(approvals, json={"user_id": "checker"}, headers=person["checker"]))
        assert second["status"] == "confirmed"
        seen = _ok(client.get(f"/v1/payables/{payable['id']}", headers=h["xcmg"]))
        assert seen["status"] == "confirmed" and seen["created_by"] is None  # entered with the org's key
        assert [(a["user_id"], a["auth"]) for a in seen["approvals"]] == [
            ("maker", "personal_token"),
            ("checker", "personal_token"),
        ]
        assert _ok(client.get(f"/v1/payables/{payable['id']}", headers=h["factory"]))["approvals"] is None

        issued = _ok(
            client.post(
                "/v1/certificates",
                json={"payable_id": payable["id"], "face_minor": 1_000_000 * YUAN, "maturity_date": maturity},
                headers=h["xcmg"],
            ),
            201,
        )
        cert_id, root = issued["certificate_id"], issued["piece_id"]
        _ok(client.post(f"/v1/pieces/{root}/accept", headers=h["factory"]))
        parts = _ok(
            client.post(
                f"/v1/pieces/{root}/split",
                json={"amounts_minor": [600_000 * YUAN, 400_000 * YUAN]},
                headers=h["factory"],
            )
        )["result"]["piece_ids"]

        # a transfer up the chain must cite the invoice between the two parties
        bare = client.post(
            f"/v1/pieces/{parts[0]}/transfer",
            json={"to": "steel", "amount_minor": 600_000 * YUAN},
            headers=h["factory"],
        )
        assert bare.status_code == 422 and bare.json()["code"] == "trade_ref_required"
        report = app.trade.import_file(
            "factory",
            "invoice",
            _invoice_csv("factory", "steel", "ST-1", "600,000.00", "530,973.45", "69,026.55", 100, "5309.7345"),
            "inv.csv",
        )
        assert report.outcome == "ok", report.to_json()
        digest = report.imported[0].digest
        sent = _ok(
            client.post(
                f"/v1/pieces/{parts[0]}/transfer",
                json={"to": "steel", "amount_minor": 600_000 * YUAN, "trade_ref": digest},
                headers=h["factory"],
            )
        )
        _ok(client.post(f"/v1/pieces/{sent['result']['piece_id']}/accept", headers=h["steel"]))

        # financing: the bank's product and limit, then the factory's request
        product = _ok(
            client.post(
                "/v1/products",
                json={"name": "discounting", "rates_bps": {"AA": {"30": 300, "90": 350, "180": 380}}, "fee_bps": 5},
                headers=h["bank"],
            ),
            201,
        )
        _ok(client.put("/v1/bank-limits/xcmg", json={"limit_minor": 300_000 * YUAN}, headers=h["bank"]))
        over = _ok(
            client.post(
                f"/v1/pieces/{parts[1]}/finance",
                json={"bank": "bank", "product_id": product["id"]},
                headers=h["factory"],
            )
        )
        assert over["approved"] is False and [r["code"] for r in over["reasons"]] == ["bank_limit_exceeded"]
        # the offer first: the quote, nothing recorded; accepting it with other terms in mind signs nothing
        asked = {"bank": "bank", "product_id": product["id"], "amount_minor": 250_000 * YUAN}
        offer = _ok(client.post(f"/v1/pieces/{parts[1]}/finance/offer", json=asked, headers=h["factory"]))
        assert offer["approved"] is True and offer["reasons"] == [], offer
        declined_offer = _ok(
            client.post(
                f"/v1/pieces/{parts[1]}/finance/offer",
                json={"bank": "bank", "product_id": product["id"]},
                headers=h["factory"],
            )
        )
        assert (declined_offer["approved"], declined_offer["reasons"]) == (False, over["reasons"])
        cash = offer["quote"]["disbursement_minor"]
        stale = client.post(
            f"/v1/pieces/{parts[1]}/finance",
            json={**asked, "expect_disbursement_minor": cash + 1},
            headers=h["factory"],
        )
        assert stale.status_code == 409 and stale.json()["code"] == "terms_changed", stale.text
        assert len(_ok(client.get("/v1/financing/requests", headers=h["factory"]))["items"]) == 1  # the decline
        deal = _ok(
            client.post(
                f"/v1/pieces/{parts[1]}/finance",
                json={**asked, "expect_disbursement_minor": cash},
                headers=h["factory"],
            )
        )
        assert deal["approved"] is True, deal
        quote = deal["quote"]
        assert quote == offer["quote"]
        # 250,000.00 at 3.50 % for 90 days ACT/360 = 2,187.50 interest; fee 5 bps = 125.00
        assert (quote["days"], quote["interest_minor"], quote["fees_minor"]) == (90, 218_750, 12_500)
        assert quote["interest_minor"] + quote["fees_minor"] + quote["disbursement_minor"] == 250_000 * YUAN
        assert deal["decision_ms"] >= 0  # how fast is the benchmark's business, not a test's
        # both in the same millisecond (the clock stands still here): a page orders them by id
        requests = _ok(client.get("/v1/financing/requests", headers=h["bank"]))
        by_status = {r["status"]: r for r in requests["items"]}
        assert sorted(by_status) == ["approved", "declined"] and requests["next_cursor"] is None
        assert by_status["declined"]["reasons"] == over["reasons"] and by_status["approved"]["reasons"] == []
        first = _ok(client.get("/v1/financing/requests", params={"limit": 1}, headers=h["factory"]))
        rest = _ok(client.get("/v1/financing/requests", params={"cursor": first["next_cursor"]}, headers=h["factory"]))
        assert first["items"] + rest["items"] == requests["items"] and rest["next_cursor"] is None
        agreements = _ok(client.get("/v1/financing/agreements", headers=h["factory"]))["items"]
        assert len(agreements) == 1 and agreements[0]["disbursement_minor"] == quote["disbursement_minor"]
        products = _ok(client.get("/v1/products", params={"bank": "bank"}, headers=h["factory"]))
        assert [p["id"] for p in products["items"]] == [product["id"]] and products["next_cursor"] is None

        # maturity: accounts, the issuer's single payment, clearing to pain.001
        for org, bic in (("xcmg", "ICBKCNBJ"), ("factory", "PCBCCNBJ"), ("steel", "BKCHCNBJ"), ("bank", "COMMCNSH")):
            _ok(
                client.put(
                    "/v1/accounts",
                    json={"account_name": org, "account_number": f"6222{org}01", "bic": bic},
                    headers=h[org],
                )
            )
        too_early = client.post(f"/v1/certificates/{cert_id}/clear", headers=h["xcmg"])
        assert too_early.status_code == 409 and too_early.json()["code"] == "not_matured"
        clock.advance(90 * DAY_MS)
        unpaid = client.post(f"/v1/certificates/{cert_id}/clear", headers=h["xcmg"])
        assert unpaid.status_code == 409 and unpaid.json()["code"] == "not_paid"
        wrong = client.post(
            f"/v1/certificates/{cert_id}/payment", json={"amount_minor": 1, "reference": "x"}, headers=h["xcmg"]
        )
        assert wrong.status_code == 422 and wrong.json()["code"] == "payment_mismatch"
        _ok(
            client.post(
                f"/v1/certificates/{cert_id}/payment",
                json={"amount_minor": 1_000_000 * YUAN, "reference": "TR-1"},
                headers=h["xcmg"],
            ),
            201,
        )
        cleared = _ok(client.post(f"/v1/certificates/{cert_id}/clear", headers=h["xcmg"]))
        assert cleared["total_minor"] == 1_000_000 * YUAN
        paid = {t["holder"]: t["amount_minor"] for t in cleared["transfers"]}
        assert paid == {"steel": 600_000 * YUAN, "bank": 250_000 * YUAN, "factory": 150_000 * YUAN}
        xml = client.get(cleared["payment_file"], headers=h["xcmg"])
        assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/xml")
        pain001.validate(xml.content)
        assert b"<CtrlSum>1000000.00</CtrlSum>" in xml.content

        # the network view; the bank's limit came back at clearing
        pen = _ok(client.get("/v1/network/xcmg/penetration", headers=h["xcmg"]))
        tiers = {t["tier"]: t for t in pen["tiers"]}
        assert tiers[1]["value_reached_minor"] == 1_000_000 * YUAN and tiers[2]["value_reached_minor"] == 600_000 * YUAN
        assert tiers[1]["financed_minor"] == 250_000 * YUAN
        hidden = client.get("/v1/network/xcmg/penetration", headers=h["steel"])
        assert hidden.status_code == 403
    assert app.verify().entries > 0
    assert {p.state.value for p in app.queries.tree(cert_id) if p.state.value not in ("spent",)} == {"cleared"}
