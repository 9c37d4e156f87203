"""Trade finance over HTTP: confirmation (maker-checker), credit lines, bank products and financing,
settlement accounts, payment and maturity clearing, and the network view.

A declined financing is an answer, not an error: 200 with ``approved: false`` and the reasons.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from creditflow.financing.policy import RATINGS, TENOR_BUCKETS_DAYS
from creditflow.http.common import Cursor, Limit, error_responses
from creditflow.http.schemas import AmountMinor, OrgId, Page, RequestBody
from creditflow.http.security import AppDep, Caller, credential_of, is_overseer, require_role
from creditflow.http.visibility import visible_certificate, visible_payable, visible_piece
from creditflow.identity.access import Principal
from creditflow.identity.roles import UserRole, require_person, require_user_role
from creditflow.kernel.errors import Forbidden
from creditflow.ledger.model.parties import Role

router = APIRouter(tags=["trade finance"])
_W = error_responses(401, 403, 404, 409, 422)
_R = error_responses(401, 403, 404)


class ApprovalIn(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})
    user_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="deprecated: the approver is the caller; if sent it must be the caller (403 approver_mismatch)",
    )


class LimitIn(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"limit_minor": 5_000_000_000}]})
    limit_minor: Annotated[StrictInt, Field(ge=0, le=10**17)]


class RatingIn(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rating": "AA"}]})
    rating: str = Field(description=f"one of {', '.join(RATINGS)}")


class ProductIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "e-certificate discounting",
                    "rates_bps": {"AA": {"30": 320, "90": 350, "180": 380, "365": 420}},
                    "fee_bps": 5,
                    "min_minor": 100_000,
                    "max_minor": 10_000_000_000,
                    "with_recourse": True,
                }
            ]
        },
    )
    name: str = Field(min_length=1, max_length=200)
    rates_bps: dict[str, dict[str, Annotated[StrictInt, Field(ge=0, le=5000)]]] = Field(
        description=f"rating -> tenor bucket in days ({', '.join(map(str, TENOR_BUCKETS_DAYS))}) -> annual rate in bps"
    )
    fee_bps: Annotated[StrictInt, Field(ge=0, le=1000)] = 0
    fee_fixed_minor: Annotated[StrictInt, Field(ge=0)] = 0
    min_minor: AmountMinor = 1
    max_minor: AmountMinor = 10**15
    with_recourse: StrictBool = True


class BlacklistIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"org_id": "shellco", "reason": "forged invoices"}]}
    )
    org_id: OrgId
    reason: str = Field(min_length=1, max_length=200)


class OfferIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"bank": "icbc", "product_id": "prd-1", "amount_minor": 40_000_000}]},
    )
    bank: OrgId
    product_id: str = Field(min_length=1, max_length=64)
    amount_minor: AmountMinor | None = Field(None, description="omit to finance the whole piece")


class FinanceIn(OfferIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"bank": "icbc", "product_id": "prd-1", "amount_minor": 40_000_000},
                {
                    "bank": "icbc",
                    "product_id": "prd-1",
                    "amount_minor": 40_000_000,
                    "expect_disbursement_minor": 39_359_500,
                },
            ]
        },
    )
    expect_disbursement_minor: AmountMinor | None = Field(
        None,
        description="the cash of an offer you accept: if the terms changed since, nothing is signed (409 terms_changed)",
    )


class AccountIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"account_name": "Jingyi Precision Parts", "account_number": "6222020200112233", "bic": "ICBKCNBJ"}
            ]
        },
    )
    # The ISO 20022 rules (lengths included) are the service's, with a stable code per field
    # (`invalid_account_name`, `invalid_account_number`, `invalid_bic`); here only a bound on the input.
    account_name: str = Field(max_length=1000, description="Max140Text: 1-140 characters, no control characters")
    account_number: str = Field(max_length=1000, description="an IBAN, or 1-34 ASCII letters and digits")
    bic: str = Field(max_length=1000, description="ISO 9362: 8 or 11 of A-Z and 0-9")


class AccountOut(BaseModel):
    account_name: str
    account_number: str
    bic: str


class PendingAccountOut(AccountOut):
    requested_ts_ms: int
    effective_ts_ms: int = Field(description="when it takes effect, unless an admin cancels it")
    requested_by: str = Field(description="the user, or `key <id>` for an organisation-wide key")


class AccountStateOut(BaseModel):
    org_id: str
    account: AccountOut | None = Field(description="the account payouts use now")
    pending: PendingAccountOut | None = Field(
        description="a requested change, waiting (financing.account_change_wait_s)"
    )


class HeldPayoutOut(BaseModel):
    piece_id: str
    certificate_id: str
    holder: str
    amount_minor: int
    code: str = Field(description="`no_settlement_account` or `invalid_settlement_account`")
    reason: str
    held_ts_ms: int
    released_message_id: str | None
    released_ts_ms: int | None


class HeldPayoutsOut(BaseModel):
    """A certificate's held payouts (at most one per piece it was cleared with: bounded, so not paged)."""

    certificate_id: str
    payouts: list[HeldPayoutOut]


class PaymentIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount_minor": 100_000_000, "reference": "TR-2026-0901"}]}
    )
    amount_minor: AmountMinor
    reference: str = Field(min_length=1, max_length=140)


class Outcome(BaseModel):
    """A financing decision: approved (with the agreement and the ledger receipt) or declined (reasons)."""

    request_id: str
    approved: bool
    reasons: list[dict[str, str]]
    quote: dict[str, int] | None
    decision_ms: float
    agreement: dict[str, Any] | None
    receipt: dict[str, Any] | None


class ReasonOut(BaseModel):
    code: str
    message: str


class OfferOut(BaseModel):
    """What the bank's policy would answer now: approved or not, every reason to decline, and the quote of
    the terms that would apply (where the product has a rate for them). Nothing is recorded."""

    approved: bool
    reasons: list[ReasonOut]
    quote: dict[str, int] | None


class ProductOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "prd-3f9a1c2b7d4e5f60",
                    "bank": "icbc",
                    "name": "e-certificate discounting",
                    "rates_bps": {"AA": {"30": 320, "90": 350, "180": 380, "365": 420}},
                    "fee_bps": 5,
                    "fee_fixed_minor": 0,
                    "min_minor": 100_000,
                    "max_minor": 10_000_000_000,
                    "with_recourse": True,
                }
            ]
        }
    )
    id: str
    bank: str
    name: str
    rates_bps: dict[str, dict[str, int]] = Field(description="rating -> tenor bucket (days) -> annual rate, bps")
    fee_bps: int
    fee_fixed_minor: int
    min_minor: int
    max_minor: int
    with_recourse: bool


class FinancingRequestOut(BaseModel):
    id: str
    piece_id: str
    holder: str
    bank: str
    product_id: str
    amount_minor: int
    status: str = Field(description="approved or declined")
    reasons: list[ReasonOut] = Field(description="why it was declined (empty when approved)")
    requested_ts_ms: int
    decision_us: int = Field(description="how long the decision took, microseconds")


class AgreementOut(BaseModel):
    id: str
    piece_id: str
    bank_piece_id: str
    certificate_id: str
    seller: str
    bank: str
    core: str
    product_id: str
    face_minor: int
    rate_bps: int
    days: int
    interest_minor: int
    fees_minor: int
    disbursement_minor: int
    with_recourse: bool
    tier: int
    financed_on: dt.date
    financed_ts_ms: int
    agreement_digest: str


class OwedOut(BaseModel):
    certificate_id: str
    issuer: str
    maturity_date: dt.date
    days_overdue: int
    piece_id: str
    holder: str
    owed_minor: int
    penalty_minor: int = Field(description="penalty interest accrued to today (ACT/360)")
    recourse_to: str | None = Field(description="the seller a bank holder has recourse to, if any")


