"""Supplier pages: my pieces with accept, reject, transfer, split and finance; provenance and history;
financing requests with the bank's quote. Each refused action answers 4xx naming the field at fault and
changes nothing; another organisation's piece is "not found", exactly as on the API."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_helpers import PASSWORD, add_user, sign_in, sign_in_form_token

from conftest import START, USCC, approve_as, issue_accepted, make_settings, onboard, table_rows
from creditflow.bootstrap import App, build
from creditflow.financing.policy import quote
from creditflow.financing.tables import bank_limits, financing_agreements, financing_requests
from creditflow.kernel.clock import ManualClock
from creditflow.ledger.tables import certificates, ledger_entries, piece_events, pieces
from creditflow.trade.service import TradeService
from creditflow.trade.tables import invoice_usage, piece_trade_refs

WATCHED = (
    ledger_entries,
    pieces,
    piece_events,
    certificates,
    financing_requests,
    financing_agreements,
    bank_limits,
    piece_trade_refs,
    invoice_usage,
)
FACE = 100_000_000  # 1,000,000.00 CNY (issue_accepted's default)
MATURITY = dt.date(2026, 9, 1)


def field_error(page: str, name: str) -> tuple[str, str] | None:
    """(code, message) shown next to the form field ``name``, or None."""
    found = re.search(rf'<p class="field-error" id="e-{name}" data-code="([^"]+)">([^<]*)</p>', page)
    return (found.group(1), html.unescape(found.group(2))) if found else None


def banner(page: str) -> str | None:
    found = re.search(r'<p class="problem" role="alert"[^>]*>([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else None


@pytest.fixture
def factory(web: TestClient, world: App) -> dict[str, Any]:
    """wang.fang of factory, signed in, holding an accepted 1,000,000.00 piece."""
    piece_id = issue_accepted(world)
    add_user(world, "factory", "wang.fang")
    return {"csrf": sign_in(web, "wang.fang"), "piece": piece_id}


def live_pieces(app: App, org: str) -> list[Any]:
    return app.queries.pieces_by_holder(org, live_only=True, limit=500).items


# --- pages and who may see them -----------------------------------------------------------------------


def test_supplier_pages_render(web: TestClient, world: App, factory: dict[str, Any], product: str) -> None:
    listing = web.get("/ui/supplier/pieces")
    assert listing.status_code == 200
    assert f'data-piece="{factory["piece"]}"' in listing.text and "1,000,000.00" in listing.text
    page = web.get(f"/ui/supplier/pieces/{factory['piece']}")
    assert page.status_code == 200
    for form in ('id="transfer-form"', 'id="split-form"', 'id="finance-form"', 'id="provenance"', 'id="history"'):
        assert form in page.text
    assert web.get("/ui/supplier/financing").status_code == 200
    assert 'href="/ui/supplier/financing"' in listing.text  # in the menu


def sign_in_to_account(client: TestClient, user_id: str) -> str:
    """Sign in through the form, landing on the account page; return the session's CSRF token."""
    token = sign_in_form_token(client)
    page = client.post(
        "/ui/sign-in", data={"user_id": user_id, "password": PASSWORD, "csrf_token": token, "next": "/ui/account"}
    )
    assert page.status_code == 200, page.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found
    return found.group(1)


def test_supplier_pages_are_refused_to_other_roles(web: TestClient, world: App) -> None:
    piece_id = issue_accepted(world)
    for org in ("xcmg", "bank", "auditor", "operator"):
        add_user(world, org, f"user.{org}")
        web.cookies.clear()
        csrf = sign_in_to_account(web, f"user.{org}")
        for path in ("/ui/supplier/pieces", f"/ui/supplier/pieces/{piece_id}", "/ui/supplier/financing"):
            page = web.get(path)
            assert page.status_code == 403 and "these pages are for supplier" in page.text, (org, path)
        before = table_rows(world, WATCHED)
        for action in ("transfer", "split", "finance", "accept", "reject"):
            refused = web.post(
                f"/ui/supplier/pieces/{piece_id}/{action}",
                data={"csrf_token": csrf, "to": "steel", "amount": "1", "amounts": "1; 999,999", "product_id": "x"},
            )
            assert refused.status_code == 403, (org, action)
        assert table_rows(world, WATCHED) == before


