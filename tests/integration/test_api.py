"""The HTTP API through FastAPI's TestClient, on SQLite and (with CREDITFLOW_TEST_PG_URL) PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import START_MS, USCC, issue_accepted, onboard
from creditflow.bootstrap import App
from creditflow.http.app import create_app
from creditflow.http.idempotency import request_digest
from creditflow.identity.tables import idempotency_keys
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger.entries import sign_operation
from creditflow.ledger.signing import Signer
from creditflow.ledger.tables import ledger_entries
from creditflow.ledger.verifier import check_consistency_document, check_inclusion_document

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; the project pins httpx (which still works).
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DAY_MS = 86_400_000
PROBLEM = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"] == f"https://creditflow.example/problems/{code}"
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    if field is not None:
        assert body.get("field") == field, body
    return body


def tree_size(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one())


@pytest.fixture
def client(world: App) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as test_client:
        yield test_client


@pytest.fixture
def h(world: App) -> dict[str, dict[str, str]]:
    """Authorization headers of every organisation in the world fixture."""
    return {p.org_id: bearer(world.access.create_key(p.org_id)) for p in world.queries.parties()}


# --- the whole flow -----------------------------------------------------------------------------------


def test_full_flow(app: App) -> None:
    onboard(app, "operator")
    operator = bearer(app.access.create_key("operator"))
    with TestClient(create_app(app)) as client:
        keys: dict[str, dict[str, str]] = {}
        for org_id, role in [
            ("xcmg", "core_enterprise"),
            ("factory", "supplier"),
            ("steel", "supplier"),
            ("auditor", "auditor"),
        ]:
            r = client.post(
                "/v1/organisations",
                json={"org_id": org_id, "name": org_id.title(), "role": role, "uscc": USCC[org_id]},
                headers=operator,
            )
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["org_id"] == org_id and body["role"] == role and body["custody"] == "platform"
            assert body["api_key"].startswith("cf_") and body["receipt"]["op_type"] == "register_party"
            keys[org_id] = bearer(body["api_key"])

        assert client.get("/v1/me", headers=keys["factory"]).json()["org_id"] == "factory"

        r = client.post(
            "/v1/payables",
            json={"creditor": "factory", "amount_minor": 100_000_000, "reference": "PO-1"},
            headers=keys["xcmg"],
        )
        assert r.status_code == 201, r.text
        payable = r.json()
        assert payable["debtor"] == "xcmg" and payable["issued_minor"] == 0
        assert client.get(f"/v1/payables/{payable['id']}", headers=keys["factory"]).status_code == 200

        r = client.post(
            "/v1/certificates",
            json={"payable_id": payable["id"], "face_minor": 100_000_000, "maturity_date": "2026-09-01"},
            headers=keys["xcmg"],
        )
        assert r.status_code == 201, r.text
        issued = r.json()
        cert_id, root = issued["certificate_id"], issued["piece_id"]
        assert issued["result"] == {"certificate_id": cert_id, "piece_id": root}
        assert issued["op_type"] == "issue" and issued["tree_size"] == issued["seq"] + 1

        pending = client.get("/v1/pieces", headers=keys["factory"]).json()
        assert [(p["id"], p["state"]) for p in pending["items"]] == [(root, "pending")]
        assert pending["next_cursor"] is None

        assert client.post(f"/v1/pieces/{root}/accept", headers=keys["factory"]).status_code == 200
        r = client.post(
            f"/v1/pieces/{root}/split", json={"amounts_minor": [60_000_000, 40_000_000]}, headers=keys["factory"]
        )
        assert r.status_code == 200, r.text
        big, small = r.json()["result"]["piece_ids"]

        r = client.post(
            f"/v1/pieces/{big}/transfer", json={"to": "steel", "amount_minor": 30_000_000}, headers=keys["factory"]
        )
        assert r.status_code == 200, r.text
        sent, change = r.json()["result"]["piece_id"], r.json()["result"]["change_piece_id"]
        assert client.post(f"/v1/pieces/{sent}/accept", headers=keys["steel"]).status_code == 200

        chain = client.get(f"/v1/pieces/{sent}/provenance", headers=keys["steel"]).json()["chain"]
        assert [p["id"] for p in chain] == [sent, big, root]
        assert [p["tier"] for p in chain] == [2, 1, 1]
        assert chain[0]["holder"] == "steel" and chain[0]["amount_minor"] == 30_000_000
        events = client.get(f"/v1/pieces/{sent}/history", headers=keys["steel"]).json()["events"]
        assert [e["event"] for e in events] == ["received", "accepted"]

        liability = client.get("/v1/issuers/xcmg/liability", headers=keys["xcmg"]).json()
        assert liability == {"issuer": "xcmg", "outstanding_minor": 100_000_000, "pending_minor": 0, "certificates": 1}
        assert client.get("/v1/issuers/xcmg/liability", headers=keys["auditor"]).status_code == 200
        assert_problem(client.get("/v1/issuers/xcmg/liability", headers=keys["factory"]), 403, "role_not_allowed")

        tiers = client.get("/v1/circulation", headers=keys["xcmg"]).json()
        assert tiers["issuer"] == "xcmg"
        assert [(t["tier"], t["amount_minor"]) for t in tiers["tiers"]] == [(1, 70_000_000), (2, 30_000_000)]
        assert client.get("/v1/circulation", headers=operator).json()["issuer"] is None
        assert_problem(client.get("/v1/circulation", headers=keys["steel"]), 403, "role_not_allowed")

        tree = client.get(f"/v1/certificates/{cert_id}/tree", headers=keys["xcmg"]).json()
        assert {p["id"] for p in tree["pieces"]} == {root, big, small, sent, change}
        assert sum(p["amount_minor"] for p in tree["pieces"] if p["state"] in ("active", "pending")) == 100_000_000
        assert client.get(f"/v1/certificates/{cert_id}/tree", headers=keys["auditor"]).status_code == 200
        assert_problem(client.get(f"/v1/certificates/{cert_id}/tree", headers=keys["steel"]), 403, "role_not_allowed")
        cert = client.get(f"/v1/certificates/{cert_id}", headers=keys["steel"]).json()
        # need to know (issue 13): a holder below the first sees state and maturity, not the face value
        assert cert["state"] == "outstanding" and cert["face_minor"] is None
        assert client.get(f"/v1/certificates/{cert_id}", headers=keys["xcmg"]).json()["face_minor"] == 100_000_000
        listed = client.get("/v1/certificates", headers=keys["xcmg"]).json()
        assert [c["id"] for c in listed["items"]] == [cert_id]

        # The transparency log: public head and consistency, inclusion for the entry's actor.
        head = client.get("/v1/log/tree-head").json()
        assert head["tree_size"] == tree_size(app)
        assert client.get("/healthz").json() == {"status": "ok", "tree_size": head["tree_size"]}
        log_keys = {k: bytes.fromhex(v) for k, v in client.get("/v1/log/keys").json()["log_keys"].items()}
        assert log_keys == app.log_keys
        proof = client.get(f"/v1/log/proofs/inclusion?leaf_index={issued['seq']}", headers=keys["xcmg"]).json()
        summary = check_inclusion_document(proof, log_keys)
        assert summary["operation"]["type"] == "issue" and summary["operation"]["actor"] == "xcmg"
        assert_problem(
            client.get(f"/v1/log/proofs/inclusion?leaf_index={issued['seq']}", headers=keys["steel"]),
            403,
            "not_a_party",
        )
        consistency = client.get(f"/v1/log/proofs/consistency?old_size=2&new_size={head['tree_size']}").json()
        check_consistency_document(consistency, log_keys)

    app.verify()  # the read model the API wrote agrees with a replay of the log


# --- errors ---------------------------------------------------------------------------------------------


def test_unauthenticated_and_api_key_header(client: TestClient, world: App) -> None:
    body = assert_problem(client.get("/v1/me"), 401, "unauthenticated")
    assert "traceback" not in str(body).lower()
    assert client.get("/v1/me").headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.get("/v1/me", headers=bearer("cf_nope_nope")), 401, "unauthenticated")
    assert_problem(client.get("/v1/me", headers={"Authorization": "Basic eDp5"}), 401, "unauthenticated")
    token = world.access.create_key("factory")
    assert client.get("/v1/me", headers={"X-API-Key": token}).json()["org_id"] == "factory"
    world.access.revoke_key(token[3:].split("_", 1)[0])
    assert_problem(client.get("/v1/me", headers={"X-API-Key": token}), 401, "api_key_revoked")
    forged = token[: -len("x")] + ("y" if token[-1] != "y" else "z")  # a revoked key's id, another secret
    assert_problem(client.get("/v1/me", headers={"X-API-Key": forged}), 401, "unauthenticated")


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
    r = client.delete("/healthz")
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"


def test_other_organisations_objects_are_not_found(
    client: TestClient, world: App, h: dict[str, dict[str, str]]
) -> None:
    root = issue_accepted(world)
    piece = world.queries.piece(root)
    payable_id = world.queries.certificate(piece.certificate_id).payable_id
    for path in (f"/v1/pieces/{root}", f"/v1/pieces/{root}/provenance", f"/v1/pieces/{root}/history"):
        assert_problem(client.get(path, headers=h["other"]), 404, "piece_not_found", "piece_id")
    missing = assert_problem(client.get(f"/v1/pieces/{uuid.uuid4()}", headers=h["other"]), 404, "piece_not_found")
    hidden = assert_problem(client.get(f"/v1/pieces/{root}", headers=h["other"]), 404, "piece_not_found")
    assert set(missing) == set(hidden)  # same shape: nothing tells "exists" from "missing"
    assert_problem(
        client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [1, 99_999_999]}, headers=h["other"]),
        404,
        "piece_not_found",
    )
    assert_problem(
        client.post(f"/v1/pieces/{root}/transfer", json={"to": "other", "amount_minor": 1}, headers=h["rival"]),
        404,
        "piece_not_found",
    )
    assert_problem(
        client.get(f"/v1/certificates/{piece.certificate_id}", headers=h["other"]), 404, "certificate_not_found"
    )
    assert_problem(
        client.get(f"/v1/certificates/{piece.certificate_id}/tree", headers=h["rival"]), 404, "certificate_not_found"
    )
    assert_problem(client.get(f"/v1/payables/{payable_id}", headers=h["other"]), 404, "payable_not_found")
    assert_problem(
        client.post(
            "/v1/certificates",
            json={"payable_id": payable_id, "face_minor": 1, "maturity_date": "2026-09-01"},
            headers=h["rival"],
        ),
        404,
        "payable_not_found",
    )
    # ... while operator and auditor see it, and the issuer sees it without being able to move it.
    assert client.get(f"/v1/pieces/{root}", headers=h["auditor"]).status_code == 200
    assert client.get(f"/v1/certificates/{piece.certificate_id}", headers=h["operator"]).status_code == 200
    assert client.get(f"/v1/pieces/{root}", headers=h["xcmg"]).json()["holder"] == "factory"


def test_not_holder_spent_and_split_rules(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    root = issue_accepted(world)
    assert_problem(
        client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [50_000_000, 50_000_000]}, headers=h["xcmg"]),
        403,
        "not_holder",
        "piece_id",
    )
    assert_problem(
        client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [60_000_000, 50_000_000]}, headers=h["factory"]),
        409,
        "split_exceeds_amount",
        "amounts_minor",
    )
    assert_problem(
        client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [1, 2]}, headers=h["factory"]),
        409,
        "split_does_not_add_up",
    )
    ok = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [50_000_000, 50_000_000]}, headers=h["factory"])
    assert ok.status_code == 200
    assert_problem(
        client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [50_000_000, 50_000_000]}, headers=h["factory"]),
        409,
        "piece_already_spent",
        "piece_id",
    )
    child = ok.json()["result"]["piece_ids"][0]
    assert_problem(
        client.post(
            f"/v1/pieces/{child}/transfer", json={"to": "steel", "amount_minor": 50_000_001}, headers=h["factory"]
        ),
        409,
        "transfer_exceeds_amount",
        "amount_minor",
    )
    assert_problem(
        client.post(f"/v1/pieces/{child}/transfer", json={"to": "nobody", "amount_minor": 1}, headers=h["factory"]),
        404,
        "party_not_found",
        "to",
    )


@pytest.mark.parametrize("amount", [-5, 0, 1.5, 2.0, "100", None, True, 10**17 + 1, 10**30])
def test_invalid_amounts_are_422_naming_the_field(
    client: TestClient, world: App, h: dict[str, dict[str, str]], amount: object
) -> None:
    root = issue_accepted(world)
    before = tree_size(world)
    r = client.post(f"/v1/pieces/{root}/transfer", json={"to": "steel", "amount_minor": amount}, headers=h["factory"])
    assert_problem(r, 422, "invalid_amount", "amount_minor")
    r = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [amount, 10]}, headers=h["factory"])
    assert_problem(r, 422, "invalid_amount", "amounts_minor[0]")
    r = client.post(
        "/v1/payables", json={"creditor": "factory", "amount_minor": amount, "reference": "x"}, headers=h["xcmg"]
    )
    assert_problem(r, 422, "invalid_amount", "amount_minor")
    assert tree_size(world) == before  # bad input changes nothing


def test_other_invalid_input(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    root = issue_accepted(world)
    r = client.post(
        f"/v1/pieces/{root}/transfer", json={"to": "steel", "amount_minor": 1, "memo": "x"}, headers=h["factory"]
    )
    assert_problem(r, 422, "invalid_input", "memo")
    r = client.post(f"/v1/pieces/{root}/transfer", json={"amount_minor": 1}, headers=h["factory"])
    body = assert_problem(r, 422, "invalid_input", "to")
    assert body["errors"][0]["field"] == "to"
    r = client.post(
        f"/v1/pieces/{root}/transfer",
        content=b"{not json",
        headers={**h["factory"], "Content-Type": "application/json"},
    )
    assert_problem(r, 422, "invalid_input", "body")
    r = client.post(f"/v1/pieces/{root}/transfer", content=b'{"to": "steel", "amount_minor": 1}', headers=h["factory"])
    assert "Content-Type: application/json" in assert_problem(r, 422, "invalid_input", "body")["detail"]
    r = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [100_000_000]}, headers=h["factory"])
    assert_problem(r, 422, "invalid_input", "amounts_minor")
    r = client.post(
        "/v1/certificates",
        json={"payable_id": "p1", "face_minor": 1, "maturity_date": "next spring"},
        headers=h["xcmg"],
    )
    assert_problem(r, 422, "invalid_input", "maturity_date")
    assert_problem(client.get("/v1/pieces?limit=0", headers=h["factory"]), 422, "invalid_input", "limit")
    assert_problem(client.get("/v1/pieces?limit=abc", headers=h["factory"]), 422, "invalid_input", "limit")
    assert_problem(client.get("/v1/pieces?cursor=garbage", headers=h["factory"]), 422, "invalid_input", "cursor")
    assert_problem(client.get("/v1/log/proofs/consistency?old_size=5&new_size=2"), 422, "invalid_input", "old_size")
    r = client.post(
        "/v1/organisations",
        json={"org_id": "new", "name": "New", "role": "supplier", "uscc": "91320300134780001X"},
        headers=h["operator"],
    )
    assert_problem(r, 422, "invalid_uscc", "uscc")


def test_role_rules(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    root = issue_accepted(world)
    new_org = {"org_id": "new", "name": "New", "role": "supplier", "uscc": make_uscc("91320300134780100")}
    assert_problem(client.post("/v1/organisations", json=new_org, headers=h["xcmg"]), 403, "role_not_allowed")
    assert_problem(
        client.post(
            "/v1/payables", json={"creditor": "steel", "amount_minor": 5, "reference": "r"}, headers=h["factory"]
        ),
        403,
        "role_not_allowed",
    )
    assert_problem(
        client.post(f"/v1/pieces/{root}/freeze", json={"reason": "x"}, headers=h["factory"]), 403, "role_not_allowed"
    )
    assert_problem(client.post("/v1/organisations/xcmg/rotate-key", headers=h["factory"]), 403, "role_not_allowed")
    # The operator freezes; nothing moves the piece until it unfreezes.
    assert (
        client.post(f"/v1/pieces/{root}/freeze", json={"reason": "dispute"}, headers=h["operator"]).status_code == 200
    )
    assert_problem(
        client.post(f"/v1/pieces/{root}/transfer", json={"to": "steel", "amount_minor": 5}, headers=h["factory"]),
        409,
        "piece_frozen",
    )
    r = client.post(f"/v1/pieces/{root}/unfreeze", json={"reason": "settled"}, headers=h["operator"])
    assert r.status_code == 200 and r.json()["result"]["frozen"] is False
    assert (
        client.post(
            f"/v1/pieces/{root}/transfer", json={"to": "steel", "amount_minor": 5}, headers=h["factory"]
        ).status_code
        == 200
    )
    # An organisation rotates its own key and keeps working; a new API key works at once.
    assert client.post("/v1/organisations/factory/rotate-key", headers=h["factory"]).json()["op_type"] == "rotate_key"
    token = client.post("/v1/api-keys", json={"label": "erp"}, headers=h["factory"]).json()["api_key"]
    pieces = client.get("/v1/pieces", headers=bearer(token)).json()["items"]
    assert pieces and all(p["holder"] == "factory" for p in pieces)
    assert_problem(
        client.post("/v1/organisations", json={**new_org, "org_id": "xcmg"}, headers=h["operator"]), 409, "party_exists"
    )


def test_revoke_and_reject(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    payable = client.post(
        "/v1/payables", json={"creditor": "factory", "amount_minor": 500, "reference": "PO-9"}, headers=h["xcmg"]
    ).json()
    issue = {"payable_id": payable["id"], "face_minor": 200, "maturity_date": "2026-09-01"}
    first = client.post("/v1/certificates", json=issue, headers=h["xcmg"]).json()
    assert_problem(
        client.post(f"/v1/certificates/{first['certificate_id']}/revoke", headers=h["factory"]), 403, "not_issuer"
    )
    assert client.post(f"/v1/certificates/{first['certificate_id']}/revoke", headers=h["xcmg"]).status_code == 200
    second = client.post("/v1/certificates", json=issue, headers=h["xcmg"]).json()
    assert client.post(f"/v1/pieces/{second['piece_id']}/reject", headers=h["factory"]).status_code == 200
    assert client.get(f"/v1/certificates/{second['certificate_id']}", headers=h["xcmg"]).json()["state"] == "void"
    assert_problem(
        client.post("/v1/certificates", json={**issue, "face_minor": 501}, headers=h["xcmg"]), 409, "payable_exceeded"
    )


def test_unexpected_error_is_500_without_internals(
    client: TestClient, world: App, h: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = issue_accepted(world)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret connection string postgres://u:p@db")

    monkeypatch.setattr(world.ledger, "split", broken)
    idem = {**h["factory"], "Idempotency-Key": "boom-1"}
    r = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [1, 99_999_999]}, headers=idem)
    body = assert_problem(r, 500, "internal_error")
    assert "secret" not in r.text and "RuntimeError" not in r.text and "field" not in body
    monkeypatch.undo()
    # The failed attempt released its idempotency key: the retry runs.
    r = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [1, 99_999_999]}, headers=idem)
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers


def test_ledger_timeout_keeps_the_idempotency_key(
    client: TestClient, world: App, h: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = issue_accepted(world)

    def slow(*_: object, **__: object) -> None:
        raise TimeoutError()

    monkeypatch.setattr(world.ledger, "split", slow)
    idem = {**h["factory"], "Idempotency-Key": "slow-1"}
    r = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [1, 99_999_999]}, headers=idem)
    assert_problem(r, 503, "ledger_timeout")
    assert r.headers["retry-after"]
    monkeypatch.undo()
    # The operation may still commit, so the key must never run a second time.
    r = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [1, 99_999_999]}, headers=idem)
    assert_problem(r, 409, "idempotency_in_progress")


def test_request_too_large(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    limit = world.settings.request_max_bytes
    big = b'{"reason": "' + b"x" * limit + b'"}'
    headers = {**h["operator"], "Content-Type": "application/json"}
    root = issue_accepted(world)
    assert_problem(client.post(f"/v1/pieces/{root}/freeze", content=big, headers=headers), 413, "request_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    assert_problem(
        client.post(f"/v1/pieces/{root}/freeze", content=chunks(), headers=headers), 413, "request_too_large"
    )
    assert not world.queries.piece(root).frozen


# --- idempotency ------------------------------------------------------------------------------------------


def test_idempotent_replay_and_conflicts(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    root = issue_accepted(world)
    headers = {**h["factory"], "Idempotency-Key": "split-1"}
    first = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [40_000_000, 60_000_000]}, headers=headers)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    size = tree_size(world)
    again = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [40_000_000, 60_000_000]}, headers=headers)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert tree_size(world) == size
    assert_problem(
        client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [50_000_000, 50_000_000]}, headers=headers),
        409,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    # Keys belong to one organisation: the same key elsewhere is a different request.
    other = client.post(
        "/v1/payables",
        json={"creditor": "factory", "amount_minor": 7, "reference": "r"},
        headers={**h["xcmg"], "Idempotency-Key": "split-1"},
    )
    assert other.status_code == 201 and "idempotent-replayed" not in other.headers
    # Refusals are replayed too: they changed nothing and would answer the same.
    child = first.json()["result"]["piece_ids"][0]
    bad = {**h["factory"], "Idempotency-Key": "too-much"}
    one = client.post(f"/v1/pieces/{child}/transfer", json={"to": "steel", "amount_minor": 10**9}, headers=bad)
    assert_problem(one, 409, "transfer_exceeds_amount")
    two = client.post(f"/v1/pieces/{child}/transfer", json={"to": "steel", "amount_minor": 10**9}, headers=bad)
    assert_problem(two, 409, "transfer_exceeds_amount")
    assert two.headers["idempotent-replayed"] == "true" and two.content == one.content
    # Creations replay their 201.
    payable_headers = {**h["xcmg"], "Idempotency-Key": "payable-late"}
    payable = {"creditor": "factory", "amount_minor": 8, "reference": "late"}
    created = client.post("/v1/payables", json=payable, headers=payable_headers)
    replayed = client.post("/v1/payables", json=payable, headers=payable_headers)
    assert created.status_code == replayed.status_code == 201
    assert replayed.json() == created.json() and replayed.headers["idempotent-replayed"] == "true"
    # ... except those that carried a secret (the new organisation's first API key): shown once, never replayed.
    org = {"org_id": "late", "name": "Late", "role": "bank", "uscc": make_uscc("91320300134780101")}
    op_headers = {**h["operator"], "Idempotency-Key": "onboard-late"}
    onboarded = client.post("/v1/organisations", json=org, headers=op_headers)
    assert onboarded.status_code == 201
    again = client.post("/v1/organisations", json=org, headers=op_headers)
    assert_problem(again, 409, "idempotent_secret_not_replayable", "Idempotency-Key")
    assert again.headers["idempotent-replayed"] == "true" and onboarded.json()["api_key"] not in again.text
    # Bad keys.
    assert_problem(
        client.post(f"/v1/pieces/{child}/accept", headers={**h["factory"], "Idempotency-Key": "k" * 201}),
        422,
        "invalid_input",
        "Idempotency-Key",
    )


def test_idempotency_key_in_progress(
    client: TestClient, world: App, h: dict[str, dict[str, str]], clock: ManualClock
) -> None:
    root = issue_accepted(world)
    body = b'{"amounts_minor": [1, 99999999]}'
    path = f"/v1/pieces/{root}/split"
    with world.engine.begin() as conn:
        conn.execute(
            idempotency_keys.insert().values(
                org_id="factory",
                key="busy",
                request_sha256=request_digest("POST", path, b"", body),
                status_code=0,
                response="",
                created_ts_ms=START_MS,
            )
        )
    headers = {**h["factory"], "Idempotency-Key": "busy", "Content-Type": "application/json"}
    assert_problem(client.post(path, content=body, headers=headers), 409, "idempotency_in_progress")
    # A reservation older than the retention period no longer binds.
    clock.advance((world.settings.idempotency_retention_days + 1) * DAY_MS)
    r = client.post(path, content=body, headers=headers)
    assert (r.status_code == 409 and r.json()["code"] == "certificate_matured") or r.status_code == 200


def test_concurrent_duplicates_execute_once(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    root = issue_accepted(world)
    size = tree_size(world)
    headers = {**h["factory"], "Idempotency-Key": f"race-{uuid.uuid4()}"}
    n = 8
    barrier = threading.Barrier(n)
    results: list[Any] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        r = client.post(f"/v1/pieces/{root}/transfer", json={"to": "steel", "amount_minor": 1_000}, headers=headers)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tree_size(world) == size + 1
    ok = [r for r in results if r.status_code == 200]
    busy = [r for r in results if r.status_code == 409]
    assert len(ok) + len(busy) == n and ok
    assert len({r.content for r in ok}) == 1
    assert all(r.json()["code"] == "idempotency_in_progress" for r in busy)
    assert sum("idempotent-replayed" not in r.headers for r in ok) == 1
    assert len(world.queries.pieces_by_holder("steel").items) == 1


# --- self custody -------------------------------------------------------------------------------------------


def test_self_custody_signed_operations(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    signer = Signer.generate("k1")
    r = client.post(
        "/v1/organisations",
        json={
            "org_id": "selfie",
            "name": "Self Custody Parts",
            "role": "supplier",
            "uscc": make_uscc("91320300134780102"),
            "public_key": signer.public_key.hex(),
        },
        headers=h["operator"],
    )
    assert r.status_code == 201 and r.json()["custody"] == "self"
    me = bearer(r.json()["api_key"])
    root = issue_accepted(world, holder="factory")  # something selfie is not party to
    payable = world.payables.create_payable("xcmg", "selfie", 1_000_000, "PO-S")
    piece_id = str(world.ledger.issue("xcmg", payable.id, 1_000_000, dt.date(2026, 9, 1)).result["piece_id"])
    # Platform custody does not exist for selfie.
    assert_problem(client.post(f"/v1/pieces/{piece_id}/accept", headers=me), 404, "no_custody_key")

    def accept_op(actor: str = "selfie", target: str = piece_id) -> dict[str, Any]:
        return {"v": 1, "type": "accept", "op_id": str(uuid.uuid4()), "actor": actor, "piece_id": target}

    forged = sign_operation(accept_op(), [Signer.generate("k1")]).to_json()
    assert_problem(client.post("/v1/operations", json=forged, headers=me), 400, "bad_signature", "sigs")
    tampered = sign_operation(accept_op(), [signer]).to_json()
    tampered["sigs"][0]["sig"] = ("0" if tampered["sigs"][0]["sig"][0] != "0" else "1") + tampered["sigs"][0]["sig"][1:]
    assert_problem(client.post("/v1/operations", json=tampered, headers=me), 400, "bad_signature")
    not_mine = sign_operation(accept_op(actor="factory"), [signer]).to_json()
    assert_problem(client.post("/v1/operations", json=not_mine, headers=me), 403, "not_actor", "op.actor")
    hidden = sign_operation(accept_op(target=root), [signer]).to_json()
    assert_problem(client.post("/v1/operations", json=hidden, headers=me), 404, "piece_not_found")

    signed = sign_operation(accept_op(), [signer]).to_json()
    r = client.post("/v1/operations", json=signed, headers=me)
    assert r.status_code == 200, r.text
    assert r.json()["op_type"] == "accept" and r.json()["result"] == {"piece_id": piece_id}
    assert world.queries.piece(piece_id).state == "active"
    assert_problem(client.post("/v1/operations", json=signed, headers=me), 409, "replayed_operation", "op_id")

    transfer = sign_operation(
        {
            "v": 1,
            "type": "transfer",
            "op_id": str(uuid.uuid4()),
            "actor": "selfie",
            "piece_id": piece_id,
            "to": "steel",
            "amount_minor": 400_000,
            "accept_by_ms": START_MS + DAY_MS,
        },
        [signer],
    ).to_json()
    r = client.post("/v1/operations", json=transfer, headers=me)
    assert r.status_code == 200, r.text
    assert client.get(f"/v1/pieces/{r.json()['result']['piece_id']}", headers=h["steel"]).json()["sender"] == "selfie"
    # Malformed submissions name the field.
    bad = {**signed, "op": {**signed["op"], "op_id": "not-a-uuid"}}
    assert_problem(client.post("/v1/operations", json=bad, headers=me), 422, "invalid_input", "op_id")
    assert_problem(client.post("/v1/operations", json={"op": {}, "sigs": []}, headers=me), 422, "invalid_input", "sigs")


# --- pagination and the directory ---------------------------------------------------------------------------


def test_pagination_has_no_gaps_or_duplicates(client: TestClient, world: App, h: dict[str, dict[str, str]]) -> None:
    root = issue_accepted(world)
    r = client.post(f"/v1/pieces/{root}/split", json={"amounts_minor": [10_000_000] * 10}, headers=h["factory"])
    expected = r.json()["result"]["piece_ids"]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/pieces", params=params, headers=h["factory"]).json()
        assert len(page["items"]) <= 3
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == len(set(seen)) == 10 and set(seen) == set(expected)
    everything = client.get("/v1/pieces", params={"live_only": "false"}, headers=h["factory"]).json()["items"]
    assert {p["id"] for p in everything} == {*expected, root}

    orgs: list[str] = []
    cursor = None
    while True:
        page = client.get(
            "/v1/organisations", params={"limit": 4, **({"cursor": cursor} if cursor else {})}, headers=h["steel"]
        ).json()
        orgs += [o["org_id"] for o in page["items"]]
        assert all(set(o) == {"org_id", "name", "role"} for o in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert orgs == sorted(p.org_id for p in world.queries.parties())


def test_openapi_documents_the_contract(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    transfer = doc["paths"]["/v1/pieces/{piece_id}/transfer"]["post"]
    assert "application/problem+json" in transfer["responses"]["409"]["content"]
    schemas = doc["components"]["schemas"]
    amount = schemas["TransferIn"]["properties"]["amount_minor"]
    assert amount["type"] == "integer" and amount["exclusiveMinimum"] == 0
    assert schemas["TransferIn"]["additionalProperties"] is False
    assert schemas["TransferIn"]["examples"] and schemas["ReceiptOut"]["examples"]
    assert "HTTPValidationError" not in schemas
    assert any(p["name"] == "Idempotency-Key" for p in transfer["parameters"])
    assert doc["paths"]["/v1/me"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
