"""The authorization matrix: every endpoint x every role x (own side's object, another organisation's
object), each cell allowed or refused as designed.

The world (`api_world`) has two organisations per role. A caller is always the ``own`` side's organisation
of its role; "own" cells aim at the own side's object (the one the caller's role naturally relates to: a
supplier's piece, a bank's financed piece, a core enterprise's certificate, ...), "other" cells at the
same kind of object on the other side, which the caller is not party to.

A cell's expectation, in role order core_enterprise, supplier, bank, auditor, operator:

- ``ok``: let through: 2xx, or a domain answer that is not about who is asking (409, 422, ...; a 404
  whose code the row names as a domain outcome, e.g. ``model_not_found``);
- ``ok-``: as ``ok`` for a list, and none of the other side's object ids is in it;
- ``ok+``: as ``ok`` for a list, and the other side's objects are in it (operator and auditor see all);
- ``403``: refused for the caller's role or position (``role_not_allowed``, ``not_holder``, ...);
- ``404``: refused as designed by not revealing that the object exists (an object-specific
  ``*_not_found``, never the router's ``not_found`` of a mistyped path).

Every operation of the OpenAPI document must have a row: a new endpoint fails this test until its row is
written. Every operation that requires a key is also checked to answer 401 without one.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import authz_keys as keys
import authz_people
import pytest
from api_world import ROLE_ORDER, Side, World, build_world, json_of, uscc_of

from conftest import table_rows
from creditflow.bootstrap import App
from creditflow.http.app import create_app
from creditflow.http.ratelimit import RateLimiter
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger.entries import sign_operation

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

FORBIDDEN_CODES = {"role_not_allowed", "not_holder", "not_recipient", "not_issuer", "not_allowed", "not_actor"}
FORBIDDEN_CODES |= {"not_debtor_user"}
FORBIDDEN_CODES |= {"not_a_party"}  # issue 14: proofs: the entry does not name the caller
FORBIDDEN_CODES |= {"price_book_not_yours"}  # issue 13 H3: a price book is its bank's (the feed the operator's)
FORBIDDEN_CODES |= {"person_required", "user_role_not_allowed", "maker_cannot_approve"}  # issue 13 H1


@dataclass(frozen=True)
class Req:
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Build = Callable[[World, Side, str], Req]  # (world, target side, caller's role) -> request


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    build: Build
    own: str
    other: str
    domain_404: frozenset[str] = frozenset()
    markers: Callable[[Side], list[str]] = Side.object_ids  # what of the other side ok-/ok+ look for
    stream: bool = False  # a response that never ends: cells not asked (the 401 check still is)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def row(
    method: str,
    path: str,
    build: Build,
    own: str,
    other: str | None = None,
    *,
    domain_404: str = "",
    markers: Callable[[Side], list[str]] = Side.object_ids,
    stream: bool = False,
) -> Row:
    """``other`` defaults to ``own``: for endpoints without an object of another organisation to aim at."""
    return Row(method, path, build, own, other or own, frozenset(domain_404.split()), markers, stream)


def fixed(path: str, **kw: Any) -> Build:
    return lambda w, s, role: Req(path, **kw)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# The object a caller of each role relates to on a side: a bank its financed piece and certificate, the
# others the supplier's piece and the certificate it was issued on (the core enterprise as issuer).
def piece_for(s: Side, role: str) -> str:
    return s.bank_piece_id if role == "bank" else s.piece_id


def cert_for(s: Side, role: str) -> str:
    return s.financed_certificate_id if role == "bank" else s.certificate_id


def signed_accept(w: World, s: Side, role: str) -> Req:
    """The caller signs (its key held in custody here) an accept of the side's pending piece."""
    actor = w.own.orgs[role]
    op = {"v": 1, "type": "accept", "op_id": str(uuid.uuid4()), "actor": actor, "piece_id": s.pending_piece_id}
    return Req("/v1/operations", json=sign_operation(op, [w.app.custody.signer(actor)]).to_json())


def new_org() -> dict[str, Any]:
    digits = f"{uuid.uuid4().int % 10**8:08d}"
    return {"org_id": uid("org"), "name": "Newco", "role": "supplier", "uscc": make_uscc(f"913203001{digits}")}


def person(w: World, role: str, which: int = 1) -> dict[str, str]:
    """Issue 13 H4: the headers of the own side's person of ``role`` (the bank's second approver: 2)."""
    token = w.own.credit_token_b if which == 2 and role == "bank" else w.own.credit_tokens[role]
    return {"Authorization": f"Bearer {token}"}


_ADMIN_TOKENS: dict[str, str] = {}


def _as_admin(w: World, s: Side, role: str) -> Req:
    """DELETE /v1/accounts/pending as an admin person of the caller's organisation (a personal token)."""
    org = w.own.orgs[role]
    if org not in _ADMIN_TOKENS:
        from creditflow.identity.roles import UserRole

        user = f"matrix-admin-{org}"[:64]
        w.app.people.add(org, user, "Matrix Admin", roles=(UserRole.ADMIN,))
        _ADMIN_TOKENS[org] = w.app.access.create_key(org, "matrix admin", user_id=user)
    return Req("/v1/accounts/pending", headers={"Authorization": f"Bearer {_ADMIN_TOKENS[org]}"})


def _holder_reads_upstream(w: World, client: TestClient) -> Any:
    """A bank holds a piece it financed: its provenance shows the supplier's piece above it redacted (no
    holder, no amount), and asking for that piece directly answers as for a piece that does not exist."""
    headers = w.own.headers("bank")
    chain = client.get(f"/v1/pieces/{w.own.bank_piece_id}/provenance", headers=headers).json()["chain"]
    upstream = [p for p in chain if p["id"] != w.own.bank_piece_id]
    assert upstream and all(p["redacted"] and p["amount_minor"] is None and p["holder"] is None for p in upstream)
    cert = client.get(f"/v1/certificates/{w.own.financed_certificate_id}", headers=headers).json()
    assert cert["face_minor"] is None
    return client.get(f"/v1/pieces/{upstream[-1]['id']}/provenance", headers=headers)


def _first_tile(w: World, level: int | None) -> str:
    """Issue 14: the path of the first level-0 tile (or its entry bundle) as the world's log holds it now."""
    from creditflow.ledger import tiles

    width = min(w.app.tiles.checkpoint()[0], tiles.TILE_WIDTH)
    return tiles.tile_path(0, 0, width) if level == 0 else tiles.entries_path(0, width)


