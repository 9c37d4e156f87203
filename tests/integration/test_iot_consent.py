"""Collateral consent and price books (issue 13): a loan and each pledge are the lender's proposals until the
borrower (the asset's owner) accepts them, both parties signing the canonical terms with their held keys;
only accepted loans restrict financing and only accepted pledges count or show the asset to the bank; an
absent asset and another party's answer the same; each bank's price book values only its own loans, the
operator's feed the rest. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text, update

from conftest import onboard
from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind, consent_message, terms_digest
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.collateral.tables import iot_loans
from creditflow.http.app import create_app
from creditflow.kernel.errors import Conflict, NotFound
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger.signing import verify_signature
from creditflow.migrations.schema import metadata

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture
def iot(app: App) -> Iterator[IotSystem]:
    onboard(app, "steel", "other", "bank", "operator", "auditor")
    app.ledger.register_organisation("bank2", "Bank Two", "bank", make_uscc("91320300134789999"))
    app.iot.close()  # the wired one, replaced by one without the offline sweep (the clock is manual)
    app.iot = IotSystem(app.engine, IotSettings(), app.clock, custody=app.custody, sweep_offline=False)
    yield app.iot


@pytest.fixture
def http(app: App, iot: IotSystem) -> Iterator[TestClient]:
    with TestClient(create_app(app)) as client:
        yield client


def auth(app: App, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.access.create_key(org, 'test')}"}


def lot(iot: IotSystem, asset_id: str, owner: str, kg: int = 50_000) -> None:
    iot.collateral.register_asset(
        AssetSpec(
            asset_id,
            owner,
            AssetKind.WAREHOUSE_LOT,
            "rebar",
            commodity="steel",
            quantity_kg=kg,
            receipt_no=f"WR-{asset_id}",
        )
    )


# --- consent -----------------------------------------------------------------------------------------------


def test_a_loan_restricts_financing_only_once_the_borrower_accepted_it_and_its_pledge(iot: IotSystem) -> None:
    c = iot.collateral
    c.set_price("steel", 400)
    lot(iot, "lot-s", "steel")
    # 50 t x 4.00 = 200 000 CNY of collateral against 900 000 CNY: liquidation once it binds
    c.create_loan("L", "steel", "bank", 90_000_000)
    assert c.loan("L")["status"] == "proposed" and c.financing_restriction("steel") is None
    c.propose_pledge("L", "lot-s", 0, "bank")
    loan = c.loan("L")
    assert loan["assets"] == [] and loan["value_minor"] == 0 and not loan["financing_blocked"]
    assert [p["status"] for p in loan["pledge_proposals"]] == ["proposed"]
    assert c.assets_page(viewer="bank", size=10).items == []  # the bank sees nothing yet
    with pytest.raises(Conflict) as early:
        c.accept_pledge("L", "lot-s", "steel")
    assert early.value.code == "loan_not_accepted"
    c.accept_loan("L", "steel")
    assert c.financing_restriction("steel") is None  # accepted, but no accepted collateral has moved its band
    c.accept_pledge("L", "lot-s", "steel")
    loan = c.loan("L")
    assert loan["assets"] == ["lot-s"] and loan["band"] == "LIQUIDATION" and loan["financing_blocked"]
    assert [a["asset_id"] for a in c.assets_page(viewer="bank", size=10).items] == ["lot-s"]
    restriction = c.financing_restriction("steel")
    assert restriction is not None and "collateral loan L" in restriction
    with pytest.raises(Conflict) as twice:
        c.accept_loan("L", "steel")
    assert twice.value.code == "loan_not_proposed"
    with pytest.raises(Conflict) as again:
        c.accept_pledge("L", "lot-s", "steel")
    assert again.value.code == "pledge_not_proposed"


def test_a_refused_loan_stays_on_record_and_binds_nothing(iot: IotSystem) -> None:
    c = iot.collateral
    c.set_price("steel", 400)
    lot(iot, "lot-s", "steel")
    c.create_loan("L", "steel", "bank", 90_000_000)
    c.propose_pledge("L", "lot-s", 0, "bank")
    with pytest.raises(Conflict) as open_twice:
        c.propose_pledge("L", "lot-s", 500, "bank")
    assert open_twice.value.code == "pledge_already_proposed"
    c.refuse_loan("L", "steel")
    loan = c.loan("L")
    assert loan["status"] == "refused" and loan["decided_ts_ms"] is not None and loan["borrower_signature"] is None
    assert [p["status"] for p in loan["pledge_proposals"]] == ["refused"]
    for action, code in (
        (lambda: c.accept_loan("L", "steel"), "loan_not_proposed"),
        (lambda: c.refuse_loan("L", "steel"), "loan_not_proposed"),
        (lambda: c.propose_pledge("L", "lot-s", 0, "bank"), "loan_refused"),
        (lambda: c.accept_pledge("L", "lot-s", "steel"), "pledge_not_proposed"),
        (lambda: c.repay("L", 1), "loan_not_accepted"),
    ):
        with pytest.raises(Conflict) as refused:
            action()
        assert refused.value.code == code
    assert c.financing_restriction("steel") is None and c.asset("lot-s")["loan_id"] is None


def test_a_refused_pledge_counts_nothing_and_may_be_proposed_again(app: App, iot: IotSystem) -> None:
    c = iot.collateral
    c.set_price("steel", 400)
    lot(iot, "lot-s", "steel")
    c.create_loan("L", "steel", "bank", 10_000_000)
    c.accept_loan("L", "steel")
    c.propose_pledge("L", "lot-s", 9_000, "bank")
    c.refuse_pledge("L", "lot-s", "steel")
    assert c.loan("L")["assets"] == [] and c.asset("lot-s")["loan_id"] is None
    app.clock.advance(1_000)  # type: ignore[attr-defined]
    c.propose_pledge("L", "lot-s", 1_000, "bank")
    c.accept_pledge("L", "lot-s", "steel")
    loan = c.loan("L")
    assert [(p["haircut_bps"], p["status"]) for p in loan["pledge_proposals"]] == [
        (9_000, "refused"),
        (1_000, "accepted"),
    ]
    assert loan["value_minor"] == 50_000 * 400 * 9 // 10


def test_both_parties_sign_the_canonical_terms(app: App, iot: IotSystem) -> None:
    c = iot.collateral
    c.set_price("steel", 400)
    lot(iot, "lot-s", "steel")
    c.create_loan("L", "steel", "bank", 10_000_000)
    proposed = c.loan("L")
    assert proposed["lender_signature"] is not None and proposed["borrower_signature"] is None
    c.accept_loan("L", "steel")
    c.propose_pledge("L", "lot-s", 1_000, "bank")
    c.accept_pledge("L", "lot-s", "steel")
    loan = c.loan("L")
    [pledge] = loan["pledge_proposals"]
    checked = c.verify_consent("L")
    assert checked == {
        "loan": {"bank": True, "steel": True},
        "pledges": {pledge["proposal_id"]: {"bank": True, "steel": True}},
    }
    # the signatures are the parties' own keys over the context and the canonical terms
    with app.engine.connect() as conn:
        terms = conn.execute(iot_loans.select().where(iot_loans.c.id == "L")).one().terms
    assert json.loads(terms)["principal_minor"] == 10_000_000 and json.loads(terms)["borrower"] == "steel"
    assert loan["terms_digest"] == terms_digest(terms.encode())
    public = app.custody.signer("steel").public_key
    signature = bytes.fromhex(loan["borrower_signature"]["signature"])
    assert verify_signature(public, consent_message(terms.encode()), signature)
    # terms altered behind the parties' backs no longer verify
    with app.engine.begin() as conn:
        conn.execute(update(iot_loans).where(iot_loans.c.id == "L").values(terms=terms.replace("10000000", "99")))
    assert c.verify_consent("L")["loan"] == {"bank": False, "steel": False}


def test_only_the_named_borrower_decides(iot: IotSystem) -> None:
    c = iot.collateral
    lot(iot, "lot-s", "steel")
    c.create_loan("L", "steel", "bank", 10_000_000)
    for who in ("bank", "bank2", "other"):
        with pytest.raises(NotFound) as hidden:
            c.accept_loan("L", who)
        assert hidden.value.code == "loan_not_found"
    c.accept_loan("L", "steel")
    c.propose_pledge("L", "lot-s", 1_000, "bank")
    for who in ("bank", "other"):
        with pytest.raises(NotFound) as hidden:
            c.accept_pledge("L", "lot-s", who)
        assert hidden.value.code == "loan_not_found"
    with pytest.raises(NotFound) as not_lender:
        c.propose_pledge("L", "lot-s", 1_000, "bank2")
    assert not_lender.value.code == "loan_not_found"
    assert c.loan("L")["assets"] == []


def test_over_http_an_absent_asset_and_another_partys_answer_the_same(app: App, http: TestClient) -> None:
    iot = app.iot
    lot(iot, "lot-s", "steel")
    lot(iot, "lot-o", "other")
    h = {org: auth(app, org) for org in ("steel", "other", "bank", "bank2", "operator")}
    r = http.post(
        "/v1/iot/loans", headers=h["bank"], json={"loan_id": "L", "borrower": "steel", "outstanding_minor": 1}
    )
    assert r.status_code == 201 and r.json()["status"] == "proposed"
    # the lender sees its loan but may not accept it; other parties are told there is no such loan
    for org, status, code in (
        ("bank", 403, "not_allowed"),
        ("bank2", 404, "loan_not_found"),
        ("other", 404, "loan_not_found"),
    ):
        r = http.post("/v1/iot/loans/L/accept", headers=h[org])
        assert (r.status_code, r.json()["code"]) == (status, code), org
    assert http.post("/v1/iot/loans/L/accept", headers=h["steel"]).json()["status"] == "accepted"

    def shape(response: Any, asset_id: str) -> Any:
        return response.status_code, response.text.replace(asset_id, "X")

    proposals = {}
    for asset_id in ("nope", "lot-o"):  # absent, and another party's: proposed alike
        r = http.post("/v1/iot/loans/L/pledges", headers=h["bank"], json={"asset_id": asset_id, "haircut_bps": 0})
        assert r.status_code == 200 and r.json()["assets"] == []
        proposals[asset_id] = [p["status"] for p in r.json()["pledge_proposals"] if p["asset_id"] == asset_id]
    assert proposals == {"nope": ["proposed"], "lot-o": ["proposed"]}
    # looking at either: the same answer
    looks = {a: http.get(f"/v1/iot/assets/{a}", headers=h["bank"]) for a in ("nope", "lot-o", "lot-s")}
    assert shape(looks["nope"], "nope") == shape(looks["lot-o"], "lot-o") == shape(looks["lot-s"], "lot-s")
    assert looks["nope"].json()["code"] == "asset_not_found"
    for path in ("/v1/iot/devices", "/v1/iot/alarms"):
        assert http.get(path, headers=h["bank"], params={"asset_id": "lot-o"}).json()["items"] == []
    # the borrower cannot accept a pledge of what it does not own: absent and another's again answer alike
    accepts = {a: http.post(f"/v1/iot/loans/L/pledges/{a}/accept", headers=h["steel"]) for a in ("nope", "lot-o")}
    assert shape(accepts["nope"], "nope") == shape(accepts["lot-o"], "lot-o")
    assert accepts["nope"].json()["code"] == "asset_not_found"
    r = http.post("/v1/iot/loans/L/pledges/lot-o/refuse", headers=h["steel"])
    assert (
        r.status_code == 200
        and {p["asset_id"]: p["status"] for p in r.json()["pledge_proposals"]}["lot-o"] == "refused"
    )
    # the other party's lot is untouched and unseen
    assert iot.collateral.asset("lot-o")["loan_id"] is None
    assert http.get("/v1/iot/assets/lot-o", headers=h["other"]).json()["loan_id"] is None
    # and the borrower's own lot, once accepted, is the bank's to see
    http.post("/v1/iot/loans/L/pledges", headers=h["bank"], json={"asset_id": "lot-s", "haircut_bps": 0})
    assert http.get("/v1/iot/assets/lot-s", headers=h["bank"]).status_code == 404
    assert http.post("/v1/iot/loans/L/pledges/lot-s/accept", headers=h["steel"]).json()["assets"] == ["lot-s"]
    assert http.get("/v1/iot/assets/lot-s", headers=h["bank"]).status_code == 200
    r = http.post("/v1/iot/loans/L/pledges/nothing-proposed/accept", headers=h["steel"])
    assert (r.status_code, r.json()["code"]) == (404, "pledge_not_found")


# --- price books ---------------------------------------------------------------------------------------------


def test_each_bank_values_its_own_loans_and_the_feed_the_rest(app: App, http: TestClient) -> None:
    iot = app.iot
    c = iot.collateral
    lot(iot, "lot-s", "steel")
    lot(iot, "lot-o", "other")
    h = {org: auth(app, org) for org in ("steel", "other", "bank", "bank2", "operator")}
    r = http.post("/v1/iot/prices", headers=h["operator"], json={"commodity": "steel", "price_minor_per_kg": 400})
    assert r.status_code == 200 and r.json()["book"] == "operator"
    from creditflow.tools.simulate.iot import consented_loan

    consented_loan(iot, "LA", "steel", "bank", 10_000_000, "default", "lot-s", 0)
    consented_loan(iot, "LB", "other", "bank2", 10_000_000, "default", "lot-o", 0)
    assert c.loan("LA")["value_minor"] == c.loan("LB")["value_minor"] == 50_000 * 400
    assert c.loan("LA")["prices"][0] | {"ts_ms": 0} == {
        "commodity": "steel",
        "price_minor_per_kg": 400,
        "ts_ms": 0,
        "book": "operator",
        "source": "operator",
    }
    # bank's own price values bank's loan only
    app.clock.advance(1_000)  # type: ignore[attr-defined]
    r = http.post("/v1/iot/prices", headers=h["bank"], json={"commodity": "steel", "price_minor_per_kg": 100})
    assert r.status_code == 200 and r.json()["book"] == "bank"
    assert {e["loan_id"] for e in r.json()["loan_events"]} <= {"LA"}
    la, lb = c.loan("LA"), c.loan("LB")
    assert la["value_minor"] == 50_000 * 100 and lb["value_minor"] == 50_000 * 400
    assert (la["prices"][0]["book"], la["prices"][0]["source"], la["prices"][0]["price_minor_per_kg"]) == (
        "bank",
        "bank",
        100,
    )
    assert lb["prices"][0]["book"] == "operator"
    # the feed moves the loans of banks without a price of their own, not bank's
    app.clock.advance(1_000)  # type: ignore[attr-defined]
    http.post("/v1/iot/prices", headers=h["operator"], json={"commodity": "steel", "price_minor_per_kg": 500})
    assert c.loan("LA")["value_minor"] == 50_000 * 100 and c.loan("LB")["value_minor"] == 50_000 * 500
    # no one writes another's book
    for org, book in (("bank2", "bank"), ("bank", "operator"), ("operator", "bank")):
        r = http.post(
            "/v1/iot/prices", headers=h[org], json={"commodity": "steel", "price_minor_per_kg": 1, "book": book}
        )
        assert (r.status_code, r.json()["code"]) == (403, "price_book_not_yours"), org
    assert c.loan("LA")["value_minor"] == 50_000 * 100 and c.loan("LB")["value_minor"] == 50_000 * 500
    assert [p["price_minor_per_kg"] for p in c.price_history("steel", book="bank")] == [100]
    assert [p["price_minor_per_kg"] for p in c.price_history("steel")] == [400, 500]
    # the borrower's unpledged goods are valued with the feed
    lot(iot, "lot-free", "steel")
    assert c.asset("lot-free")["value_minor"] == 50_000 * 500


def test_the_schema_matches_the_migration(app: App) -> None:
    with app.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    mine = [d for d in diffs if "iot_" in repr(d)]
    assert mine == []


def test_loans_and_pledges_from_before_consent_become_proposals(app: App, iot: IotSystem) -> None:
    """Migration 0011 on a database with a loan, a pledge and a bank's price from before: the loan and the
    pledge are proposals to the borrower (they restrict and show nothing), the price moves to the bank's
    book; once the borrower accepts, both parties' signatures verify. Downgrading and upgrading again works."""
    from alembic import command

    from creditflow.kernel.engine import alembic_config

    lot(iot, "lot-s", "steel")
    cfg = alembic_config(app.engine)
    command.downgrade(cfg, "0011-1")
    now = app.clock.now_ms()
    with app.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO iot_loans (id, borrower, lender, outstanding_minor, currency, bands_key, value_minor,"
                " ltv_bps, band, created_ts_ms, updated_ts_ms) VALUES ('old', 'steel', 'bank', 90000000, 'CNY',"
                " 'default', 1, 99999, 'LIQUIDATION', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO iot_pledges (asset_id, loan_id, haircut_bps, created_ts_ms) VALUES ('lot-s', 'old', 0, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO iot_prices (commodity, ts_ms, price_minor_per_kg, source)"
                " VALUES ('steel', :now, 400, 'bank'), ('steel', :later, 300, 'operator')"
            ),
            {"now": now, "later": now + 1},
        )
    command.upgrade(cfg, "head")
    c = iot.collateral
    loan = c.loan("old")
    assert (loan["status"], loan["band"], loan["assets"], loan["financing_blocked"]) == (
        "proposed",
        "NORMAL",
        [],
        False,
    )
    assert [(p["asset_id"], p["status"], p["lender_signature"]) for p in loan["pledge_proposals"]] == [
        ("lot-s", "proposed", None)
    ]
    assert c.financing_restriction("steel") is None and c.assets_page(viewer="bank", size=10).items == []
    assert [p["price_minor_per_kg"] for p in c.price_history("steel", book="bank")] == [400]
    assert [p["price_minor_per_kg"] for p in c.price_history("steel")] == [300]
    c.accept_loan("old", "steel")
    c.accept_pledge("old", "lot-s", "steel")
    loan = c.loan("old")
    assert loan["assets"] == ["lot-s"] and loan["value_minor"] == 50_000 * 400 and loan["financing_blocked"]
    assert loan["prices"][0]["book"] == "bank"
    [pledge] = loan["pledge_proposals"]
    assert c.verify_consent("old") == {
        "loan": {"bank": True, "steel": True},
        "pledges": {pledge["proposal_id"]: {"bank": True, "steel": True}},
    }