def test_another_organisations_piece_is_not_found_as_on_the_api(
    web: TestClient, world: App, factory: dict[str, Any]
) -> None:
    theirs = issue_accepted(world, holder="other")
    api = web.get(f"/v1/pieces/{theirs}")
    assert api.status_code == 404
    page = web.get(f"/ui/supplier/pieces/{theirs}")
    assert page.status_code == 404 and banner(page.text) == api.json()["detail"]
    missing = web.get(f"/ui/supplier/pieces/{uuid.uuid4()}")
    assert missing.status_code == 404 and "does not exist" in (banner(missing.text) or "")
    before = table_rows(world, WATCHED)
    for action, data in (
        ("transfer", {"to": "steel", "amount": "1.00"}),
        ("split", {"amounts": "1; 2"}),
        ("accept", {}),
        ("reject", {}),
    ):
        answer = web.post(f"/ui/supplier/pieces/{theirs}/{action}", data={"csrf_token": factory["csrf"], **data})
        assert answer.status_code == 404, action
        assert banner(answer.text) == api.json()["detail"]
    assert table_rows(world, WATCHED) == before


# --- accept and reject --------------------------------------------------------------------------------


def test_accept_and_reject_from_the_list(web: TestClient, world: App, factory: dict[str, Any]) -> None:
    first = world.ledger.transfer("factory", factory["piece"], "steel", 30_000_000).result
    second = world.ledger.transfer("factory", first["change_piece_id"], "steel", 20_000_000).result
    add_user(world, "steel", "li.gang")
    web.cookies.clear()
    csrf = sign_in(web, "li.gang")
    listing = web.get("/ui/supplier/pieces").text
    assert f'id="accept-{first["piece_id"]}"' in listing and f'id="reject-{second["piece_id"]}"' in listing
    accepted = web.post(f"/ui/supplier/pieces/{first['piece_id']}/accept", data={"csrf_token": csrf})
    assert accepted.status_code == 200 and "Accepted piece" in accepted.text
    rejected = web.post(f"/ui/supplier/pieces/{second['piece_id']}/reject", data={"csrf_token": csrf})
    assert rejected.status_code == 200 and "Rejected piece" in rejected.text
    assert world.queries.piece(first["piece_id"]).state.value == "active"
    assert world.queries.piece(second["piece_id"]).state.value == "rejected"
    # Rejecting again: the piece is no longer pending; the page says so and nothing changes.
    before = table_rows(world, WATCHED)
    again = web.post(f"/ui/supplier/pieces/{second['piece_id']}/reject", data={"csrf_token": csrf})
    assert again.status_code == 409 and banner(again.text) == "the piece is rejected"
    assert table_rows(world, WATCHED) == before


# --- transfer -----------------------------------------------------------------------------------------


BAD_TRANSFERS = [
    ({"to": "steel", "amount": "12.345"}, "amount", "invalid_amount", 422),
    ({"to": "steel", "amount": "1,00"}, "amount", "invalid_amount", 422),
    ({"to": "steel", "amount": "-5"}, "amount", "invalid_amount", 422),
    ({"to": "steel", "amount": "0"}, "amount", "invalid_amount", 422),
    ({"to": "steel", "amount": ""}, "amount", "invalid_amount", 422),
    ({"to": "steel", "amount": "1e5"}, "amount", "invalid_amount", 422),
    ({"to": "steel", "amount": "1,000,000.01"}, "amount", "transfer_exceeds_amount", 409),
    ({"to": "factory", "amount": "10"}, "to", "invalid_recipient", 422),
    ({"to": "xcmg", "amount": "10"}, "to", "invalid_recipient", 422),
    ({"to": "nobody", "amount": "10"}, "to", "party_not_found", 404),
    ({"to": "", "amount": "10"}, "to", "invalid_input", 422),
    ({"to": "steel", "amount": "10", "trade_ref": "not-a-digest"}, "trade_ref", "invalid_input", 422),
]