ALL_OK = "ok ok ok ok ok"
OPERATOR_ONLY = "403 403 403 403 ok"
BANK_ONLY = "403 403 ok 403 403"
CORE_ONLY = "ok 403 403 403 403"
OVERSEERS_SEE = "404 404 404 ok ok"  # another side's object: hidden, but operator and auditor see it
OWN_OR_OVERSEER = "ok 403 403 ok ok"  # about a core enterprise: itself, operator and auditor
IOT_SEE = "404 ok ok ok ok"  # collateral: the supplier owns it, the bank lends on it, overseers see it

MATRIX: list[Row] = [
    # --- public -----------------------------------------------------------------------------------
    row("GET", "/healthz", fixed("/healthz"), ALL_OK),
    row("GET", "/metrics", fixed("/metrics"), ALL_OK),
    row("GET", "/v1/log/keys", fixed("/v1/log/keys"), ALL_OK),
    row("GET", "/v1/log/tree-head", fixed("/v1/log/tree-head"), ALL_OK),
    row("GET", "/v1/log/proofs/consistency", fixed("/v1/log/proofs/consistency", params={"old_size": 1}), ALL_OK),
    row(
        "GET",
        "/v1/log/proofs/inclusion",
        lambda w, s, role: Req("/v1/log/proofs/inclusion", params={"leaf_index": s.registered_seq[role]}),
        ALL_OK,
        "403 403 403 ok ok",  # the entry registers another organisation: only the parties it names and overseers
    ),
    # --- organisations ----------------------------------------------------------------------------
    row("GET", "/v1/me", fixed("/v1/me"), ALL_OK),
    row("GET", "/v1/organisations", fixed("/v1/organisations"), ALL_OK),
    row("POST", "/v1/organisations", lambda w, s, role: Req("/v1/organisations", json=new_org()), OPERATOR_ONLY),
    row("POST", "/v1/api-keys", fixed("/v1/api-keys", json={"label": "matrix"}), ALL_OK),
    row("GET", "/v1/notifications", fixed("/v1/notifications"), ALL_OK),
    # --- pieces and signed operations -------------------------------------------------------------
    row("GET", "/v1/pieces", fixed("/v1/pieces", params={"live_only": False}), ALL_OK, "ok- ok- ok- ok- ok-"),
    row("GET", "/v1/pieces/{piece_id}", lambda w, s, r: Req(f"/v1/pieces/{piece_for(s, r)}"), ALL_OK, OVERSEERS_SEE),
    row(
        "GET",
        "/v1/pieces/{piece_id}/provenance",
        lambda w, s, r: Req(f"/v1/pieces/{piece_for(s, r)}/provenance"),
        ALL_OK,
        OVERSEERS_SEE,
    ),
    row(
        "GET",
        "/v1/pieces/{piece_id}/history",
        lambda w, s, r: Req(f"/v1/pieces/{piece_for(s, r)}/history"),
        ALL_OK,
        OVERSEERS_SEE,
    ),
    # only the recipient accepts or rejects; the issuer and the overseers see the piece but may not
    row("POST", "/v1/operations", signed_accept, "403 ok 404 403 403", "404 404 404 403 403"),
    row(
        "POST",
        "/v1/pieces/{piece_id}/accept",
        lambda w, s, r: Req(f"/v1/pieces/{s.pending_piece_id}/accept"),
        "403 ok 404 403 403",
        "404 404 404 403 403",
    ),
    row(
        "POST",
        "/v1/pieces/{piece_id}/reject",
        lambda w, s, r: Req(f"/v1/pieces/{s.pending_piece_id}/reject"),
        "403 ok 404 403 403",
        "404 404 404 403 403",
    ),
    # holders act on their pieces: the supplier on its own, the bank on the piece it financed
    row(
        "POST",
        "/v1/pieces/{piece_id}/transfer",
        lambda w, s, r: Req(
            f"/v1/pieces/{piece_for(s, r)}/transfer", json={"to": w.other.supplier, "amount_minor": 1_000_000}
        ),
        "403 ok ok 403 403",
        "404 404 404 403 403",
    ),
    row(
        "POST",
        "/v1/pieces/{piece_id}/split",
        lambda w, s, r: Req(f"/v1/pieces/{piece_for(s, r)}/split", json={"amounts_minor": [1_000_000, 2_000_000]}),
        "403 ok ok 403 403",
        "404 404 404 403 403",
    ),
    *(
        row(
            "POST",
            f"/v1/pieces/{{piece_id}}/{action}",
            lambda w, s, r, action=action: Req(
                f"/v1/pieces/{piece_for(s, r)}/{action}",
                json={"bank": s.bank, "product_id": s.product_id, "amount_minor": 1_000_000},
            ),
            "403 ok ok 403 403",
            "404 404 404 403 403",
        )
        for action in ("finance/offer", "finance")
    ),
    row(
        "POST",
        "/v1/pieces/{piece_id}/freeze",
        lambda w, s, r: Req(f"/v1/pieces/{piece_for(s, r)}/freeze", json={"reason": "court order"}),
        OPERATOR_ONLY,
        "404 404 404 403 ok",
    ),
    row(
        "POST",
        "/v1/pieces/{piece_id}/unfreeze",
        lambda w, s, r: Req(f"/v1/pieces/{piece_for(s, r)}/unfreeze", json={"reason": "released"}),
        OPERATOR_ONLY,
        "404 404 404 403 ok",
    ),
    # --- payables and certificates ----------------------------------------------------------------
    row(
        "POST",
        "/v1/payables",
        lambda w, s, r: Req("/v1/payables", json={"creditor": s.supplier, "amount_minor": 1_000, "reference": "PO"}),
        CORE_ONLY,
    ),
    # a payable concerns its debtor and creditor only (not even the overseers)
    row(
        "GET",
        "/v1/payables/{payable_id}",
        lambda w, s, r: Req(f"/v1/payables/{s.payable_id}"),
        "ok ok 404 404 404",
        "404 404 404 404 404",
    ),
    row(
        "POST",
        "/v1/payables/{payable_id}/approvals",
        # in person (the caller's own user, a personal token): an organisation-wide key never approves
        lambda w, s, r: Req(f"/v1/payables/{s.payable_id}/approvals", headers=w.own.person_headers(r)),
        "ok 403 404 404 404",
        "404 404 404 404 404",
    ),
    row(
        "POST",
        "/v1/certificates",
        lambda w, s, r: Req(
            "/v1/certificates", json={"payable_id": s.payable_id, "face_minor": 1_000, "maturity_date": "2026-09-01"}
        ),
        CORE_ONLY,
        "404 403 403 403 403",
    ),
    row("GET", "/v1/certificates", fixed("/v1/certificates"), ALL_OK, "ok- ok- ok- ok- ok-"),
    row(
        "GET",
        "/v1/certificates/{certificate_id}",
        lambda w, s, r: Req(f"/v1/certificates/{cert_for(s, r)}"),
        ALL_OK,
        OVERSEERS_SEE,
    ),
    row(
        "GET",
        "/v1/certificates/{certificate_id}/tree",
        lambda w, s, r: Req(f"/v1/certificates/{cert_for(s, r)}/tree"),
        "ok 403 403 ok ok",
        OVERSEERS_SEE,
    ),
    row(
        "POST",
        "/v1/certificates/{certificate_id}/revoke",
        lambda w, s, r: Req(f"/v1/certificates/{cert_for(s, r)}/revoke"),
        "ok 403 403 403 403",
        "404 404 404 403 403",
    ),
    row(
        "POST",
        "/v1/certificates/{certificate_id}/payment",
        lambda w, s, r: Req(
            f"/v1/certificates/{cert_for(s, r)}/payment", json={"amount_minor": 100_000_000, "reference": "TR-1"}
        ),
        "ok 403 403 403 403",
        "404 404 404 403 403",
    ),
    row(
        "POST",
        "/v1/certificates/{certificate_id}/clear",
        lambda w, s, r: Req(f"/v1/certificates/{cert_for(s, r)}/clear"),
        "ok 403 403 403 ok",
        "404 404 404 403 ok",
    ),
    # the payment file lists every creditor's account: the paying issuer and the overseers only
    row(
        "GET",
        "/v1/certificates/{certificate_id}/payment-file",
        lambda w, s, r: Req(f"/v1/certificates/{cert_for(s, r)}/payment-file"),
        "ok 403 403 ok ok",
        OVERSEERS_SEE,
        domain_404="clearing_not_found",
    ),
    # --- reports ----------------------------------------------------------------------------------
    row(
        "GET",
        "/v1/issuers/{org_id}/liability",
        lambda w, s, r: Req(f"/v1/issuers/{s.core}/liability"),
        OWN_OR_OVERSEER,
        "403 403 403 ok ok",
    ),
    row(
        "GET",
        "/v1/circulation",
        lambda w, s, r: Req("/v1/circulation", params={} if s is w.own else {"issuer": s.core}),
        OWN_OR_OVERSEER,
        "403 403 403 ok ok",
    ),
    row(
        "GET",
        "/v1/reports/owed",
        lambda w, s, r: Req("/v1/reports/owed", params={"issuer": s.core}),
        ALL_OK,
        "ok- ok- ok- ok ok",
    ),
    row(
        "GET",
        "/v1/network/{core}/penetration",
        lambda w, s, r: Req(f"/v1/network/{s.core}/penetration"),
        OWN_OR_OVERSEER,
        "403 403 403 ok ok",
    ),
    row(
        "GET",
        "/v1/network/{core}/what-if-default",
        lambda w, s, r: Req(f"/v1/network/{s.core}/what-if-default"),
        OWN_OR_OVERSEER,
        "403 403 403 ok ok",
    ),
    row(
        "GET",
        "/v1/network/exposure",
        fixed("/v1/network/exposure"),
        ALL_OK,
        "ok- ok- ok- ok+ ok+",
        markers=lambda s: [f'"{s.bank}"', f'"{s.core}"'],
    ),
    # --- trade finance set-up ---------------------------------------------------------------------
    row(
        "POST",
        "/v1/users",
        lambda w, s, r: Req(
            "/v1/users",
            json={"user_id": uid("user"), "name": "U", "roles": ["viewer"]},
            headers=w.own.person_headers(r),  # an admin in person
        ),
        ALL_OK,
    ),
    row(
        "PUT",
        "/v1/credit-lines/{core}",
        lambda w, s, r: Req(f"/v1/credit-lines/{s.core}", json={"limit_minor": 5_000_000_000}),
        OPERATOR_ONLY,
    ),
    row(
        "GET",
        "/v1/credit-lines/{core}",
        lambda w, s, r: Req(f"/v1/credit-lines/{s.core}"),
        OWN_OR_OVERSEER,
        "403 403 403 ok ok",
    ),
    row(
        "PUT", "/v1/ratings/{core}", lambda w, s, r: Req(f"/v1/ratings/{s.core}", json={"rating": "AA"}), OPERATOR_ONLY
    ),
    row(
        "POST",
        "/v1/products",
        fixed("/v1/products", json={"name": "matrix", "rates_bps": {"AA": {"90": 350}}}),
        BANK_ONLY,
    ),
    row("GET", "/v1/products", lambda w, s, r: Req("/v1/products", params={"bank": s.bank}), ALL_OK),
    row(
        "PUT",
        "/v1/bank-limits/{core}",
        lambda w, s, r: Req(f"/v1/bank-limits/{s.core}", json={"limit_minor": 2_000_000_000}),
        BANK_ONLY,
    ),
    row(
        "POST",
        "/v1/blacklist",
        lambda w, s, r: Req("/v1/blacklist", json={"org_id": w.other.supplier, "reason": "matrix"}),
        BANK_ONLY,
    ),
    row("GET", "/v1/financing/requests", fixed("/v1/financing/requests"), ALL_OK, "ok- ok- ok- ok- ok-"),
    row("GET", "/v1/financing/agreements", fixed("/v1/financing/agreements"), ALL_OK, "ok- ok- ok- ok+ ok+"),
    row(
        "PUT",
        "/v1/accounts",
        fixed("/v1/accounts", json={"account_name": "A", "account_number": "6222000011112222", "bic": "ICBKCNBJ"}),
        ALL_OK,
    ),
    row("POST", "/v1/clearing/overdue", fixed("/v1/clearing/overdue"), OPERATOR_ONLY),
    # --- ERP documents: their buyer and seller, and the overseers ---------------------------------
    row(
        "POST",
        "/v1/erp/{kind}/import",
        lambda w, s, r: Req(
            "/v1/erp/po/import",
            content=(
                "po_number,order_date,buyer_uscc,seller_uscc,line_no,item,quantity,unit_price,net\n"
                f"{uid('PO')},2026-02-21,{uscc_of(s.core)},{uscc_of(s.supplier)},1,nut,10,1.00,10.00\n"
            ).encode(),
            headers={"Content-Type": "text/csv"},
        ),
        ALL_OK,  # a file naming others is refused row by row (422), by the same rule for everybody
    ),
    row(
        "GET",
        "/v1/erp/documents/{document_id}",
        lambda w, s, r: Req(f"/v1/erp/documents/{s.po_id}"),
        "ok ok 404 ok ok",
        OVERSEERS_SEE,
    ),
    row(
        "GET",
        "/v1/erp/invoices/{invoice_id}/match",
        lambda w, s, r: Req(f"/v1/erp/invoices/{s.invoice_id}/match"),
        "ok ok 404 ok ok",
        OVERSEERS_SEE,
    ),
    # --- data credit: a business asks for itself; banks it authorised and overseers about it ---------
    row(
        "POST",
        "/v1/credit/applications",
        lambda w, s, r: Req("/v1/credit/applications", json={"org_id": s.supplier, "requested_minor": 3_000_000}),
        "403 ok ok ok ok",
        # issue 13: a bank only about a business that authorised it (the own side's supplier did)
        "403 403 403:credit_authorisation_required ok ok",
        domain_404="model_not_found credit_profile_not_found",
    ),
    row(
        "GET",
        "/v1/credit/decisions/{decision_id}",
        lambda w, s, r: Req(f"/v1/credit/decisions/{s.decision_id}"),
        "404 ok ok ok ok",  # the business; the bank that asked under a live authorisation; overseers
        OVERSEERS_SEE,
    ),
    row(
        "POST",
        "/v1/credit/sources/{source}/import",
        fixed(
            "/v1/credit/sources/logistics/import",
            content=b"org_id,period,shipments,on_time_rate\nshop-9,2026-01,10,0.9\n",
            headers={"Content-Type": "text/csv"},
        ),
        OPERATOR_ONLY,
    ),
    # --- IoT collateral: an asset's owner, the bank it is pledged to, the overseers; a loan's borrower and
    # lender, the overseers. The side's supplier owns a lot pledged to the side's bank. -----------------
    row("POST", "/v1/iot/telemetry", fixed("/v1/iot/telemetry", json={"messages": [{"device_id": "x"}]}), ALL_OK),
    row("GET", "/v1/iot/metrics", fixed("/v1/iot/metrics"), ALL_OK),
    row(
        "POST",
        "/v1/iot/assets",
        lambda w, s, r: Req(
            "/v1/iot/assets",
            json={"asset_id": uid("lot"), "kind": "warehouse_lot", "name": "lot", "commodity": "steel"}
            | {"receipt_no": uid("WR"), "quantity_kg": 1000},
        ),
        "ok ok 403 403 ok",
    ),
    row(
        "GET",
        "/v1/iot/assets",
        fixed("/v1/iot/assets"),
        ALL_OK,
        "ok- ok- ok- ok+ ok+",
        markers=lambda s: [f'"{s.asset_id}"'],
    ),
    row(
        "GET", "/v1/iot/assets/{asset_id}", lambda w, s, r: Req(f"/v1/iot/assets/{s.asset_id}"), IOT_SEE, OVERSEERS_SEE
    ),
    row(
        "POST",
        "/v1/iot/devices",
        lambda w, s, r: Req("/v1/iot/devices", json={"device_id": uid("dev"), "asset_id": s.asset_id, "kind": "scale"}),
        "404 ok 403 403 ok",
        "404 404 404 403 ok",
    ),
    row(
        "GET",
        "/v1/iot/devices",
        fixed("/v1/iot/devices"),
        ALL_OK,
        "ok- ok- ok- ok+ ok+",
        markers=lambda s: [f'"{s.device_id}"'],
    ),
    row(
        "GET",
        "/v1/iot/devices/{device_id}",
        lambda w, s, r: Req(f"/v1/iot/devices/{s.device_id}"),
        IOT_SEE,
        OVERSEERS_SEE,
    ),
    row(
        "POST",
        "/v1/iot/devices/{device_id}/rotate",
        lambda w, s, r: Req(f"/v1/iot/devices/{s.device_id}/rotate"),
        "404 ok 403 403 ok",
        "404 404 404 403 ok",
    ),
    row(
        "POST",
        "/v1/iot/devices/{device_id}/retire",
        lambda w, s, r: Req(f"/v1/iot/devices/{s.device_id}/retire"),
        "404 ok 403 403 ok",
        "404 404 404 403 ok",
    ),
    row(
        "POST",
        "/v1/iot/prices",
        fixed("/v1/iot/prices", json={"commodity": "steel", "price_minor_per_kg": 410}),
        "403 403 ok 403 ok",
    ),
    row(
        "POST",
        "/v1/iot/loans",
        lambda w, s, r: Req(
            "/v1/iot/loans", json={"loan_id": uid("loan"), "borrower": s.supplier, "outstanding_minor": 1_000_000}
        ),
        BANK_ONLY,
    ),
    row(
        "GET",
        "/v1/iot/loans",
        fixed("/v1/iot/loans"),
        ALL_OK,
        "ok- ok- ok- ok+ ok+",
        markers=lambda s: [f'"{s.loan_id}"'],
    ),
    row("GET", "/v1/iot/loans/{loan_id}", lambda w, s, r: Req(f"/v1/iot/loans/{s.loan_id}"), IOT_SEE, OVERSEERS_SEE),
    row(
        "POST",
        "/v1/iot/loans/{loan_id}/pledges",
        lambda w, s, r: Req(f"/v1/iot/loans/{s.loan_id}/pledges", json={"asset_id": s.asset_id, "haircut_bps": 1000}),
        "404 403 ok 403 403",
        "404 404 404 403 403",
    ),
    row(
        "POST",
        "/v1/iot/loans/{loan_id}/repayments",
        lambda w, s, r: Req(f"/v1/iot/loans/{s.loan_id}/repayments", json={"amount_minor": 1_000}),
        "404 403 ok 403 ok",
        "404 404 404 403 ok",
    ),
    row(
        "POST",
        "/v1/iot/assets/{asset_id}/releases",
        lambda w, s, r: Req(f"/v1/iot/assets/{s.asset_id}/releases", json={"quantity_kg": 10}),
        "404 403 ok 403 403",
        "404 404 404 403 403",
    ),
    row(
        "GET",
        "/v1/iot/alarms",
        fixed("/v1/iot/alarms"),
        ALL_OK,
        "ok- ok- ok- ok+ ok+",
        markers=lambda s: [f'"{s.alarm_id}"'],
    ),
    row(
        "POST",
        "/v1/iot/alarms/{alarm_id}/ack",
        lambda w, s, r: Req(f"/v1/iot/alarms/{s.alarm_id}/ack", json={"user": "li.wei"}),
        "404 403 ok 403 ok",
        "404 404 404 403 ok",
    ),
    row(
        "POST",
        "/v1/iot/alarms/{alarm_id}/clear",
        lambda w, s, r: Req(f"/v1/iot/alarms/{s.alarm_id}/clear", json={"user": "li.wei", "note": "checked on site"}),
        "404 403 ok 403 ok",
        "404 404 404 403 ok",
    ),
    # every caller gets its own events (overseers all): a stream never ends, so only its 401 is checked here
    row("GET", "/v1/iot/stream", fixed("/v1/iot/stream"), ALL_OK, stream=True),
    # --- issue 13 H1: rows of roles, users and approvals ---
    # the organisation's users: its admins and its organisation-wide key see them, nobody else's
    row(
        "GET",
        "/v1/users",
        fixed("/v1/users"),
        ALL_OK,
        "ok- ok- ok- ok- ok-",
        markers=lambda s: [f'"{u}"' for u in s.users.values()],
    ),
    # an admin in person changes roles of its own organisation's users; another's answers as absent
    row(
        "PUT",
        "/v1/users/{user_id}/roles",
        lambda w, s, r: Req(
            f"/v1/users/{s.users[r]}/roles",
            json={"roles": ["admin", "approver", "maker"]},
            headers=w.own.person_headers(r),
        ),
        ALL_OK,
        "404 404 404 404 404",
    ),
    # --- end H1 ---
    # --- issue 13 H2: rows of API keys, sessions and sign-in ---
    # the organisation-wide key sees its own organisation's keys, never another's
    row("GET", "/v1/api-keys", fixed("/v1/api-keys"), "ok- ok- ok- ok- ok-", markers=keys.key_ids),
    *(
        row(
            "POST",
            f"/v1/api-keys/{{key_id}}/{action}",
            lambda w, s, r, action=action: Req(f"/v1/api-keys/{keys.fresh_key(w, s.orgs[r])}/{action}"),
            ALL_OK,
            "404 404 404 404 404",  # another organisation's key: as absent (the operator's too)
        )
        for action in ("revoke", "rotate")
    ),
    # an admin (a person: the caller's admin's personal token) of the user's own organisation only
    *(
        row(
            "POST",
            f"/v1/users/{{user_id}}/{action}",
            lambda w, s, r, action=action: Req(
                f"/v1/users/{keys.fresh_user(w, s.orgs[r])}/{action}", headers=keys.as_admin(w, r)
            ),
            ALL_OK,
            "404 404 404 404 404",
        )
        for action in ("password-reset", "unlock")
    ),
    row("POST", "/v1/me/password", lambda w, s, r: Req(**keys.change_password(w, r)), ALL_OK),
    # --- end H2 ---
    # --- issue 13 H3: rows of collateral consent and price books ---
    # Only the borrower decides on a loan or a pledge proposed to it (the world's are accepted already: 409,
    # a domain answer); those who see the loan but are not its borrower are refused, the others told nothing.
    row(
        "POST",
        "/v1/iot/loans/{loan_id}/accept",
        lambda w, s, r: Req(f"/v1/iot/loans/{s.loan_id}/accept"),
        "404 ok 403 403 403",
        "404 404 404 403 403",
    ),
    row(
        "POST",
        "/v1/iot/loans/{loan_id}/refuse",
        lambda w, s, r: Req(f"/v1/iot/loans/{s.loan_id}/refuse"),
        "404 ok 403 403 403",
        "404 404 404 403 403",
    ),
    row(
        "POST",
        "/v1/iot/loans/{loan_id}/pledges/{asset_id}/accept",
        lambda w, s, r: Req(f"/v1/iot/loans/{s.loan_id}/pledges/{s.asset_id}/accept"),
        "404 ok 403 403 403",
        "404 404 404 403 403",
    ),
    row(
        "POST",
        "/v1/iot/loans/{loan_id}/pledges/{asset_id}/refuse",
        lambda w, s, r: Req(f"/v1/iot/loans/{s.loan_id}/pledges/{s.asset_id}/refuse"),
        "404 ok 403 403 403",
        "404 404 404 403 403",
    ),
    # --- end H3 ---
    # --- issue 13 H4: rows of credit authorisations and four eyes ---
    # callers are people here (each role's admin+maker+approver person, `api_world._credit_consent`): granting,
    # revoking and manual decisions need a person; the bank's second approver confirms
    row(
        "POST",
        "/v1/credit/authorisations",
        lambda w, s, r: Req(
            "/v1/credit/authorisations",
            json={"bank_id": s.bank, "purpose_code": "other", "purpose": "matrix", "valid_days": 10},
            headers=person(w, r),
        ),
        "ok ok 403 403 403",
    ),
    row(
        "GET",
        "/v1/credit/authorisations",
        fixed("/v1/credit/authorisations"),
        ALL_OK,
        "ok- ok- ok- ok+ ok+",
        markers=lambda s: [f'"{s.authorisation_id}"'],
    ),
    row(
        "POST",
        "/v1/credit/authorisations/{authorisation_id}/revoke",
        lambda w, s, r: Req(f"/v1/credit/authorisations/{s.spare_authorisation_id}/revoke", headers=person(w, r)),
        "404 ok 404 404 404",
        "404 404 404 404 404",
    ),
    row(
        "GET",
        "/v1/credit/queries",
        fixed("/v1/credit/queries"),
        ALL_OK,
        "ok- ok- ok- ok+ ok+",
        markers=lambda s: [f'"{s.decision_id}"'],
    ),
    row(
        "POST",
        "/v1/credit/decisions/{decision_id}/manual",
        lambda w, s, r: Req(
            f"/v1/credit/decisions/{s.refer_decision_id}/manual",
            json={"action": "decline", "note": "matrix"},
            headers=person(w, r),
        ),
        "404 404 ok 404 404",
        "404 404 404 404 404",
    ),
    row(
        "POST",
        "/v1/credit/decisions/{decision_id}/manual/confirm",
        lambda w, s, r: Req(f"/v1/credit/decisions/{s.refer_decision_id}/manual/confirm", headers=person(w, r, 2)),
        "404 404 ok 404 404",
        "404 404 404 404 404",
    ),
    row(
        "POST",
        "/v1/credit/decisions/{decision_id}/manual/reject",
        lambda w, s, r: Req(f"/v1/credit/decisions/{s.refer_decision_id}/manual/reject", headers=person(w, r, 2)),
        "404 404 ok 404 404",
        "404 404 404 404 404",
    ),
    # --- end H4 ---
    # --- issue 13 H5: rows of secrets and rotation ---
    # --- end H5 ---
    # --- issue 13 H6: rows of accounts, payouts and need to know ---
    row("GET", "/v1/accounts", fixed("/v1/accounts"), ALL_OK),
    # an admin person cancels (each caller its own organisation's admin, by personal token); none pending here
    row("DELETE", "/v1/accounts/pending", _as_admin, ALL_OK, domain_404="account_change_not_found"),
    # held payouts: the issuer and the overseers all of them, a holder its own (here: none are held)
    row(
        "GET",
        "/v1/certificates/{certificate_id}/payouts",
        lambda w, s, r: Req(f"/v1/certificates/{cert_for(s, r)}/payouts"),
        ALL_OK,
        OVERSEERS_SEE,
    ),
    # releasing them is the issuer's or the operator's, as clearing is (409 no_held_payouts: none are held)
    row(
        "POST",
        "/v1/certificates/{certificate_id}/payouts/release",
        lambda w, s, r: Req(f"/v1/certificates/{cert_for(s, r)}/payouts/release"),
        "ok 403 403 403 ok",
        "404 404 404 403 ok",
    ),
    # --- end H6 ---
    # --- issue 14: tiles ---
    # C2SP tlog-tiles: checkpoint and hash tiles are public (hashes only); entry bundles name parties and
    # amounts: only the auditor and the operator (a deviation from tlog-tiles, docs/transparency/tiles.md)
    row("GET", "/log/checkpoint", fixed("/log/checkpoint"), ALL_OK),
    row("GET", "/log/tile/{tile}", lambda w, s, r: Req(f"/log/{_first_tile(w, 0)}"), ALL_OK),
    row("GET", "/log/tile/entries/{bundle}", lambda w, s, r: Req(f"/log/{_first_tile(w, None)}"), "403 403 403 ok ok"),
    # --- end issue 14: tiles ---
    # --- last: rotating keys (the world's signers must not change under the rows above) -------------
    row(
        "POST",
        "/v1/organisations/{org_id}/rotate-key",
        lambda w, s, r: Req(f"/v1/organisations/{s.orgs[r]}/rotate-key"),
        ALL_OK,
        OPERATOR_ONLY,
    ),
]


