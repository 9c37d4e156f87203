"""Credit consent pages of a business (supplier or core enterprise): authorise a named bank to look up the
business's credit (purpose, scope, expiry), see and revoke those authorisations, and see who looked
(the query log). The bank's side (apply where authorised, manual decisions with four eyes) is in
`creditflow.http.pages.bank`.

Every handler calls the same `CreditService` methods as ``/v1/credit/authorisations`` and
``/v1/credit/queries`` with the signed-in person's `Principal` (granting and revoking need the admin
role: a refused action re-renders the page with its message and changes nothing).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

import creditflow.http.pages.core
import creditflow.http.pages.supplier  # noqa: F401
from creditflow.credit.consent import PURPOSE_CODES, Scope
from creditflow.http.api.credit import credit_service
from creditflow.http.pages.common import NAV, app_of, check_csrf, done, form_error, render, role_pages
from creditflow.identity.sessions import WebUser
from creditflow.kernel.errors import DomainError, InvalidInput
from creditflow.ledger.model.parties import Role

router = APIRouter(include_in_schema=False)
Business = Annotated[WebUser, role_pages(Role.SUPPLIER, Role.CORE_ENTERPRISE)]
PAGE = "/ui/credit/authorisations"

for _role in (Role.SUPPLIER, Role.CORE_ENTERPRISE):
    NAV[_role].append((PAGE, "Credit consent"))


def _page(request: Request, user: WebUser, *, status: int = 200, **context: Any) -> HTMLResponse:
    app = app_of(request)
    service = credit_service(app)
    parties = app.queries.parties()
    return render(
        request,
        "credit/authorisations.html",
        status=status,
        authorisations=service.authorisations(user.principal).items,
        queries=[q for q in service.queries(user.principal).items if q["org_id"] == user.org_id],
        banks=[p for p in parties if p.role == Role.BANK],
        names={p.org_id: p.name for p in parties},
        purpose_codes=PURPOSE_CODES,
        scopes=[s.value for s in Scope],
        max_days=service.settings.credit_authorisation_max_days,
        **context,
    )


@router.get(PAGE)
def authorisations(request: Request, user: Business) -> HTMLResponse:
    return _page(request, user)


@router.post(PAGE, response_model=None)
def grant(
    request: Request,
    user: Business,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    bank_id: Annotated[str, Form(max_length=64)] = "",
    purpose_code: Annotated[str, Form(max_length=32)] = "loan_application",
    purpose: Annotated[str, Form(max_length=2000)] = "",
    scope: Annotated[str, Form(max_length=32)] = "decision",
    valid_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Authorise a bank (``POST /v1/credit/authorisations``)."""
    check_csrf(user, csrf_token)
    form = {"bank_id": bank_id, "purpose_code": purpose_code, "purpose": purpose, "scope": scope}
    form["valid_days"] = valid_days
    try:
        if not valid_days.strip().isdigit():
            raise InvalidInput("valid_days must be a whole number of days", field="valid_days")
        granted = credit_service(app_of(request)).grant_authorisation(
            user.principal,
            bank_id=bank_id,
            purpose_code=purpose_code,
            purpose=purpose,
            scope=scope,
            valid_days=int(valid_days.strip()),
        )
    except DomainError as error:
        return _page(request, user, status=error.status, form=form, **form_error(error))
    return done(PAGE, f"{granted['bank_id']} may look up your credit until the authorisation expires or you revoke it.")


@router.post(PAGE + "/{authorisation_id}/revoke", response_model=None)
def revoke(
    request: Request, authorisation_id: str, user: Business, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Revoke an authorisation now (``POST /v1/credit/authorisations/{id}/revoke``)."""
    check_csrf(user, csrf_token)
    try:
        revoked = credit_service(app_of(request)).revoke_authorisation(user.principal, authorisation_id)
    except DomainError as error:
        return _page(request, user, status=error.status, **form_error(error))
    return done(PAGE, f"Authorisation for {revoked['bank_id']} revoked.")
