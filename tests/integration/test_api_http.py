"""The API behind a real uvicorn server on a free 127.0.0.1 port, spoken to over real HTTP with httpx."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from conftest import USCC, onboard
from creditflow.bootstrap import App
from creditflow.http.app import create_app
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger.entries import sign_operation
from creditflow.ledger.signing import Signer


@pytest.fixture
def base_url(app: App) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(app),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "the server thread died while starting"
            assert time.monotonic() < deadline, "the server did not start in 20 s"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
    assert not thread.is_alive(), "the server did not shut down"


def test_flow_over_real_http(app: App, base_url: str) -> None:
    onboard(app, "operator")
    operator = {"Authorization": f"Bearer {app.access.create_key('operator')}"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        r = http.get("/v1/me")
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "unauthenticated"

        keys = {}
        signer = Signer.generate("k1")
        for org_id, role, uscc, public_key in [
            ("xcmg", "core_enterprise", USCC["xcmg"], None),
            ("factory", "supplier", USCC["factory"], None),
            ("selfie", "supplier", make_uscc("91320300134780200"), signer.public_key.hex()),
        ]:
            body = {"org_id": org_id, "name": org_id.title(), "role": role, "uscc": uscc}
            if public_key:
                body["public_key"] = public_key
            r = http.post("/v1/organisations", json=body, headers=operator)
            assert r.status_code == 201, r.text
            keys[org_id] = {"Authorization": f"Bearer {r.json()['api_key']}"}

        payable = http.post(
            "/v1/payables",
            json={"creditor": "factory", "amount_minor": 50_000_000, "reference": "PO-HTTP"},
            headers=keys["xcmg"],
        ).json()
        issued = http.post(
            "/v1/certificates",
            json={"payable_id": payable["id"], "face_minor": 50_000_000, "maturity_date": "2026-09-01"},
            headers={**keys["xcmg"], "Idempotency-Key": "issue-1"},
        )
        assert issued.status_code == 201, issued.text
        root = issued.json()["piece_id"]
        assert http.post(f"/v1/pieces/{root}/accept", headers=keys["factory"]).status_code == 200

        transfer = {"to": "selfie", "amount_minor": 20_000_000}
        idem = {**keys["factory"], "Idempotency-Key": str(uuid.uuid4())}
        first = http.post(f"/v1/pieces/{root}/transfer", json=transfer, headers=idem)
        again = http.post(f"/v1/pieces/{root}/transfer", json=transfer, headers=idem)
        assert first.status_code == again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
        sent = first.json()["result"]["piece_id"]

        # selfie accepts with its own key, signed on its side.
        op = {"v": 1, "type": "accept", "op_id": str(uuid.uuid4()), "actor": "selfie", "piece_id": sent}
        r = http.post("/v1/operations", json=sign_operation(op, [signer]).to_json(), headers=keys["selfie"])
        assert r.status_code == 200, r.text
        chain = http.get(f"/v1/pieces/{sent}/provenance", headers=keys["selfie"]).json()["chain"]
        assert [p["id"] for p in chain] == [sent, root]

        r = http.post(f"/v1/pieces/{root}/transfer", json=transfer, headers=keys["factory"])
        assert r.status_code == 409 and r.json()["code"] == "piece_already_spent"
        r = http.post(
            f"/v1/pieces/{sent}/split", content=b"x" * (app.settings.request_max_bytes + 1), headers=keys["selfie"]
        )
        assert r.status_code == 413 and r.json()["code"] == "request_too_large"

        liability = http.get("/v1/issuers/xcmg/liability", headers=keys["xcmg"]).json()
        assert liability["outstanding_minor"] == 50_000_000
        head = http.get("/v1/log/tree-head").json()
        assert head["tree_size"] == http.get("/healthz").json()["tree_size"] >= 8