# --- abuse cases (issue 13, point 7) -------------------------------------------------------------------
# One party trying to harm another through the API. Each case is run on a fresh copy of the world's state
# it touches: ``state`` reads what the attempt must not change, ``attempt`` makes the abusive request(s)
# and returns the final response, which must be refused with ``status`` and the stable ``code``.


# --- issue 13 H5: helpers of its abuse case ---
def _replay_secret_request(w: World, client: TestClient) -> Any:
    """Whoever learns an Idempotency-Key (logs, a proxy) replays the request that created an API key."""
    headers = {**w.own.headers("supplier"), "Idempotency-Key": f"abuse-{uuid.uuid4().hex}"}
    first = client.post("/v1/api-keys", headers=headers, json={"label": "erp"})
    assert first.status_code == 201, first.text
    replay = client.post("/v1/api-keys", headers=headers, json={"label": "erp"})
    assert first.json()["api_key"] not in replay.text
    return replay


def _clear_secrets_in_idempotency_keys(w: World) -> int:
    """How many stored idempotent responses hold a secret in clear (always none)."""
    import json

    from sqlalchemy import select

    from creditflow.identity.tables import idempotency_keys

    with w.app.engine.connect() as conn:
        responses = conn.execute(select(idempotency_keys.c.response)).scalars().all()
    bodies = [json.loads(r) if r.startswith("{") else {} for r in responses]
    return sum(isinstance(b.get("api_key"), str) or isinstance(b.get("secret"), str) for b in bodies)


