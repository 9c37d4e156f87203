"""Need to know (issue 13, point 5): a holder sees its own pieces, the issuer and the maturity; upstream
holders and amounts are redacted to the tier and a salted commitment; the issuer, the operator and the
auditor see everything; the API and the pages agree. SQLite and PostgreSQL.

The chain: xcmg issues 1,000,000.00 to factory (tier 1), factory pays steel 300,000.00 (tier 2), steel
pays ore 100,000.00 (tier 3).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from web_helpers import add_user, sign_in

from conftest import issue_accepted
from creditflow.bootstrap import App
from creditflow.http.app import create_app
from creditflow.ledger import commitments

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture
def chain(world: App) -> dict[str, str]:
    root = issue_accepted(world, 100_000_000, "factory")
    to_steel = str(world.ledger.transfer("factory", root, "steel", 30_000_000).result["piece_id"])
    world.ledger.accept("steel", to_steel)
    to_ore = str(world.ledger.transfer("steel", to_steel, "ore", 10_000_000).result["piece_id"])
    world.ledger.accept("ore", to_ore)
    cert = world.queries.piece(root).certificate_id
    return {"root": root, "steel": to_steel, "ore": to_ore, "certificate": cert}


@pytest.fixture
def client(world: App) -> Iterator[TestClient]:
    with TestClient(create_app(world), base_url="http://127.0.0.1") as c:
        yield c


def key(app: App, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.access.create_key(org)}"}


def provenance(client: TestClient, app: App, org: str, piece_id: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"/v1/pieces/{piece_id}/provenance", headers=key(app, org))
    assert response.status_code == 200, response.text
    return {p["id"]: p for p in response.json()["chain"]}


def test_a_tier_3_holder_sees_its_own_piece_and_commitments_for_the_rest(
    world: App, client: TestClient, chain: dict[str, str]
) -> None:
    seen = provenance(client, world, "ore", chain["ore"])
    assert list(seen) == [chain["ore"], chain["steel"], chain["root"]]
    own = seen[chain["ore"]]
    assert (own["redacted"], own["holder"], own["sender"], own["amount_minor"]) == (False, "ore", "steel", 10_000_000)
    # the opening of its own piece checks out with the published rule alone
    assert own["commitment"] == commitments.commitment(
        certificate_id=chain["certificate"],
        piece_id=own["id"],
        holder="ore",
        amount_minor=10_000_000,
        salt_hex=own["commitment_salt"],
    )
    for upstream, tier in ((chain["steel"], 2), (chain["root"], 1)):
        p = seen[upstream]
        assert p["redacted"] is True and p["tier"] == tier
        assert (p["holder"], p["sender"], p["amount_minor"], p["commitment_salt"]) == (None, None, None, None)
        assert re.fullmatch(r"[0-9a-f]{64}", p["commitment"])
    body = client.get(f"/v1/pieces/{chain['ore']}/provenance", headers=key(world, "ore")).text
    assert "factory" not in body and "30000000" not in body and "100000000" not in body
    # the certificate: issuer and maturity yes, face value and payable no
    cert = client.get(f"/v1/certificates/{chain['certificate']}", headers=key(world, "ore")).json()
    assert (cert["issuer"], cert["maturity_date"]) == ("xcmg", "2026-09-01")
    assert (cert["face_minor"], cert["payable_id"], cert["payable_digest"]) == (None, None, None)
    # and no way around it: the upstream piece itself, and the whole tree, are refused
    assert client.get(f"/v1/pieces/{chain['root']}", headers=key(world, "ore")).json()["code"] == "piece_not_found"
    tree = client.get(f"/v1/certificates/{chain['certificate']}/tree", headers=key(world, "ore"))
    assert (tree.status_code, tree.json()["code"]) == (403, "role_not_allowed")


def test_a_middle_holder_sees_what_it_sent_but_not_where_its_value_came_from(
    world: App, client: TestClient, chain: dict[str, str]
) -> None:
    seen = provenance(client, world, "steel", chain["ore"])  # steel sent ore's piece
    assert [seen[i]["redacted"] for i in (chain["ore"], chain["steel"], chain["root"])] == [False, False, True]
    cert = client.get(f"/v1/certificates/{chain['certificate']}", headers=key(world, "steel")).json()
    assert cert["face_minor"] is None
    first = client.get(f"/v1/certificates/{chain['certificate']}", headers=key(world, "factory")).json()
    assert first["face_minor"] == 100_000_000  # the first holder's own piece is the face value


@pytest.mark.parametrize("org", ["xcmg", "operator", "auditor"])
def test_the_issuer_the_operator_and_the_auditor_see_everything(
    world: App, client: TestClient, chain: dict[str, str], org: str
) -> None:
    seen = provenance(client, world, org, chain["ore"])
    got = {i: (p["redacted"], p["holder"], p["amount_minor"]) for i, p in seen.items()}
    assert got == {
        chain["ore"]: (False, "ore", 10_000_000),
        chain["steel"]: (False, "steel", 30_000_000),
        chain["root"]: (False, "factory", 100_000_000),
    }
    # they hold the openings of the very commitments the holder was shown
    holder_view = provenance(client, world, "ore", chain["ore"])
    for piece_id, p in seen.items():
        assert p["commitment"] == holder_view[piece_id]["commitment"]
        assert p["commitment"] == commitments.commitment(
            certificate_id=chain["certificate"],
            piece_id=piece_id,
            holder=p["holder"],
            amount_minor=p["amount_minor"],
            salt_hex=p["commitment_salt"],
        )
    cert = client.get(f"/v1/certificates/{chain['certificate']}", headers=key(world, org)).json()
    assert cert["face_minor"] == 100_000_000


def test_the_commitment_cannot_be_opened_by_guessing(world: App, chain: dict[str, str]) -> None:
    """Without the salt, trying every small amount and every holder never reproduces the commitment."""
    root = world.queries.piece(chain["root"])
    commitment, salt = world.queries.commitment(root)
    guesses = {
        commitments.commitment(
            certificate_id=root.certificate_id, piece_id=root.id, holder=h, amount_minor=a, salt_hex=s
        )
        for h in ("factory", "steel", "xcmg")
        for a in (100_000_000, 99_999_999, 30_000_000)
        for s in ("", "00" * 32)
    }
    assert commitment not in guesses
    assert commitment == world.queries.commitment(root)[0]  # stable across reads
    assert salt != world.queries.commitment(world.queries.piece(chain["steel"]))[1]  # one salt per piece


def test_the_page_shows_the_same_redaction_as_the_api(world: App, client: TestClient, chain: dict[str, str]) -> None:
    api = provenance(client, world, "ore", chain["ore"])
    add_user(world, "ore", "zhao.kuang")
    sign_in(client, "zhao.kuang")
    page = client.get(f"/ui/supplier/pieces/{chain['ore']}").text
    rows = re.findall(
        r'<tr data-piece="([^"]+)"( data-redacted="yes")?>.*?<code class="commitment">([0-9a-f]{64})</code>', page, re.S
    )
    on_page = {pid: (bool(flag), commitment) for pid, flag, commitment in rows}
    assert on_page == {pid: (p["redacted"], p["commitment"]) for pid, p in api.items()}
    assert "1,000,000.00" not in page and "300,000.00" not in page
    walk = page[page.index('<svg id="provenance"') : page.index("<h2>History</h2>")]
    assert "Factory" not in walk and "Steel" not in walk  # (the directory of recipients is public)
    assert 'id="cert-face" class="muted" data-redacted="yes"' in page


def test_the_issuer_pages_and_the_log_do_not_leak_to_a_holder(
    world: App, client: TestClient, chain: dict[str, str]
) -> None:
    # the entry that issued the certificate names the face value: only its actor and the overseers get it
    seq = world.queries.piece(chain["root"]).created_seq
    proof = client.get("/v1/log/proofs/inclusion", params={"leaf_index": seq}, headers=key(world, "ore"))
    assert (proof.status_code, proof.json()["code"]) == (403, "not_a_party")
    # the tree heads carry only hashes
    head = client.get("/v1/log/tree-head").json()
    assert "100000000" not in str(head) and "factory" not in str(head)