def test_transfer_refuses_bad_input_then_sends_an_amount_typed_in_yuan(
    web: TestClient, world: App, factory: dict[str, Any]
) -> None:
    before = table_rows(world, WATCHED)
    for data, field, code, status in BAD_TRANSFERS:
        page = web.post(
            f"/ui/supplier/pieces/{factory['piece']}/transfer", data={"csrf_token": factory["csrf"], **data}
        )
        assert page.status_code == status, data
        shown = field_error(page.text, field)
        assert shown is not None and shown[0] == code, (data, banner(page.text))
        assert re.search(rf'id="f-{field}"[^>]*\s+aria-invalid="true"', page.text), data
        assert f'value="{data["amount"]}"' in page.text  # what was typed is kept
        assert table_rows(world, WATCHED) == before
    page = web.post(
        f"/ui/supplier/pieces/{factory['piece']}/transfer",
        data={"csrf_token": factory["csrf"], "to": "steel", "amount": " 200,000.50 "},
    )
    assert page.status_code == 200 and "Sent 200,000.50 CNY" in page.text
    sent = live_pieces(world, "steel")
    assert [(p.amount_minor, p.state.value, p.tier) for p in sent] == [(20_000_050, "pending", 2)]
    assert [p.amount_minor for p in live_pieces(world, "factory")] == [FACE - 20_000_050]
    assert world.queries.piece(factory["piece"]).state.value == "spent"
    # The piece is spent now: not a field's fault; said at the top of the page.
    before = table_rows(world, WATCHED)
    page = web.post(
        f"/ui/supplier/pieces/{factory['piece']}/transfer",
        data={"csrf_token": factory["csrf"], "to": "steel", "amount": "1.00"},
    )
    assert page.status_code == 409 and banner(page.text) == "the piece has already been spent"
    assert table_rows(world, WATCHED) == before


def test_actions_without_the_csrf_token_are_refused(
    web: TestClient, world: App, factory: dict[str, Any], product: str
) -> None:
    before = table_rows(world, WATCHED)
    data = {"to": "steel", "amount": "1.00", "amounts": "1; 999,999", "product_id": product}
    for action in ("transfer", "split", "finance", "accept", "reject"):
        for token in ({}, {"csrf_token": "forged"}):
            answer = web.post(f"/ui/supplier/pieces/{factory['piece']}/{action}", data={**data, **token})
            assert answer.status_code == 403 and "the form has expired" in answer.text, action
    assert table_rows(world, WATCHED) == before


# --- split --------------------------------------------------------------------------------------------


BAD_SPLITS = [
    ("1,000,000", "invalid_input", 422, "at least two amounts"),
    ("600,000; 4OO,000", "invalid_amount", 422, "amount 2:"),
    ("600,000; 300,000", "split_does_not_add_up", 409, "add up to 90000000 fen"),
    ("600,000; 500,000", "split_exceeds_amount", 409, "add up to 110000000 fen"),
    ("600,000; 400,000.001", "invalid_amount", 422, "fraction of a fen"),
]


def test_split_refuses_bad_amounts_and_splits_good_ones(web: TestClient, world: App, factory: dict[str, Any]) -> None:
    before = table_rows(world, WATCHED)
    for amounts, code, status, says in BAD_SPLITS:
        page = web.post(
            f"/ui/supplier/pieces/{factory['piece']}/split", data={"csrf_token": factory["csrf"], "amounts": amounts}
        )
        shown = field_error(page.text, "amounts")
        assert shown is not None, (amounts, banner(page.text))
        assert (page.status_code, shown[0]) == (status, code), amounts
        assert says in shown[1], shown
        assert f">{amounts}</textarea>" in page.text  # what was typed is kept
        assert table_rows(world, WATCHED) == before
    page = web.post(
        f"/ui/supplier/pieces/{factory['piece']}/split",
        data={"csrf_token": factory["csrf"], "amounts": "600,000.00; 399,999.99\n0.01"},
    )
    assert page.status_code == 200 and "Split piece" in page.text
    assert sorted(p.amount_minor for p in live_pieces(world, "factory")) == [1, 39_999_999, 60_000_000]