# --- end H5 helpers ---


@dataclass(frozen=True)
class Abuse:
    name: str
    attempt: Callable[[World, TestClient], Any]  # -> the refused response
    status: int
    code: str
    state: Callable[[World], Any]  # what must be the same before and after the attempt


# --- issue 13 H3: helpers of the collateral abuse cases ---
def _collateral_state(w: World) -> Any:
    """What a bank's unconsented loan and pledge must not change: the other supplier's financing, its lot
    (no pledge), what the own bank sees, and the other side's loan."""
    c = w.app.iot.collateral
    other = w.other
    return (
        c.financing_restriction(other.supplier),
        c.asset(other.asset_id)["loan_id"],
        sorted(a["asset_id"] for a in c.assets_page(viewer=w.own.bank, size=100).items),
        {k: v for k, v in c.loan(other.loan_id).items() if k in ("status", "value_minor", "ltv_bps", "band")},
        w.app.financing.restriction_hook(other.supplier) if w.app.financing.restriction_hook else None,
    )


def _unconsented_pledge(w: World, c: TestClient, *, then: str) -> Any:
    """The own bank books a loan in the other supplier's name and proposes pledging that supplier's lot
    (both recorded as proposals), then tries to see the lot, or to accept the pledge itself."""
    bank = w.own.headers("bank")
    loan_id = uid("loan")
    body = {"loan_id": loan_id, "borrower": w.other.supplier, "outstanding_minor": 900_000_000}
    assert c.post("/v1/iot/loans", json=body, headers=bank).status_code == 201
    pledge = {"asset_id": w.other.asset_id, "haircut_bps": 0}
    r = c.post(f"/v1/iot/loans/{loan_id}/pledges", json=pledge, headers=bank)
    assert r.status_code == 200 and r.json()["assets"] == [] and r.json()["status"] == "proposed", r.text
    if then == "look":
        return c.get(f"/v1/iot/assets/{w.other.asset_id}", headers=bank)
    assert c.post(f"/v1/iot/loans/{loan_id}/accept", headers=bank).status_code == 403
    return c.post(f"/v1/iot/loans/{loan_id}/pledges/{w.other.asset_id}/accept", headers=bank)