class ExposureOut(BaseModel):
    bank: str
    core: str
    exposure_minor: int = Field(description="live value the bank holds of the core enterprise's certificates")


_LIST_ERRORS = error_responses(401, 422)


def _own_or_overseer(who: Caller, org_id: str) -> None:
    if who.org_id != org_id and not is_overseer(who):
        raise Forbidden("only the organisation itself, the operator or the auditor may see this", code="not_allowed")


@router.post("/v1/payables/{payable_id}/approvals", responses=_W)
def approve_payable(
    payable_id: str,
    request: Request,
    app: AppDep,
    who: Caller,
    body: Annotated[ApprovalIn | None, Body()] = None,
) -> dict[str, Any]:
    """The caller, a person of the debtor holding the approver role (signed in, or with a personal token),
    approves; the `approvals_required`-th distinct approver confirms the payable. An organisation-wide key
    may prepare payables but never approve (403 ``person_required``); the person who entered the payable
    may not approve it (403 ``maker_cannot_approve``); nobody approves twice (409 ``same_approver``)."""
    payable = visible_payable(app, who, payable_id)
    if payable.debtor != who.org_id:
        raise Forbidden("only the debtor confirms its payables", code="not_debtor_user")
    user_id = require_person(who, what="approve payables")
    if body is not None and body.user_id is not None and body.user_id != user_id:
        raise Forbidden(
            "the approver is the person calling: do not name another user", code="approver_mismatch", field="user_id"
        )
    return app.confirmation.approve(payable.id, who, credential=credential_of(request, who))


@router.put("/v1/credit-lines/{core}", responses=_W)
def set_credit_line(core: str, body: LimitIn, app: AppDep, who: Caller) -> dict[str, int]:
    """Set a core enterprise's credit line (operator)."""
    require_role(who, Role.OPERATOR, what="set credit lines")
    app.confirmation.set_credit_line(core, body.limit_minor)
    return app.confirmation.credit_line(core)


@router.get("/v1/credit-lines/{core}", responses=_R)
def get_credit_line(core: str, app: AppDep, who: Caller) -> dict[str, int]:
    """A core enterprise's credit line and how much of it is used (the enterprise itself, operator, auditor)."""
    _own_or_overseer(who, core)
    return app.confirmation.credit_line(core)


@router.put("/v1/ratings/{core}", responses=_W)
def set_rating(core: str, body: RatingIn, app: AppDep, who: Caller) -> dict[str, str]:
    """Record a core enterprise's rating (operator): products price by it."""
    require_role(who, Role.OPERATOR, what="set ratings")
    app.financing.set_rating(core, body.rating)
    return {"core": core, "rating": body.rating}


