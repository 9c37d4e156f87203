"""Data credit over HTTP: apply for a pure-credit loan (or ask for a holder's credit view) and get the
decision with its reasons in the same response; read a stored decision.

A decline or a referral is an answer, not an error: 200 with ``outcome`` and the reasons. An applicant
applies for itself; a bank only under a live authorisation the business granted it (issue 13: 403
``credit_authorisation_required`` otherwise), receiving the raw feature values only where the
authorisation's scope allows; the operator and the auditor may ask about any business. Every look-up by
a party other than the business is in the query log the business reads (``GET /v1/credit/queries``).

A bank's manual decision on a referred application, or its override of an automatic decline, is proposed
by one person and confirmed by a second (four eyes, ``credit.credit_four_eyes``):
``/v1/credit/decisions/{id}/manual`` (propose), ``.../manual/confirm``, ``.../manual/reject``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from creditflow.credit.service import CreditService
from creditflow.http.common import Cursor, Limit, error_responses
from creditflow.http.problems import problem
from creditflow.http.schemas import AmountMinor, OrgId, Page, RequestBody
from creditflow.http.security import AppDep, Caller, require_role
from creditflow.kernel.errors import Unavailable
from creditflow.ledger.model.parties import Role

router = APIRouter(tags=["data credit"])
_W = error_responses(401, 403, 404, 422)
_WC = error_responses(401, 403, 404, 409, 422)


class ApplicationIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"requested_minor": 30_000_000, "product": "pure_credit"}]},
    )
    org_id: OrgId | None = Field(None, description="the applicant; default: the caller's organisation")
    requested_minor: AmountMinor
    product: Literal["pure_credit", "certificate_financing"] = "pure_credit"


class RowErrorOut(BaseModel):
    row: int = Field(description="1-based data row (the header is row 0)")
    field: str
    message: str


class ImportReportOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source": "logistics",
                    "filename": "logistics-2026-02.csv",
                    "rows": 2,
                    "imported": 2,
                    "unchanged": 0,
                    "ok": True,
                    "file_error": None,
                    "errors": [],
                    "import_id": "6f1d2c3b-4a5e-4f60-8b7a-9c0d1e2f3a4b",
                }
            ]
        }
    )
    source: str
    filename: str
    rows: int
    imported: int
    unchanged: int
    ok: bool
    file_error: str | None
    errors: list[RowErrorOut]
    import_id: str | None


_SOURCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The data file: CSV with a header row, or JSON (a list of rows), in the schema of the "
        "source (see `creditflow credit import --help`)",
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "org_id,period,shipments,on_time_rate\nshop-9,2026-01,10,0.9\n",
            },
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object"}},
                "example": [{"org_id": "shop-9", "period": "2026-01", "shipments": 10, "on_time_rate": 0.9}],
            },
        },
    }
}


def credit_service(app: Any) -> CreditService:
    service = getattr(app, "credit", None)
    if not isinstance(service, CreditService):
        raise Unavailable("the data-credit service is not configured", code="credit_unavailable")
    return service


@router.post("/v1/credit/applications", responses=_W, summary="Apply for credit (or ask about a business)")
def apply(body: ApplicationIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """Decide an application in milliseconds: approve / refer / decline, PD, limit, rate and reasons.
    A business applies for itself; a bank about a business that authorised it (403
    ``credit_authorisation_required`` without a live authorisation: nothing is stored), and then sees the
    feature values only with the ``decision_and_features`` scope; the business's admins are notified."""
    org_id = body.org_id or who.org_id
    service = credit_service(app)
    return service.answer(service.decide(org_id, body.requested_minor, body.product, asker=who))


class AuthorisationIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "bank_id": "bank",
                    "purpose_code": "loan_application",
                    "purpose": "working-capital loan application, March 2026",
                    "scope": "decision",
                    "valid_days": 90,
                }
            ]
        },
    )
    bank_id: OrgId = Field(description="the bank authorised to look up the caller's credit")
    purpose_code: Literal["loan_application", "credit_line_review", "financing_request", "monitoring", "other"]
    purpose: str = Field(min_length=1, max_length=500, description="why, in words (shown in the query log)")
    scope: Literal["decision", "decision_and_features"] = Field(
        "decision", description="decision: outcome, score and reasons; decision_and_features: also raw feature values"
    )
    valid_days: int = Field(ge=1, le=3660, description="days until it expires (at most the configured maximum)")


class ManualIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "action": "approve",
                    "granted_minor": 2_000_000,
                    "rate_bps": 650,
                    "note": "orders from two core enterprises on file",
                }
            ]
        },
    )
    action: Literal["approve", "decline"]
    granted_minor: AmountMinor | None = Field(None, description="an approval's amount (fen)")
    rate_bps: int | None = Field(None, ge=1, le=10_000, description="an approval's annual rate")
    note: str = Field(min_length=1, max_length=1000, description="why the bank decides so")