def _valuation_of(w: World, s: Side) -> Any:
    loan = w.app.iot.collateral.loan(s.loan_id)
    return {k: loan[k] for k in ("value_minor", "ltv_bps", "band", "prices", "events")}


def _price_into(w: World, c: TestClient, *, book: str) -> Any:
    """The other bank crashes the steel price in its own book (which values only its loans), then tries to
    write it into another's book."""
    rival = w.other.headers("bank")
    w.app.clock.advance(1_000)  # type: ignore[attr-defined]  # a new price time (the matrix set one at this)
    r = c.post("/v1/iot/prices", json={"commodity": "steel", "price_minor_per_kg": 1}, headers=rival)
    assert r.status_code == 200 and r.json()["book"] == w.other.bank, r.text
    assert all(e["lender"] == w.other.bank for e in r.json()["loan_events"])
    return c.post("/v1/iot/prices", json={"commodity": "steel", "price_minor_per_kg": 1, "book": book}, headers=rival)


# --- end H3 helpers ---
def _credit_state() -> tuple[Any, ...]:
    from creditflow.credit.tables import credit_authorisations, credit_decisions, credit_queries
    from creditflow.identity.tables import notifications

    return (credit_decisions, credit_queries, credit_authorisations, notifications)


CREDIT_STATE = _credit_state()


