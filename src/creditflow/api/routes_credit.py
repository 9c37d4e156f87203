"""Data credit over HTTP: apply for a pure-credit loan (or ask for a holder's credit view) and get the
decision with its reasons in the same response; read a stored decision.

A decline or a referral is an answer, not an error: 200 with ``outcome`` and the reasons. An applicant
applies for itself; the operator and banks may ask about any business.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from creditflow.domain.errors import Forbidden, Unavailable
from creditflow.domain.parties import Role
from creditflow.services.credit import CreditService

from .common import error_responses
from .schemas import AmountMinor, OrgId, RequestBody
from .security import AppDep, Caller, is_overseer, require_role

router = APIRouter(tags=["data credit"])
_W = error_responses(401, 403, 404, 422)


class ApplicationIn(RequestBody):
    org_id: OrgId | None = Field(None, description="the applicant; default: the caller's organisation")
    requested_minor: AmountMinor
    product: Literal["pure_credit", "certificate_financing"] = "pure_credit"


def credit_service(app: Any) -> CreditService:
    service = getattr(app, "credit", None)
    if not isinstance(service, CreditService):
        raise Unavailable("the data-credit service is not configured", code="credit_unavailable")
    return service


def _may_ask(who: Caller, org_id: str) -> None:
    if who.org_id != org_id and who.role != Role.BANK and not is_overseer(who):
        raise Forbidden(
            "a business may apply only for itself (banks and the operator may ask about any)", code="not_allowed"
        )


@router.post("/v1/credit/applications", responses=_W)
def apply(body: ApplicationIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """Decide an application in milliseconds: approve / refer / decline, PD, limit, rate and reasons."""
    org_id = body.org_id or who.org_id
    _may_ask(who, org_id)
    return credit_service(app).decide(org_id, body.requested_minor, body.product).to_json()


@router.post("/v1/credit/sources/{source}/import", responses=_W)
async def import_source(
    source: str, request: Request, app: AppDep, who: Caller, filename: str = "upload.csv"
) -> JSONResponse:
    """Push a data source (store sales, logistics, utilities, social insurance, tax, sentiment, platform
    transactions, firm profiles) as CSV or JSON, the same schema and row rules as `creditflow credit import`.
    The operator (the platform's data integrations) imports; a file with any bad row imports nothing and
    lists every bad row: 422 then, 201 when something was stored, 200 when it was all there already."""
    require_role(who, Role.OPERATOR, what="import credit data")
    data = await request.body()
    report = await anyio.to_thread.run_sync(credit_service(app).import_file, source, data, filename[:200])
    status = 422 if not report.ok else (201 if report.imported else 200)
    return JSONResponse(report.to_json(), status_code=status)


@router.get("/v1/credit/decisions/{decision_id}", responses=_W)
def get_decision(decision_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """A stored decision with its feature snapshot, model version and feature hash."""
    decision = credit_service(app).decision(decision_id)
    _may_ask(who, decision["org_id"])
    return decision