# --- finance ------------------------------------------------------------------------------------------


@pytest.fixture
def product(world: App) -> str:
    world.financing.set_rating("xcmg", "AAA")
    world.financing.set_limit("bank", "xcmg", 50_000_000)
    world.financing.create_product(
        "bank", "e-certificate discounting", {"AAA": {365: 450}}, fee_bps=10, fee_fixed_minor=500, product_id="prd-1"
    )
    return "prd-1"


def test_finance_part_of_a_piece_and_see_the_quote(
    web: TestClient, world: App, factory: dict[str, Any], product: str
) -> None:
    form = web.get(f"/ui/supplier/pieces/{factory['piece']}").text
    assert f'<option value="{product}">Bank · e-certificate discounting (with recourse)</option>' in form
    page = web.post(
        f"/ui/supplier/pieces/{factory['piece']}/finance",
        data={"csrf_token": factory["csrf"], "product_id": product, "finance_amount": "400,000.00"},
    )
    assert page.status_code == 200 and "The bank approved your request." in page.text
    days = (MATURITY - START.date()).days
    expected = quote(40_000_000, 450, days, fee_bps=10, fee_fixed_minor=500)
    # The quote on the page is the one the ACT/360 rule gives, to the fen.
    interest = Decimal(40_000_000) * 450 / 10_000 * days / 360
    assert abs(Decimal(expected.interest_minor) - interest) <= Decimal("0.5")
    shown = dict(re.findall(r'<td class="num[^"]*" id="quote-(\w+)">([^<]+)</td>', page.text))
    assert shown == {
        "face": "400,000.00 CNY",
        "rate": "4.50 %",
        "days": str(days),
        "interest": f"{expected.interest_minor // 100:,}.{expected.interest_minor % 100:02d} CNY",
        "fees": f"{expected.fees_minor // 100:,}.{expected.fees_minor % 100:02d} CNY",
        "cash": f"{expected.disbursement_minor // 100:,}.{expected.disbursement_minor % 100:02d} CNY",
    }
    assert [p.amount_minor for p in live_pieces(world, "bank")] == [40_000_000]
    listing = web.get("/ui/supplier/financing").text
    assert 'data-status="approved"' in listing


def _offer(page: str) -> dict[str, str]:
    return dict(re.findall(r'<td class="num[^"]*" id="offer-(\w+)">([^<]+)</td>', page))


def _yuan(minor: int) -> str:
    return f"{minor // 100:,}.{minor % 100:02d} CNY"