def _effective_manual_decisions(w: World) -> list[Any]:
    from creditflow.credit.tables import credit_manual_decisions

    rows = table_rows(w.app, [credit_manual_decisions])["credit_manual_decisions"]
    return [r for r in rows if "effective" in r]


def _propose_and_confirm_alone(w: World, c: TestClient) -> Any:
    """A referred decision of the own bank, proposed by its person A, then confirmed by A again."""
    from api_world import asked_decision

    decision_id = asked_decision(w.app, w.own, "refer")
    path = f"/v1/credit/decisions/{decision_id}/manual"
    proposed = c.post(path, json={"action": "decline", "note": "abuse"}, headers=person(w, "bank"))
    assert proposed.status_code == 201, proposed.text
    return c.post(f"{path}/confirm", headers=person(w, "bank"))


ABUSE: list[Abuse] = [
    # --- issue 13 H1 ---
    *(Abuse(*case) for case in authz_people.ABUSE_CASES),
    # --- end H1 ---
    # --- issue 13 H2 ---
    Abuse(
        "a revoked key used in a second process",
        keys.revoked_key_in_a_second_process,
        401,
        "api_key_revoked",
        lambda w: keys.live_keys(w, w.own.supplier),
    ),
    Abuse(
        "a bank revokes another organisation's API key",
        keys.bank_revokes_anothers_key,
        404,
        "api_key_not_found",
        lambda w: keys.key_row(w, keys.target_key(w, "other-supplier", w.other.supplier)),
    ),
    Abuse(
        "a person who is not an admin revokes a colleague's personal token",
        keys.maker_revokes_a_colleagues_token,
        404,
        "api_key_not_found",
        lambda w: keys.key_row(w, keys.colleague_token(w)),
    ),
    Abuse(
        "an expired API key",
        keys.expired_key,
        401,
        "api_key_expired",
        lambda w: keys.live_keys(w, w.own.supplier),
    ),
    Abuse(
        "an organisation-wide key resets a person's password",
        keys.org_key_resets_a_password,
        403,
        "person_required",
        lambda w: keys.account_of(w, keys.victim(w, w.own.core)),
    ),
    Abuse(
        "an admin resets the password of another organisation's user",
        keys.admin_resets_anothers_password,
        404,
        "user_not_found",
        lambda w: keys.account_of(w, keys.victim(w, w.other.core)),
    ),
    # --- end H2 ---
    # --- issue 13 H3 ---
    Abuse(
        "a bank pledging an unconsented asset, then looking at it",
        lambda w, c: _unconsented_pledge(w, c, then="look"),
        404,
        "asset_not_found",
        lambda w: _collateral_state(w),
    ),
    Abuse(
        "a bank accepting its own pledge proposal in the borrower's name",
        lambda w, c: _unconsented_pledge(w, c, then="accept"),
        403,
        "not_allowed",
        lambda w: _collateral_state(w),
    ),
    Abuse(
        "a bank changing another bank's valuation",
        lambda w, c: _price_into(w, c, book=w.own.bank),
        403,
        "price_book_not_yours",
        lambda w: _valuation_of(w, w.own),
    ),
    Abuse(
        "a bank writing the operator's price feed",
        lambda w, c: _price_into(w, c, book="operator"),
        403,
        "price_book_not_yours",
        lambda w: (_valuation_of(w, w.own), w.app.iot.collateral.price_history("steel")),
    ),
    # --- end H3 ---
    # --- issue 13 H4 ---
    Abuse(
        "a bank querying credit without authorisation",
        lambda w, c: c.post(
            "/v1/credit/applications",
            json={"org_id": w.other.supplier, "requested_minor": 3_000_000},
            headers=w.own.headers("bank"),
        ),
        403,
        "credit_authorisation_required",
        lambda w: table_rows(w.app, CREDIT_STATE),
    ),
    Abuse(
        "a bank reading a decision it did not ask for",
        lambda w, c: c.get(f"/v1/credit/decisions/{w.other.decision_id}", headers=w.own.headers("bank")),
        404,
        "decision_not_found",
        lambda w: table_rows(w.app, CREDIT_STATE),
    ),
    Abuse(
        "one person confirming their own manual credit decision",
        lambda w, c: _propose_and_confirm_alone(w, c),
        409,
        "four_eyes_same_person",
        lambda w: _effective_manual_decisions(w),  # the proposal is allowed; nothing takes effect
    ),
    # --- end H4 ---
    # --- issue 13 H5 ---
    Abuse(
        "a replay of a request that returned a secret hands the secret out again",
        _replay_secret_request,
        409,
        "idempotent_secret_not_replayable",
        _clear_secrets_in_idempotency_keys,
    ),
    # --- end H5 ---
    # --- issue 13 H6 ---
    Abuse(
        "a holder reading upstream amounts",
        _holder_reads_upstream,
        404,
        "piece_not_found",
        lambda w: [(p.id, p.holder, p.amount_minor) for p in w.app.queries.tree(w.own.financed_certificate_id)],
    ),
    # --- end H6 ---
    # --- issue 14: proofs ---
    Abuse(
        "a bank asking for the proof of another bank's financing by its log index",
        lambda w, c: c.get(
            "/v1/log/proofs/inclusion",
            params={"leaf_index": _created_seq(w, w.other.bank_piece_id)},
            headers=w.own.headers("bank"),
        ),
        403,
        "not_a_party",
        lambda w: w.app.proofs.latest_head().tree_size,
    ),
    Abuse(
        "a bank asking for the proof of another bank's financing by its operation id (answered as unknown)",
        lambda w, c: c.get(
            "/v1/log/proofs/inclusion",
            params={"op_id": _op_id_at(w, _created_seq(w, w.other.bank_piece_id))},
            headers=w.own.headers("bank"),
        ),
        404,
        "entry_not_found",
        lambda w: w.app.proofs.latest_head().tree_size,
    ),
    # --- end issue 14: proofs ---
]


