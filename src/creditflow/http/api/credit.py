"""Data credit over HTTP: apply for a pure-credit loan (or ask for a holder's credit view) and get the
decision with its reasons in the same response; read a stored decision.

A decline or a referral is an answer, not an error: 200 with ``outcome`` and the reasons. An applicant
applies for itself; the operator and banks may ask about any business.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from creditflow.credit.service import CreditService
from creditflow.http.common import error_responses
from creditflow.http.problems import problem
from creditflow.http.schemas import AmountMinor, OrgId, RequestBody
from creditflow.http.security import AppDep, Caller, require_role
from creditflow.http.visibility import can_ask_credit, may_ask_credit
from creditflow.kernel.errors import NotFound, Unavailable
from creditflow.ledger.model.parties import Role

router = APIRouter(tags=["data credit"])
_W = error_responses(401, 403, 404, 422)


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
    """Decide an application in milliseconds: approve / refer / decline, PD, limit, rate and reasons."""
    org_id = body.org_id or who.org_id
    may_ask_credit(who, org_id)
    return credit_service(app).decide(org_id, body.requested_minor, body.product).to_json()


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
    """A stored decision with its feature snapshot, model version and feature hash: for the applicant, banks,
    the operator and the auditor; to anyone else it does not exist (404, as a missing one)."""
    decision = credit_service(app).decision(decision_id)
    if not can_ask_credit(who, decision["org_id"]):
        raise NotFound(f"decision {decision_id!r} does not exist", code="decision_not_found", field="decision_id")
    return decision
