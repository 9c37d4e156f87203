"""Collateral consent on the pages: a supplier sees the loans and pledges banks proposed to it and accepts or
refuses each (CSRF-protected forms calling the same services as the API); another supplier can decide
nothing of them; the bank's collateral page shows each proposal's state and the price book that valued
each loan."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from web_helpers import add_user, sign_in

from conftest import table_rows
from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind
from creditflow.collateral.tables import iot_loans, iot_pledge_proposals, iot_pledges

WATCHED = [iot_loans, iot_pledge_proposals, iot_pledges]


def _banner(text: str) -> str | None:
    found = re.search(r'<p class="problem" role="alert" data-code="([^"]+)">', text)
    return found.group(1) if found else None


@pytest.fixture
def proposals(world: App) -> App:
    c = world.iot.collateral
    c.set_price("steel", 400)
    for asset_id in ("lot-1", "lot-2"):
        spec = AssetSpec(
            asset_id,
            "steel",
            AssetKind.WAREHOUSE_LOT,
            "rebar",
            commodity="steel",
            quantity_kg=50_000,
            receipt_no=f"WR-{asset_id}",
        )
        c.register_asset(spec)
    c.create_loan("loan-a", "steel", "bank", 10_000_000)
    c.propose_pledge("loan-a", "lot-1", 1_000, "bank")
    c.create_loan("loan-b", "steel", "bank", 5_000_000)
    c.propose_pledge("loan-b", "lot-2", 1_000, "bank")
    return world


def test_the_borrower_accepts_and_refuses_from_its_page(web: TestClient, proposals: App) -> None:
    world = proposals
    c = world.iot.collateral
    add_user(world, "steel", "li.gang")
    csrf = sign_in(web, "li.gang")
    page = web.get("/ui/supplier/collateral")
    assert page.status_code == 200
    for button in ("accept-loan-loan-a", "refuse-loan-loan-a", "refuse-pledge-loan-a-lot-1"):
        assert f'id="{button}"' in page.text, button
    assert 'id="accept-pledge-loan-a-lot-1"' not in page.text  # the loan is to be accepted first
    assert 'name="csrf_token"' in page.text and "<strong>4</strong> proposals waiting" in page.text

    # without the session's CSRF token nothing is decided
    before = table_rows(world, WATCHED)
    forged = web.post("/ui/supplier/collateral/loans/loan-a/accept", data={"csrf_token": "forged"})
    assert forged.status_code == 403 and table_rows(world, WATCHED) == before

    accepted = web.post("/ui/supplier/collateral/loans/loan-a/accept", data={"csrf_token": csrf})
    assert accepted.status_code == 200 and "Accepted loan loan-a." in accepted.text
    assert 'id="accept-pledge-loan-a-lot-1"' in accepted.text
    pledged = web.post("/ui/supplier/collateral/loans/loan-a/pledges/lot-1/accept", data={"csrf_token": csrf})
    assert pledged.status_code == 200 and "Accepted the pledge of lot-1 to loan loan-a." in pledged.text
    loan = c.loan("loan-a")
    assert loan["status"] == "accepted" and loan["assets"] == ["lot-1"] and loan["borrower_signature"] is not None
    assert c.verify_consent("loan-a")["loan"] == {"bank": True, "steel": True}

    refused = web.post("/ui/supplier/collateral/loans/loan-b/refuse", data={"csrf_token": csrf})
    assert refused.status_code == 200 and "Refused loan loan-b." in refused.text
    assert c.loan("loan-b")["status"] == "refused" and c.asset("lot-2")["loan_id"] is None
    assert re.search(r'data-loan="loan-b" data-status="refused"', refused.text)

    # deciding again: the page says why and nothing changes
    before = table_rows(world, WATCHED)
    again = web.post("/ui/supplier/collateral/loans/loan-b/accept", data={"csrf_token": csrf})
    assert again.status_code == 409 and _banner(again.text) == "loan_not_proposed"
    assert table_rows(world, WATCHED) == before


def test_another_supplier_decides_nothing_and_sees_nothing(web: TestClient, proposals: App) -> None:
    world = proposals
    add_user(world, "factory", "wang.fang")
    csrf = sign_in(web, "wang.fang")
    page = web.get("/ui/supplier/collateral")
    assert page.status_code == 200 and 'id="no-loans"' in page.text and "loan-a" not in page.text
    before = table_rows(world, WATCHED)
    for path in (
        "/ui/supplier/collateral/loans/loan-a/accept",
        "/ui/supplier/collateral/loans/loan-a/refuse",
        "/ui/supplier/collateral/loans/loan-a/pledges/lot-1/accept",
        "/ui/supplier/collateral/loans/nope/accept",
    ):
        answer = web.post(path, data={"csrf_token": csrf})
        assert answer.status_code == 404 and _banner(answer.text) == "loan_not_found", path
    assert table_rows(world, WATCHED) == before


def test_the_bank_sees_its_proposals_state_and_the_supplier_page_is_not_its(web: TestClient, proposals: App) -> None:
    world = proposals
    c = world.iot.collateral
    c.accept_loan("loan-a", "steel")
    c.accept_pledge("loan-a", "lot-1", "steel")
    c.refuse_loan("loan-b", "steel")
    world.clock.advance(1_000)  # type: ignore[attr-defined]
    c.set_price("steel", 300, source="bank", book="bank")
    add_user(world, "bank", "li.wei")
    sign_in(web, "li.wei")
    page = web.get("/ui/bank/collateral")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'data-loan="loan-a" data-status="accepted" class="loan-proposal"', text)
    assert re.search(r'data-loan="loan-a" data-asset="lot-1" data-status="accepted" class="pledge-proposal"', text)
    assert re.search(r'data-loan="loan-b" data-status="refused" class="loan-proposal"', text)
    assert re.search(r'data-loan="loan-b" data-asset="lot-2" data-status="refused" class="pledge-proposal"', text)
    assert "steel 3.00/kg (your book)" in text
    assert 'id="site-lot-1"' in text and 'id="site-lot-2"' not in text  # only accepted collateral is shown
    assert web.get("/ui/supplier/collateral").status_code == 403