# --- issue 14: proofs ---
def _created_seq(w: World, piece_id: str) -> int:
    """The log index of the entry that created ``piece_id`` (an issue names issuer and recipient; a
    financing names the holder and the bank that co-signed it)."""
    return int(w.app.queries.piece(piece_id).created_seq)


def _op_id_at(w: World, seq: int) -> str:
    from creditflow.ledger.entries import parse_entry

    return str(parse_entry(bytes.fromhex(w.app.proofs.inclusion(seq)["entry"])).signed.op.op_id)


def test_issue14_the_recipient_and_the_co_signer_get_the_proof(matrix_world: tuple[World, TestClient]) -> None:
    """Positive cells the leaf-index row above cannot express: the recipient of an issue (the supplier) and
    the bank that co-signed a financing get that entry's proof, by index and by operation id; a party the
    entry does not name is refused (403 by index, 404 by id as for an unknown id)."""
    world, client = matrix_world
    issue = _created_seq(world, world.own.piece_id)
    finance = _created_seq(world, world.own.bank_piece_id)
    cases = {
        issue: {"core_enterprise": 200, "supplier": 200, "bank": 403, "auditor": 200, "operator": 200},
        finance: {"core_enterprise": 403, "supplier": 200, "bank": 200, "auditor": 200, "operator": 200},
    }
    wrong = []
    for seq, by_role in cases.items():
        op_id = _op_id_at(world, seq)
        for role, status in by_role.items():
            headers = world.own.headers(role)
            by_index = client.get("/v1/log/proofs/inclusion", params={"leaf_index": seq}, headers=headers)
            by_id = client.get("/v1/log/proofs/inclusion", params={"op_id": op_id}, headers=headers)
            want = (status, 200 if status == 200 else 404)
            if (by_index.status_code, by_id.status_code) != want:
                wrong.append(f"entry {seq} as {role}: {by_index.status_code}/{by_id.status_code}, want {want}")
            elif status == 200 and by_id.json()["leaf_index"] != seq:
                wrong.append(f"entry {seq} as {role}: the op id answered another entry")
    assert not wrong, wrong