@router.post("/v1/products", status_code=201, response_model=ProductOut, responses=_W)
def create_product(body: ProductIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """A bank publishes a discounting product."""
    require_role(who, Role.BANK, what="offer financing products")
    rates = {rating: {int(k): v for k, v in buckets.items()} for rating, buckets in body.rates_bps.items()}
    product = app.financing.create_product(
        who.org_id,
        body.name,
        rates,
        fee_bps=body.fee_bps,
        fee_fixed_minor=body.fee_fixed_minor,
        min_minor=body.min_minor,
        max_minor=body.max_minor,
        with_recourse=body.with_recourse,
    )
    return product.to_json()


@router.get("/v1/products", response_model=Page[ProductOut], responses=_LIST_ERRORS)
def list_products(
    app: AppDep,
    who: Caller,
    bank: Annotated[str | None, Query(max_length=64, description="only this bank's products")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Page[ProductOut]:
    """The banks' discounting products, by id: what a holder may ask to be financed with."""
    page = app.financing.products_page(bank, cursor=cursor, limit=limit)
    return Page[ProductOut](
        items=[ProductOut.model_validate(p.to_json()) for p in page.items], next_cursor=page.next_cursor
    )


@router.put("/v1/bank-limits/{core}", responses=_W)
def set_bank_limit(core: str, body: LimitIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """The calling bank's exposure limit to one core enterprise."""
    require_role(who, Role.BANK, what="set bank limits")
    app.financing.set_limit(who.org_id, core, body.limit_minor)
    return {"bank": who.org_id, "core": core, "limit_minor": body.limit_minor}


@router.post("/v1/blacklist", status_code=201, responses=_W, summary="Blacklist an organisation")
def blacklist(body: BlacklistIn, app: AppDep, who: Caller) -> dict[str, str]:
    """The calling bank refuses to finance pieces held by ``org_id`` from now on."""
    require_role(who, Role.BANK, what="keep a blacklist")
    app.financing.blacklist(who.org_id, body.org_id, body.reason)
    return {"bank": who.org_id, "org_id": body.org_id}


@router.post("/v1/pieces/{piece_id}/finance/offer", response_model=OfferOut, responses=_W)
def finance_offer(piece_id: str, body: OfferIn, app: AppDep, who: Caller) -> OfferOut:
    """The bank's offer for all or part of the caller's piece, before committing: the quote (rate, days
    ACT/360, interest, fees, cash) or every reason it would decline. Nothing is signed or recorded."""
    piece = visible_piece(app, who, piece_id)
    decision = app.financing.offer(who.org_id, piece.id, body.bank, body.product_id, body.amount_minor)
    return OfferOut(
        approved=decision.approved,
        reasons=[ReasonOut(**r.to_json()) for r in decision.reasons],
        quote=decision.quote.to_json() if decision.quote else None,
    )


@router.post("/v1/pieces/{piece_id}/finance", response_model=Outcome, responses=_W)
def finance(piece_id: str, body: FinanceIn, app: AppDep, who: Caller) -> Outcome:
    """Ask a bank to finance all or part of the caller's piece; the bank's policy answers at once. With
    ``expect_disbursement_minor`` from an accepted offer, changed terms are refused, not signed."""
    piece = visible_piece(app, who, piece_id)
    outcome = app.financing.request(
        who.org_id,
        piece.id,
        body.bank,
        body.product_id,
        body.amount_minor,
        expect_disbursement_minor=body.expect_disbursement_minor,
    )
    return Outcome.model_validate(outcome.to_json())


@router.get("/v1/financing/requests", response_model=Page[FinancingRequestOut], responses=_LIST_ERRORS)
def financing_requests(
    app: AppDep, who: Caller, limit: Limit = None, cursor: Cursor = None
) -> Page[FinancingRequestOut]:
    """Requests the caller made (a holder) or received (a bank), oldest first, with their decisions."""
    page = app.financing.requests_page(who.org_id, as_bank=who.role == Role.BANK, cursor=cursor, limit=limit)
    return Page[FinancingRequestOut](
        items=[FinancingRequestOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )


@router.get("/v1/financing/agreements", response_model=Page[AgreementOut], responses=_LIST_ERRORS)
def agreements(app: AppDep, who: Caller, limit: Limit = None, cursor: Cursor = None) -> Page[AgreementOut]:
    """Financing agreements, oldest first: a bank's own, a seller's own; every one for operator and auditor."""
    if is_overseer(who):
        page = app.financing.agreements_page(cursor=cursor, limit=limit)
    elif who.role == Role.BANK:
        page = app.financing.agreements_page(bank=who.org_id, cursor=cursor, limit=limit)
    else:
        page = app.financing.agreements_page(seller=who.org_id, cursor=cursor, limit=limit)
    return Page[AgreementOut](items=[AgreementOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor)


def _who(who: Principal) -> str:
    return who.user_id if who.user_id is not None else f"key {who.key_id}"


@router.get("/v1/accounts", response_model=AccountStateOut, responses=_R)
def get_account(app: AppDep, who: Caller) -> AccountStateOut:
    """The caller's settlement account in effect, and a pending change if one waits."""
    return AccountStateOut.model_validate(app.clearing.account_state(who.org_id))


@router.put("/v1/accounts", response_model=AccountStateOut, responses=_W)
def set_account(body: AccountIn, app: AppDep, who: Caller) -> AccountStateOut:
    """The caller's settlement account: where clearing pays it (or, for an issuer, pays from). The first
    takes effect at once; a change waits ``financing.account_change_wait_s`` (``pending``), and the
    organisation's admins are told at once. A person needs the admin role; an organisation-wide key may
    ask (the wait and the notice are what stop a stolen key)."""
    if who.is_person:
        require_user_role(who, UserRole.ADMIN, what="change the settlement account")
    state = app.clearing.set_account(
        who.org_id, body.account_name, body.account_number, body.bic, requested_by=_who(who)
    )
    return AccountStateOut.model_validate(state)


@router.delete("/v1/accounts/pending", response_model=AccountStateOut, responses=_W)
def cancel_account_change(app: AppDep, who: Caller) -> AccountStateOut:
    """Cancel the pending account change: an admin of the organisation, signed in or with a personal
    token (403 ``person_required`` for an organisation-wide key, ``user_role_not_allowed`` without the role)."""
    user = require_user_role(who, UserRole.ADMIN, what="cancel an account change")
    return AccountStateOut.model_validate(app.clearing.cancel_account_change(who.org_id, user))


@router.post("/v1/certificates/{certificate_id}/payment", status_code=201, responses=_W)
def record_payment(certificate_id: str, body: PaymentIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """The issuer records its single payment of the face value."""
    cert = visible_certificate(app, who, certificate_id)
    app.clearing.record_payment(who.org_id, cert.id, body.amount_minor, body.reference)
    return {"certificate_id": cert.id, "amount_minor": body.amount_minor}


@router.post("/v1/certificates/{certificate_id}/clear", responses=_W)
def clear(certificate_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """Clear a paid, matured certificate (issuer or operator): pay every holder, close every piece."""
    cert = visible_certificate(app, who, certificate_id)
    if who.org_id != cert.issuer and who.role != Role.OPERATOR:
        raise Forbidden("only the issuer or the operator runs clearing", code="role_not_allowed")
    result = app.clearing.clear(cert.id)
    return {
        "certificate_id": result.certificate_id,
        "message_id": result.message_id,
        "total_minor": result.total_minor,
        "transfers": result.transfers,
        "held": result.held or [],
        "seq": result.seq,
        "payment_file": f"/v1/certificates/{cert.id}/payment-file" if result.payment_file_present else None,
    }


@router.get("/v1/certificates/{certificate_id}/payouts", response_model=HeldPayoutsOut, responses=_R)
def held_payouts(certificate_id: str, app: AppDep, who: Caller) -> HeldPayoutsOut:
    """Payouts clearing held (no valid account): every one for the issuer, the operator and the auditor;
    a holder its own."""
    cert = visible_certificate(app, who, certificate_id)
    rows = app.clearing.held_payouts(cert.id)
    if not (is_overseer(who) or who.org_id == cert.issuer):
        rows = [r for r in rows if r["holder"] == who.org_id]
    return HeldPayoutsOut(certificate_id=cert.id, payouts=[HeldPayoutOut.model_validate(r) for r in rows])


@router.post("/v1/certificates/{certificate_id}/payouts/release", responses=_W)
def release_payouts(certificate_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """Pay the held payouts whose holders now have a valid account in effect (issuer or operator), in a
    payment file of their own; the rest stay held."""
    cert = visible_certificate(app, who, certificate_id)
    if who.org_id != cert.issuer and who.role != Role.OPERATOR:
        raise Forbidden("only the issuer or the operator releases held payouts", code="role_not_allowed")
    result = app.clearing.release_held(cert.id)
    return {
        "certificate_id": result.certificate_id,
        "message_id": result.message_id,
        "total_minor": result.total_minor,
        "transfers": result.transfers,
        "held": result.still_held,
        "payment_file": f"/v1/certificates/{cert.id}/payment-file?message_id={result.message_id}",
    }


@router.get(
    "/v1/certificates/{certificate_id}/payment-file",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {"schema": {"type": "string"}}}, "description": "pain.001.001.09"},
        **_R,
    },
)
def payment_file(
    certificate_id: str,
    app: AppDep,
    who: Caller,
    message_id: Annotated[
        str | None, Query(max_length=35, description="a release's file (default: clearing's)")
    ] = None,
) -> Response:
    """The ISO 20022 pain.001.001.09 file of a clearing run (or of a release of held payouts): for the
    paying issuer, the operator and the auditor (it lists every creditor's account, which the other
    holders have no business seeing)."""
    cert = visible_certificate(app, who, certificate_id)
    if who.org_id != cert.issuer and not is_overseer(who):
        raise Forbidden("only the issuer, the operator and the auditor get the payment file", code="role_not_allowed")
    return Response(app.clearing.payment_file(cert.id, message_id), media_type="application/xml")


@router.post("/v1/clearing/overdue", responses=_W)
def mark_overdue(app: AppDep, who: Caller) -> dict[str, list[str]]:
    """Mark every unpaid matured certificate overdue (operator)."""
    require_role(who, Role.OPERATOR, what="mark certificates overdue")
    return {"overdue": app.clearing.mark_overdue_due()}


@router.get("/v1/reports/owed", response_model=Page[OwedOut], responses=_LIST_ERRORS, summary="Overdue amounts owed")
def owed(
    app: AppDep,
    who: Caller,
    issuer: Annotated[str | None, Query(max_length=64, description="operator and auditor: one issuer")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Page[OwedOut]:
    """Who is owed what on overdue certificates, with penalty interest and recourse, by certificate and
    piece. A core enterprise sees its own certificates; a holder (or a bank's recourse seller) its rows."""
    if is_overseer(who):
        rows = app.clearing.owed_report(issuer)
    elif who.role == Role.CORE_ENTERPRISE:
        rows = app.clearing.owed_report(who.org_id)
    else:
        rows = [r for r in app.clearing.owed_report(issuer) if who.org_id in (r["holder"], r["recourse_to"])]
    page = app.queries.page_of(
        rows, lambda r: (str(r["certificate_id"]), str(r["piece_id"])), (str, str), cursor=cursor, limit=limit
    )
    return Page[OwedOut](items=[OwedOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/v1/network/{core}/penetration", responses=_R)
def penetration(core: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """How far the core enterprise's credit reaches, tier by tier."""
    _own_or_overseer(who, core)
    return app.network.penetration(core)


@router.get(
    "/v1/network/exposure",
    response_model=Page[ExposureOut],
    responses=_LIST_ERRORS,
    summary="Bank exposure by core enterprise",
)
def exposure(app: AppDep, who: Caller, limit: Limit = None, cursor: Cursor = None) -> Page[ExposureOut]:
    """What each bank holds of each core enterprise, by bank and core (a bank or a core enterprise sees
    its own rows; operator and auditor all)."""
    rows = app.network.exposure()
    if not is_overseer(who):
        rows = [r for r in rows if who.org_id in (r["bank"], r["core"])]
    page = app.queries.page_of(rows, lambda r: (str(r["bank"]), str(r["core"])), (str, str), cursor=cursor, limit=limit)
    return Page[ExposureOut](items=[ExposureOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/v1/network/{core}/what-if-default", responses=_R)
def what_if(core: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """If the core enterprise defaulted: each holder's loss, before and after recourse."""
    _own_or_overseer(who, core)
    return app.network.what_if_default(core)
