"""Core-enterprise pages: payables awaiting confirmation (maker-checker by the signed-in users),
certificates issued, liability against the credit line, and the credit's reach (penetration and the
Sankey of value through the tiers)."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_pages_supplier import banner, sign_in_to_account
from web_helpers import add_user, sign_in

from conftest import issue_accepted, table_rows
from creditflow.bootstrap import App
from creditflow.http.pages.core import SANKEY_HOLDERS_PER_TIER, sankey_data
from creditflow.trade.tables import payable_approvals, payables

CORE_PAGES = ("/ui/core", "/ui/core/payables", "/ui/core/certificates", "/ui/core/network")


@pytest.fixture
def li(web: TestClient, world: App) -> str:
    """li.wei of xcmg, signed in; zhang.min of xcmg exists too (the second approver)."""
    add_user(world, "xcmg", "li.wei")
    add_user(world, "xcmg", "zhang.min")
    return sign_in(web, "li.wei")


def test_core_pages_render_for_the_core_enterprise_only(web: TestClient, world: App, li: str) -> None:
    root = issue_accepted(world)
    cert_id = world.queries.piece(root).certificate_id
    payable = world.payables.create_payable("xcmg", "factory", 5_000_000, "PO-9")
    for path in (*CORE_PAGES, f"/ui/core/certificates/{cert_id}"):
        page = web.get(path)
        assert page.status_code == 200, path
    menu = web.get("/ui/core").text
    assert all(f'href="{p}"' in menu for p in CORE_PAGES)
    for org in ("factory", "bank", "auditor", "operator", "rival"):
        add_user(world, org, f"user.{org}")
        web.cookies.clear()
        csrf = sign_in_to_account(web, f"user.{org}")
        for path in (*CORE_PAGES, f"/ui/core/certificates/{cert_id}"):
            page = web.get(path)
            if org == "rival" and path.startswith("/ui/core/certificates/"):
                assert page.status_code == 404, path  # a core enterprise, but not this certificate's issuer
            elif org == "rival":
                assert page.status_code == 200 and "1,000,000.00" not in page.text, path
            else:
                assert page.status_code == 403 and "these pages are for core_enterprise" in page.text, (org, path)
        before = table_rows(world, (payables, payable_approvals))
        refused = web.post(f"/ui/core/payables/{payable.id}/approve", data={"csrf_token": csrf})
        assert refused.status_code == (404 if org == "rival" else 403), org
        assert table_rows(world, (payables, payable_approvals)) == before


def test_maker_checker_approval_by_two_signed_in_users(web: TestClient, world: App, li: str) -> None:
    payable = world.payables.create_payable("xcmg", "factory", 12_345_678, "PO-77")
    listing = web.get("/ui/core/payables").text
    assert f'<tr data-payable="{payable.id}" data-approvals="0">' in listing and "123,456.78" in listing
    watched = (payables, payable_approvals)
    before = table_rows(world, watched)
    for token in ({}, {"csrf_token": "forged"}):
        assert web.post(f"/ui/core/payables/{payable.id}/approve", data=token).status_code == 403
    assert table_rows(world, watched) == before

    first = web.post(f"/ui/core/payables/{payable.id}/approve", data={"csrf_token": li})
    assert first.status_code == 200 and "You approved payable" in first.text and "(1 of 2)" in first.text
    assert f'id="approve-{payable.id}"' not in first.text  # li.wei cannot be the checker too
    assert world.payables.get_payable(payable.id).status == "draft"
    before = table_rows(world, watched)
    again = web.post(f"/ui/core/payables/{payable.id}/approve", data={"csrf_token": li})
    assert again.status_code == 409 and "a different approver must confirm" in (banner(again.text) or "")
    assert table_rows(world, watched) == before

    theirs = world.payables.create_payable("rival", "factory", 1_000, "PO-R")
    before = table_rows(world, watched)
    api = web.get(f"/v1/payables/{theirs.id}")
    assert api.status_code == 404
    page = web.post(f"/ui/core/payables/{theirs.id}/approve", data={"csrf_token": li})
    assert page.status_code == 404 and banner(page.text) == api.json()["detail"]
    assert table_rows(world, watched) == before

    web.cookies.clear()
    zhang = sign_in(web, "zhang.min")
    assert f'id="approve-{payable.id}"' in web.get("/ui/core/payables").text
    second = web.post(f"/ui/core/payables/{payable.id}/approve", data={"csrf_token": zhang})
    assert second.status_code == 200 and f"Payable {payable.id} is confirmed" in second.text
    assert f'data-payable="{payable.id}"' not in second.text  # no longer awaiting confirmation
    assert world.payables.get_payable(payable.id).status == "confirmed"
    with world.engine.connect() as conn:
        approvers = sorted(r.user_id for r in conn.execute(payable_approvals.select()))
    assert approvers == ["li.wei", "zhang.min"]
    # who, when, how: a session each, named by a reference to it (never the session's token)
    recorded = world.confirmation.approvals(payable.id)
    assert [(a["user_id"], a["auth"]) for a in recorded] == [("li.wei", "session"), ("zhang.min", "session")]
    assert all(a["credential"].startswith("session:") and len(a["credential"]) == 24 for a in recorded)
    assert recorded[0]["credential"] != recorded[1]["credential"]


def test_the_page_keeps_the_rules_of_the_api_maker_and_viewer(web: TestClient, world: App, li: str) -> None:
    """The page approves under the API's rules: the payable's maker may not approve it, a viewer posts
    nothing, and neither refusal changes anything."""
    mine = world.payables.create_payable("xcmg", "factory", 1_000_000, "PO-mine", created_by="li.wei")
    listing = web.get("/ui/core/payables").text
    assert f'data-maker="{mine.id}"' in listing and f'id="approve-{mine.id}"' not in listing
    watched = (payables, payable_approvals)
    before = table_rows(world, watched)
    own = web.post(f"/ui/core/payables/{mine.id}/approve", data={"csrf_token": li})
    assert own.status_code == 403 and 'data-code="maker_cannot_approve"' in own.text
    assert table_rows(world, watched) == before

    add_user(world, "xcmg", "qian.viewer", roles=("viewer",))
    web.cookies.clear()
    viewer = sign_in(web, "qian.viewer")
    assert f'id="approve-{mine.id}"' not in web.get("/ui/core/payables").text
    looked = web.post(f"/ui/core/payables/{mine.id}/approve", data={"csrf_token": viewer})
    assert looked.status_code == 403 and 'data-code="user_role_not_allowed"' in looked.text
    api = web.post(f"/v1/payables/{mine.id}/approvals", headers={"X-CSRF-Token": viewer})
    assert (api.status_code, api.json()["code"]) == (403, "user_role_not_allowed")
    assert table_rows(world, watched) == before


def test_liability_against_the_credit_line(web: TestClient, world: App, li: str) -> None:
    page = web.get("/ui/core").text
    assert 'id="no-credit-line"' in page
    root = issue_accepted(world, face_minor=150_000_000)
    world.ledger.transfer("factory", root, "steel", 40_000_000)
    world.confirmation.set_credit_line("xcmg", 600_000_000)
    page = web.get("/ui/core").text
    shown = {k: html.unescape(v) for k, v in re.findall(r'<dd id="([\w-]+)">([^<]+)</dd>', page)}
    assert shown["line-limit"] == "6,000,000.00 CNY"
    assert shown["line-used"] == "1,500,000.00 CNY (25.0 %)"
    assert shown["line-free"] == "4,500,000.00 CNY"
    assert re.search(r'<span class="big" id="outstanding">1,500,000.00</span>', page)
    gauge = re.search(r'<svg id="line-gauge".*?</svg>', page, re.S)
    assert gauge and 'width="120" height="22"' in gauge.group(0)  # 480 px x 25 %
    circulation = re.findall(r'<tr data-tier="(\d)"><td>\d</td><td class="num">([^<]+)</td>', page)
    assert circulation == [("1", "1,100,000.00"), ("2", "400,000.00")]


def test_certificates_issued_are_paginated(web: TestClient, world: App, li: str) -> None:
    roots = [issue_accepted(world, face_minor=(i + 1) * 1_000_000) for i in range(5)]
    ids = [world.queries.piece(r).certificate_id for r in roots]
    seen: list[str] = []
    path = "/ui/core/certificates?limit=2"
    while path:
        page = web.get(path)
        assert page.status_code == 200
        seen += re.findall(r'<tr data-certificate="([^"]+)"', page.text)
        found = re.search(r'<a href="([^"]+)" id="next-page"', page.text)
        path = html.unescape(found.group(1)) if found else ""
    assert seen == ids  # oldest first, each once
    tree = web.get(f"/ui/core/certificates/{ids[0]}")
    assert tree.status_code == 200 and f'<tr data-piece="{roots[0]}" data-tier="1">' in tree.text
    theirs = world.payables.create_payable("rival", "other", 1_000, "PO-R")
    rival_cert = str(world.ledger.issue("rival", theirs.id, 1_000, dt.date(2026, 9, 1)).result["certificate_id"])
    api = web.get(f"/v1/certificates/{rival_cert}")
    page = web.get(f"/ui/core/certificates/{rival_cert}")
    assert page.status_code == api.status_code == 404 and banner(page.text) == api.json()["detail"]
    assert web.get("/ui/core/certificates?cursor=junk").status_code == 422


def sankey_of(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="sankey-data">(.*?)</script>', page, re.S)
    assert found, page
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_credit_reach_sankey_and_penetration(web: TestClient, world: App, li: str) -> None:
    empty = web.get("/ui/core/network").text
    assert 'id="no-flows"' in empty and "sankey-data" not in empty
    root = issue_accepted(world)
    to_steel = world.ledger.transfer("factory", root, "steel", 30_000_000).result
    world.ledger.accept("steel", to_steel["piece_id"])
    world.ledger.transfer("steel", to_steel["piece_id"], "ore", 10_000_000)
    refused = world.ledger.transfer("factory", to_steel["change_piece_id"], "other", 5_000_000).result
    world.ledger.reject("other", refused["piece_id"])  # never arrived: not in the flow
    world.financing.set_rating("xcmg", "AAA")
    world.financing.set_limit("bank", "xcmg", 10**9)
    world.financing.create_product("bank", "discounting", {"AAA": {365: 400}}, product_id="prd-1")
    change = max(world.queries.pieces_by_holder("factory").items, key=lambda p: p.amount_minor)
    outcome = world.financing.request("factory", change.id, "bank", "prd-1", 20_000_000)
    assert outcome.approved

    page = web.get("/ui/core/network")
    assert page.status_code == 200
    assert '<script src="/ui/vendor/plotly.min.js" defer></script>' in page.text
    assert '<script src="/ui/static/core_network.js" defer></script>' in page.text
    assert not re.search(r"<script(?![^>]*(src=|type=\"application/json\"))", page.text)  # no inline script
    data = sankey_of(page.text)
    links = {
        (data["labels"][s], data["labels"][t]): (v, y)
        for s, t, v, y in zip(data["source"], data["target"], data["value_minor"], data["link_yuan"], strict=True)
    }
    assert links == {
        ("Xcmg (issuer)", "Tier 1 · Factory"): (100_000_000, "1,000,000.00"),
        ("Tier 1 · Factory", "Tier 2 · Steel"): (30_000_000, "300,000.00"),
        ("Tier 1 · Factory", "Tier 1 · Bank (bank)"): (20_000_000, "200,000.00"),
        ("Tier 2 · Steel", "Tier 3 · Ore"): (10_000_000, "100,000.00"),
    }
    tiers = re.findall(
        r'<tr data-tier="(\d)">\s*<td>\d</td>\s*<td class="num">([^<]+)</td>\s*<td class="num">(\d+)</td>\s*'
        r'<td class="num">([^<]+)</td>',
        page.text,
    )
    assert tiers == [
        ("1", "1,000,000.00", "1", "200,000.00"),
        ("2", "300,000.00", "1", "0.00"),
        ("3", "100,000.00", "1", "0.00"),
    ]
    assert re.search(r'<dd id="pen-deepest">3</dd>', page.text)
    assert web.get("/ui/static/core_network.js").status_code == 200


def test_sankey_names_the_largest_holders_of_a_tier_and_groups_the_rest() -> None:
    count = SANKEY_HOLDERS_PER_TIER + 3
    nodes = [{"org_id": "core", "tier": 0, "role": "core_enterprise"}]
    nodes += [{"org_id": f"s{i:02d}", "tier": 1, "role": "supplier"} for i in range(count)]
    links = [{"source": 0, "target": i + 1, "amount_minor": (i + 1) * 100} for i in range(count)]
    data = sankey_data({"nodes": nodes, "links": links}, {"core": "Core"}, "core")
    assert data["labels"][0] == "Core (issuer)"
    named = [label for label in data["labels"] if label.startswith("Tier 1 · s")]
    assert len(named) == SANKEY_HOLDERS_PER_TIER and "Tier 1 · s00" not in named  # the smallest are grouped
    rest = data["labels"].index("Tier 1 · 3 other suppliers")
    grouped = [v for t, v in zip(data["target"], data["value_minor"], strict=True) if t == rest]
    assert grouped == [100 + 200 + 300]
    assert sum(data["value_minor"]) == sum(link["amount_minor"] for link in links)  # nothing lost by grouping