# --- end issue 14: proofs ---


def _expectations(spec: str) -> dict[str, str]:
    tokens = spec.split()
    assert len(tokens) == len(ROLE_ORDER), spec
    return dict(zip(ROLE_ORDER, tokens, strict=True))


def _verdict(response: Any, row: Row) -> str:
    status = response.status_code
    body = json_of(response)
    code = body.get("code") if isinstance(body, dict) else None
    if status in (401, 403):
        return f"{status}" if status == 401 or code in FORBIDDEN_CODES else f"403:{code}"
    if status == 404:
        if code in row.domain_404:
            return "ok"
        return "404" if code and code != "not_found" and code.endswith("not_found") else f"404:{code}"
    if status >= 500:
        return f"{status}"
    return "ok"


@pytest.fixture(scope="module")
def matrix_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, TestClient]]:
    from conftest import START_MS, make_settings
    from creditflow.bootstrap import build
    from creditflow.kernel.clock import ManualClock

    url = f"sqlite:///{tmp_path_factory.mktemp('authz') / 'cf.db'}"
    app: App
    with build(make_settings(url), clock=ManualClock(START_MS)) as app:
        world = build_world(app)
        with TestClient(create_app(app, rate_limiter=RateLimiter(0, 1))) as client:
            yield world, client


def test_every_endpoint_has_a_row(matrix_world: tuple[World, TestClient]) -> None:
    _, client = matrix_world
    document = client.get("/openapi.json").json()
    operations = {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m in ops}
    rows = [r.label for r in MATRIX]
    assert len(rows) == len(set(rows)), "a row is listed twice"
    missing, stale = sorted(operations - set(rows)), sorted(set(rows) - operations)
    assert not missing, f"endpoints without a row in the authorization matrix: {missing}"
    assert not stale, f"rows for endpoints that no longer exist: {stale}"


def test_without_a_key_every_protected_endpoint_answers_401(matrix_world: tuple[World, TestClient]) -> None:
    world, client = matrix_world
    document = client.get("/openapi.json").json()
    wrong = []
    for r in MATRIX:
        if not document["paths"][r.path][r.method.lower()].get("security"):
            continue
        req = r.build(world, world.own, "supplier")
        response = client.request(r.method, req.path, params=req.params, json=req.json, content=req.content)
        if response.status_code != 401:
            wrong.append(f"{r.label}: {response.status_code}")
    assert not wrong, wrong


def test_the_matrix(matrix_world: tuple[World, TestClient]) -> None:
    world, client = matrix_world
    failures: list[str] = []
    for r in MATRIX:
        if r.stream:
            continue
        for scope, spec in (("own", r.own), ("other", r.other)):
            target = world.side(scope)
            hidden = [i for i in r.markers(world.other) if i]
            for role, expected in _expectations(spec).items():
                req = r.build(world, target, role)
                headers = {**world.own.headers(role), **req.headers}
                response = client.request(
                    r.method, req.path, params=req.params, json=req.json, content=req.content, headers=headers
                )
                got = _verdict(response, r)
                want = expected.rstrip("+-")
                cell = f"{r.label} as {role} on {scope}: expected {expected}, got {got} ({response.status_code})"
                if got != want:
                    failures.append(f"{cell}: {response.text[:200]}")
                elif expected.endswith("-") and any(i in response.text for i in hidden):
                    failures.append(f"{cell}, but it lists the other side's objects")
                elif expected.endswith("+") and not any(i in response.text for i in hidden):
                    failures.append(f"{cell}, but it does not list the other side's objects")
    assert not failures, "\n".join(failures)


# the abuse cases issue 13 names, each a row above (by the start of its name)
NAMED_ABUSES = (
    "one key approving twice",
    "a bank pledging an unconsented asset",
    "a bank querying credit without authorisation",
    "a holder reading upstream amounts",
    "a revoked key used in a second process",
    "a bank changing another bank's valuation",
)


def test_every_named_abuse_case_is_in_the_table() -> None:
    missing = [n for n in NAMED_ABUSES if not any(c.name.startswith(n) for c in ABUSE)]
    assert not missing, missing
    assert len({c.name for c in ABUSE}) == len(ABUSE), "an abuse case is listed twice"


@pytest.mark.parametrize("case", ABUSE, ids=lambda c: c.name)
def test_an_abuse_is_refused_and_changes_nothing(matrix_world: tuple[World, TestClient], case: Abuse) -> None:
    world, client = matrix_world
    before = case.state(world)
    response = case.attempt(world, client)
    body = json_of(response)
    code = body.get("code") if isinstance(body, dict) else None
    assert (response.status_code, code) == (case.status, case.code), response.text[:300]
    assert case.state(world) == before, "the refused attempt changed something"