def test_see_the_offer_then_accept_it_and_changed_terms_are_not_signed(
    web: TestClient, world: App, factory: dict[str, Any], product: str
) -> None:
    """A supplier sees the cash before committing: the offer writes nothing; accepting it finances at
    exactly those terms; if the terms moved in between (the core enterprise was re-rated, so the rate
    changed), nothing is signed and the new offer is shown instead."""
    graded = world.financing.create_product(
        "bank", "graded discounting", {"AAA": {365: 450}, "AA": {365: 600}}, fee_bps=10, fee_fixed_minor=500
    ).id
    piece_url = f"/ui/supplier/pieces/{factory['piece']}/finance"
    asked = {"csrf_token": factory["csrf"], "product_id": graded, "finance_amount": "400,000.00"}
    before = table_rows(world, WATCHED)
    page = web.post(piece_url, data={**asked, "step": "quote"})
    days = (MATURITY - START.date()).days
    expected = quote(40_000_000, 450, days, fee_bps=10, fee_fixed_minor=500)
    assert page.status_code == 200 and 'id="offer" data-approved="yes"' in page.text
    assert _offer(page.text) == {
        "face": "400,000.00 CNY",
        "rate": "4.50 %",
        "days": str(days),
        "interest": _yuan(expected.interest_minor),
        "fees": _yuan(expected.fees_minor),
        "cash": _yuan(expected.disbursement_minor),
    }
    assert f'name="expect_disbursement_minor" value="{expected.disbursement_minor}"' in page.text
    assert table_rows(world, WATCHED) == before  # an offer commits nothing

    # Re-rated before the supplier accepts: the old acceptance would sign other terms. Refused, nothing
    # written, the new offer shown.
    world.financing.set_rating("xcmg", "AA")
    stale = {**asked, "step": "request", "expect_disbursement_minor": str(expected.disbursement_minor)}
    page = web.post(piece_url, data=stale)
    later = quote(40_000_000, 600, days, fee_bps=10, fee_fixed_minor=500)
    assert page.status_code == 409 and "the terms changed since the offer you accepted" in html.unescape(page.text)
    assert _offer(page.text)["rate"] == "6.00 %"
    assert _offer(page.text)["cash"] == _yuan(later.disbursement_minor) != _yuan(expected.disbursement_minor)
    assert table_rows(world, WATCHED) == before

    # A hidden field that is not an offer's cash is refused, not taken as "no offer".
    page = web.post(piece_url, data={**stale, "expect_disbursement_minor": "39,000"})
    assert page.status_code == 422 and "not a whole number of fen" in html.unescape(page.text)
    assert table_rows(world, WATCHED) == before

    # Accepting the new offer finances at exactly its terms.
    page = web.post(piece_url, data={**stale, "expect_disbursement_minor": str(later.disbursement_minor)})
    assert page.status_code == 200 and "The bank approved your request." in page.text
    shown = dict(re.findall(r'<td class="num[^"]*" id="quote-(\w+)">([^<]+)</td>', page.text))
    assert shown["cash"] == _yuan(later.disbursement_minor)
    assert [p.amount_minor for p in live_pieces(world, "bank")] == [40_000_000]


def test_an_offer_the_bank_would_decline_lists_every_reason_and_writes_nothing(
    web: TestClient, world: App, factory: dict[str, Any], product: str
) -> None:
    before = table_rows(world, WATCHED)
    page = web.post(  # the whole piece is over the bank's limit for this core enterprise
        f"/ui/supplier/pieces/{factory['piece']}/finance",
        data={"csrf_token": factory["csrf"], "product_id": product, "step": "quote"},
    )
    assert page.status_code == 200 and 'id="offer" data-approved="no"' in page.text
    assert re.findall(r'<li data-code="([^"]+)">', page.text) == ["bank_limit_exceeded"]
    assert 'id="finance-accept"' not in page.text
    assert table_rows(world, WATCHED) == before


BAD_FINANCING = [
    ({"product_id": ""}, "product_id", "invalid_input", 422),
    ({"product_id": "prd-none"}, "product_id", "product_not_found", 404),
    ({"product_id": "prd-1", "finance_amount": "abc"}, "finance_amount", "invalid_amount", 422),
    ({"product_id": "prd-1", "finance_amount": "0.00"}, "finance_amount", "invalid_amount", 422),
]