@router.post(
    "/v1/credit/authorisations",
    status_code=201,
    responses=error_responses(401, 403, 404, 422),
    summary="Authorise a bank to look up the caller's credit",
)
def grant_authorisation(body: AuthorisationIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """A business (supplier or core enterprise) names a bank, a purpose, a scope and an expiry. Only a
    person with the admin role of the business (signed in, or a personal token): an organisation-wide key
    403 ``person_required``, a person without the role 403 ``user_role_not_allowed``."""
    return credit_service(app).grant_authorisation(
        who,
        bank_id=body.bank_id,
        purpose_code=body.purpose_code,
        purpose=body.purpose,
        scope=body.scope,
        valid_days=body.valid_days,
    )


@router.get(
    "/v1/credit/authorisations",
    responses=error_responses(401, 422),
    summary="Credit authorisations: given (a business), received (a bank), all (overseers)",
)
def list_authorisations(app: AppDep, who: Caller, limit: Limit = None, cursor: Cursor = None) -> Page[dict[str, Any]]:
    """Newest first, each with its status (live, expired, revoked), who granted and revoked it, when and how."""
    page = credit_service(app).authorisations(who, limit=app.queries.page_size(limit), cursor=cursor)
    return Page[dict[str, Any]](items=page.items, next_cursor=page.next_cursor)


@router.post(
    "/v1/credit/authorisations/{authorisation_id}/revoke",
    responses=_WC,
    summary="Revoke a credit authorisation",
)
def revoke_authorisation(authorisation_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """The business's admin ends it now: the bank's next application or read is refused. Another
    party's authorisation answers 404 ``credit_authorisation_not_found``, as a missing one."""
    return credit_service(app).revoke_authorisation(who, authorisation_id)


@router.get(
    "/v1/credit/queries",
    responses=error_responses(401, 422),
    summary="The credit query log: who looked, when and why",
)
def list_queries(app: AppDep, who: Caller, limit: Limit = None, cursor: Cursor = None) -> Page[dict[str, Any]]:
    """Every application and every read of a decision by a party other than the business: for a
    business the look-ups about it, for a bank (also) its own look-ups, for the overseers all. Each names
    the asker, the person and how it authenticated, the authorisation, its purpose and what was returned."""
    page = credit_service(app).queries(who, limit=app.queries.page_size(limit), cursor=cursor)
    return Page[dict[str, Any]](items=page.items, next_cursor=page.next_cursor)


@router.post(
    "/v1/credit/decisions/{decision_id}/manual",
    status_code=201,
    responses=_WC,
    summary="Propose a bank's manual decision (four eyes)",
)
def propose_manual(decision_id: str, body: ManualIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """On a referred application (approve or decline it) or an automatic decline (override: approve) the
    bank asked for: a person with the maker or approver role proposes; with four eyes on it waits for a
    second person (``.../manual/confirm``), else it is in effect at once. 409
    ``manual_decision_not_allowed`` for an approved application, ``manual_decision_exists`` if one is
    proposed or in effect."""
    return credit_service(app).propose_manual(
        who,
        decision_id,
        action=body.action,
        note=body.note,
        granted_minor=body.granted_minor,
        rate_bps=body.rate_bps,
    )


@router.post(
    "/v1/credit/decisions/{decision_id}/manual/confirm",
    responses=_WC,
    summary="Confirm a proposed manual decision (the second person)",
)
def confirm_manual(decision_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """A different person of the same bank with the approver role: the proposer 409
    ``four_eyes_same_person``, an organisation-wide key 403 ``person_required``."""
    return credit_service(app).confirm_manual(who, decision_id)


@router.post(
    "/v1/credit/decisions/{decision_id}/manual/reject",
    responses=_WC,
    summary="Reject (or, as its proposer, withdraw) a proposed manual decision",
)
def reject_manual(decision_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """An approver of the bank, or the proposer withdrawing it; a new proposal may follow."""
    return credit_service(app).reject_manual(who, decision_id)


@router.post(
    "/v1/credit/sources/{source}/import",
    status_code=201,
    response_model=ImportReportOut,
    responses={200: {"model": ImportReportOut, "description": "every row was there already: nothing changed"}, **_W},
    openapi_extra=_SOURCE_BODY,
    summary="Import a credit data source",
)
async def import_source(
    source: str,
    request: Request,
    app: AppDep,
    who: Caller,
    filename: Annotated[str, Query(max_length=200, description="name of the file, for the report")] = "upload.csv",
) -> Response:
    """Push a data source (store sales, logistics, utilities, social insurance, tax, sentiment, platform
    transactions, firm profiles) as CSV or JSON, the same schema and row rules as `creditflow credit import`.
    The operator (the platform's data integrations) imports; a file with any bad row imports nothing and
    lists every bad row: 422 problem+json then (``invalid_file``, or ``rows_rejected`` with ``errors`` and
    the ``report``), 201 when something was stored, 200 when it was all there already."""
    require_role(who, Role.OPERATOR, what="import credit data")
    data = await request.body()
    report = await anyio.to_thread.run_sync(credit_service(app).import_file, source, data, filename)
    body = report.to_json()
    if report.ok and report.rows == 0:  # an empty file, or a header alone: nothing was meant to be sent
        return problem(
            422, "invalid_file", "the file has no data rows", instance=request.url.path, field="body", errors=[]
        )
    if report.ok:
        return JSONResponse(body, status_code=201 if report.imported else 200)
    if report.file_error is not None:
        return problem(
            422, "invalid_file", report.file_error, instance=request.url.path, field="body", errors=[], report=body
        )
    first = body["errors"][0]
    return problem(
        422,
        "rows_rejected",
        f"nothing was imported: {len(body['errors'])} bad rows (first: row {first['row']}, "
        f"{first['field']}: {first['message']})",
        instance=request.url.path,
        field=first["field"],
        errors=body["errors"],
        report=body,
    )


@router.get("/v1/credit/decisions/{decision_id}", responses=_W, summary="A stored credit decision")
def get_decision(decision_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """A stored decision with its model version, feature hash and manual-decision state: for the applicant
    (whole), the operator and the auditor (whole, logged), and the bank that asked while the business's
    authorisation is live (shaped by its scope, logged); to anyone else it does not exist (404)."""
    return credit_service(app).decision_for(who, decision_id)
