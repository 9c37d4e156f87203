"""Payables and certificates: /v1/payables, /v1/certificates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from creditflow.bootstrap import App
from creditflow.http.common import certificate_out, error_responses, piece_out, receipt_out
from creditflow.http.schemas import (
    ApprovalOut,
    CertificateOut,
    IssueIn,
    IssueReceiptOut,
    Page,
    PayableIn,
    PayableOut,
    ReceiptOut,
    TreeOut,
)
from creditflow.http.security import AppDep, Caller, is_overseer, require_role
from creditflow.http.visibility import certificate_view, visible_certificate, visible_payable
from creditflow.identity.access import Principal
from creditflow.identity.roles import UserRole, require_user_role
from creditflow.kernel.errors import Forbidden
from creditflow.ledger.model.parties import Role
from creditflow.trade.payables import Payable

router = APIRouter(tags=["certificates"])


@router.post(
    "/v1/payables",
    status_code=201,
    response_model=PayableOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def create_payable(body: PayableIn, app: AppDep, who: Caller) -> PayableOut:
    """Record the caller's (a core enterprise's) payable to a supplier: what certificates are issued against.
    An organisation-wide key may (it prepares; people approve); a person needs the maker role and is
    recorded as the payable's maker (``created_by``), who may not approve it."""
    require_role(who, Role.CORE_ENTERPRISE, what="record payables")
    if who.is_person:
        require_user_role(who, UserRole.MAKER, what="enter payables")
    payable = app.payables.create_payable(
        who.org_id,
        body.creditor,
        body.amount_minor,
        body.reference,
        currency=body.currency,
        payable_id=body.payable_id,
        created_by=who.user_id,
    )
    return _payable_out(app, who, payable)


@router.get("/v1/payables/{payable_id}", response_model=PayableOut, responses=error_responses(401, 404))
def get_payable(payable_id: str, app: AppDep, who: Caller) -> PayableOut:
    """A payable, for its debtor and its creditor; the debtor also sees its approvals (who, when, how
    they were authenticated)."""
    return _payable_out(app, who, visible_payable(app, who, payable_id))


def _payable_out(app: App, who: Principal, payable: Payable) -> PayableOut:
    out = PayableOut.model_validate(payable, from_attributes=True)
    if who.org_id != payable.debtor:
        return out  # the creditor sees the status, not who inside the debtor approved
    approvals = [ApprovalOut.model_validate(a) for a in app.confirmation.approvals(payable.id)]
    return out.model_copy(update={"approvals": approvals, "approvals_required": app.settings.approvals_required})


@router.post(
    "/v1/certificates",
    status_code=201,
    response_model=IssueReceiptOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def issue_certificate(body: IssueIn, app: AppDep, who: Caller) -> IssueReceiptOut:
    """Issue a certificate on one of the caller's payables (core enterprise, platform custody).
    The first piece goes to the payable's creditor, pending until they accept it."""
    require_role(who, Role.CORE_ENTERPRISE, what="issue certificates")
    payable = visible_payable(app, who, body.payable_id)
    receipt = app.ledger.issue(who.org_id, payable.id, body.face_minor, body.maturity_date, issue_date=body.issue_date)
    return IssueReceiptOut.model_validate(
        {
            **receipt.to_json(),
            "certificate_id": receipt.result["certificate_id"],
            "piece_id": receipt.result["piece_id"],
        }
    )


@router.get(
    "/v1/certificates",
    response_model=Page[CertificateOut],
    responses=error_responses(401, 422),
)
def list_certificates(
    app: AppDep,
    who: Caller,
    limit: Annotated[int | None, Query(description="page size")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[CertificateOut]:
    """The certificates the caller issued, oldest first."""
    page = app.queries.certificates_by_issuer(who.org_id, cursor=cursor, limit=limit)
    return Page[CertificateOut](items=[certificate_out(c) for c in page.items], next_cursor=page.next_cursor)


@router.get(
    "/v1/certificates/{certificate_id}",
    response_model=CertificateOut,
    responses=error_responses(401, 404),
)
def get_certificate(certificate_id: str, app: AppDep, who: Caller) -> CertificateOut:
    """A certificate, for its issuer, operator, auditor, and every organisation that holds or held a piece
    (need to know: the face value and the payable only for the issuer, the first holder and the overseers)."""
    return certificate_view(app, who, visible_certificate(app, who, certificate_id))


@router.get(
    "/v1/certificates/{certificate_id}/tree",
    response_model=TreeOut,
    responses=error_responses(401, 403, 404, 413),
)
def certificate_tree(certificate_id: str, app: AppDep, who: Caller) -> TreeOut:
    """Every piece of a certificate (issuer, operator and auditor only): who holds what, at which tier."""
    cert = visible_certificate(app, who, certificate_id)
    if not (is_overseer(who) or cert.issuer == who.org_id):
        raise Forbidden(
            "only the issuer, the operator and the auditor see a certificate's whole tree",
            code="role_not_allowed",
        )
    return TreeOut(certificate_id=cert.id, pieces=[piece_out(p) for p in app.queries.tree(cert.id)])


@router.post(
    "/v1/certificates/{certificate_id}/revoke",
    response_model=ReceiptOut,
    responses=error_responses(401, 403, 404, 409),
)
def revoke_certificate(certificate_id: str, app: AppDep, who: Caller) -> ReceiptOut:
    """Withdraw a certificate whose first piece is still pending (issuer only)."""
    cert = visible_certificate(app, who, certificate_id)
    return receipt_out(app.ledger.revoke(who.org_id, cert.id))