def test_bad_or_declined_financing_changes_nothing(
    web: TestClient, world: App, factory: dict[str, Any], product: str, clock: ManualClock
) -> None:
    before = table_rows(world, WATCHED)
    for data, field, code, status in BAD_FINANCING:
        page = web.post(f"/ui/supplier/pieces/{factory['piece']}/finance", data={"csrf_token": factory["csrf"], **data})
        assert page.status_code == status, data
        shown = field_error(page.text, field)
        assert shown is not None and shown[0] == code, (data, page.text)
        assert table_rows(world, WATCHED) == before
    # Declined (the whole piece is over the bank's limit): an answer with its reasons, not an error.
    watched = (ledger_entries, pieces, financing_agreements, bank_limits)
    before = table_rows(world, watched)
    page = web.post(
        f"/ui/supplier/pieces/{factory['piece']}/finance", data={"csrf_token": factory["csrf"], "product_id": product}
    )
    assert page.status_code == 200 and "The bank declined your request." in page.text
    assert re.findall(r'<li data-code="([^"]+)">', page.text) == ["bank_limit_exceeded"]
    assert 'id="quote"' not in page.text
    assert table_rows(world, watched) == before
    # Another organisation's request is not found, and not listed.
    theirs = issue_accepted(world, holder="other")
    outcome = world.financing.request("other", theirs, "bank", product, 1_000_000)
    page = web.get(f"/ui/supplier/financing/{outcome.request_id}")
    assert page.status_code == 404 and banner(page.text) == f"financing request {outcome.request_id!r} does not exist"
    listing = web.get("/ui/supplier/financing").text
    assert outcome.request_id not in listing and listing.count("<tr data-request=") == 1
    # A second request, approved this time; the list pages through both, oldest first.
    clock.advance(60_000)
    web.post(
        f"/ui/supplier/pieces/{factory['piece']}/finance",
        data={"csrf_token": factory["csrf"], "product_id": product, "finance_amount": "1,000"},
    )
    statuses: list[str] = []
    path = "/ui/supplier/financing?limit=1"
    while path:
        page = web.get(path)
        statuses += re.findall(r'<tr data-request="[^"]+" data-status="(\w+)">', page.text)
        found = re.search(r'<a href="([^"]+)" id="next-page"', page.text)
        path = html.unescape(found.group(1)) if found else ""
    assert statuses == ["declined", "approved"]
    assert web.get("/ui/supplier/financing?cursor=junk").status_code == 422


# --- provenance, history, pagination ------------------------------------------------------------------


def test_provenance_walks_to_the_root_with_tiers_and_only_the_holders_own_pieces_in_clear(
    web: TestClient, world: App, factory: dict[str, Any]
) -> None:
    to_steel = world.ledger.transfer("factory", factory["piece"], "steel", 30_000_000).result["piece_id"]
    world.ledger.accept("steel", to_steel)
    to_ore = world.ledger.transfer("steel", to_steel, "ore", 10_000_000).result["piece_id"]
    add_user(world, "ore", "zhao.kuang")
    web.cookies.clear()
    sign_in(web, "zhao.kuang")
    page = web.get(f"/ui/supplier/pieces/{to_ore}")
    assert page.status_code == 200
    rows = re.findall(
        r'<tr data-piece="([^"]+)"><td>(\d)</td><td>([^<]+)</td><td class="num">([^<]+)</td>\s*<td>([^<]+)</td>',
        page.text,
    )
    assert [(pid, tier, name, amount, how) for pid, tier, name, amount, how in rows] == [
        (to_ore, "3", "Ore", "100,000.00", "received"),
    ]
    # need to know (issue 13): the upstream pieces show their tier and a commitment, not who or how much
    redacted = re.findall(r'<tr data-piece="([^"]+)" data-redacted="yes"><td>(\d)</td>', page.text)
    assert redacted == [(factory["piece"], "1"), (to_steel, "2")]
    assert (
        "1,000,000.00" not in page.text
        and "300,000.00" not in page.text
        and 'data-redacted="yes">not shown' in page.text
    )
    svg_nodes = re.findall(
        r'<g class="prov-node" data-piece="([^"]+)" data-tier="(\d)" data-redacted="(\w+)">', page.text
    )
    assert svg_nodes == [(factory["piece"], "1", "yes"), (to_steel, "2", "yes"), (to_ore, "3", "no")]
    history = re.findall(r'<tr data-seq="\d+"><td>\d+</td><td>([^<]+)</td><td>([^<]+)</td>', page.text)
    assert history == [("received", "Steel")]
    # ore may accept it from its own page
    assert f'id="accept-{to_ore}"' in page.text and 'id="transfer-form"' not in page.text


def test_my_pieces_are_paginated_with_cursor_links(web: TestClient, world: App, factory: dict[str, Any]) -> None:
    world.ledger.split("factory", factory["piece"], [10_000_000] * 10)
    seen: list[str] = []
    path = "/ui/supplier/pieces?limit=4"
    while path:
        page = web.get(path)
        assert page.status_code == 200
        ids = re.findall(r'<tr data-piece="([^"]+)"', page.text)
        assert len(ids) <= 4
        seen += ids
        found = re.search(r'<a href="([^"]+)" id="next-page"', page.text)
        path = found.group(1).replace("&amp;", "&") if found else ""
        assert not found or "limit=4" in path
    assert sorted(seen) == sorted(p.id for p in live_pieces(world, "factory")) and len(seen) == 10
    bad = web.get("/ui/supplier/pieces?cursor=nonsense")
    assert bad.status_code == 422 and "cursor" in (banner(bad.text) or "")
    assert web.get("/ui/supplier/pieces?limit=0").status_code == 422


# --- with the trade rules on: a transfer cites the invoice it settles -------------------------------------


@pytest.fixture
def tweb(sqlite_url: str, clock: ManualClock) -> Iterator[tuple[TestClient, App]]:
    from creditflow.http.app import create_app

    with build(make_settings(sqlite_url, enforce_trade_rules=True), clock=clock) as app:
        onboard(app)
        app.confirmation.set_credit_line("xcmg", 10**12)
        for user in ("alice", "bob"):
            app.people.add("xcmg", user, user.title(), ["maker", "approver"])
        with TestClient(create_app(app), base_url="http://127.0.0.1") as client:
            yield client, app


def invoice_digest(app: App, buyer: str, seller: str, gross_yuan: str) -> str:
    document = {
        "invoice_number": f"INV-{uuid.uuid4().hex[:8]}",
        "invoice_date": "2026-03-01",
        "buyer_uscc": USCC[buyer],
        "seller_uscc": USCC[seller],
        "lines": [
            {
                "line_no": 1,
                "item": "steel plate",
                "quantity": "1",
                "unit_price": gross_yuan,
                "net": gross_yuan,
                "tax_rate": "0%",
                "tax": "0.00",
                "gross": gross_yuan,
            }
        ],
    }
    data = json.dumps({"kind": "invoice", "documents": [document]}).encode()
    report = TradeService(app.engine, app.settings, app.clock).import_file(buyer, "invoice", data, "inv.json")
    assert report.outcome == "ok", report.errors()
    return report.imported[0].digest


def test_with_trade_rules_a_transfer_cites_its_invoice(tweb: tuple[TestClient, App]) -> None:
    web, app = tweb
    payable = app.payables.create_payable("xcmg", "factory", FACE, "PO-1")
    approve_as(app, payable.id, "alice")
    approve_as(app, payable.id, "bob")
    root = str(app.ledger.issue("xcmg", payable.id, FACE, MATURITY).result["piece_id"])
    app.ledger.accept("factory", root)
    add_user(app, "factory", "wang.fang")
    csrf = sign_in(web, "wang.fang")
    assert 'id="f-trade_ref"' in web.get(f"/ui/supplier/pieces/{root}").text
    before = table_rows(app, WATCHED)
    missing = web.post(
        f"/ui/supplier/pieces/{root}/transfer", data={"csrf_token": csrf, "to": "steel", "amount": "50,000"}
    )
    assert missing.status_code == 422 and field_error(missing.text, "trade_ref")[0] == "trade_ref_required"  # type: ignore[index]
    unknown = web.post(
        f"/ui/supplier/pieces/{root}/transfer",
        data={"csrf_token": csrf, "to": "steel", "amount": "50,000", "trade_ref": "ab" * 32},
    )
    assert unknown.status_code == 409 and field_error(unknown.text, "trade_ref")[0] == "trade_invoice_not_found"  # type: ignore[index]
    assert table_rows(app, WATCHED) == before
    digest = invoice_digest(app, "factory", "steel", "50000.00")
    sent = web.post(
        f"/ui/supplier/pieces/{root}/transfer",
        data={"csrf_token": csrf, "to": "steel", "amount": "50,000", "trade_ref": digest.upper()},
    )
    assert sent.status_code == 200 and "Sent 50,000 CNY" in sent.text
    assert [p.amount_minor for p in live_pieces(app, "steel")] == [5_000_000]
