"""Supplier pages: my pieces (accept, reject, transfer, split, finance) and the provenance of a piece."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from creditflow.domain.errors import DomainError
from creditflow.domain.parties import Role
from creditflow.services.sessions import WebUser

from ..api.visibility import visible_piece
from .pages import HOME, NAV, app_of, check_csrf, done, form_error, render, role_pages

router = APIRouter(include_in_schema=False)
Supplier = Annotated[WebUser, role_pages(Role.SUPPLIER)]

HOME[Role.SUPPLIER] = "/ui/supplier/pieces"
NAV[Role.SUPPLIER].append(("/ui/supplier/pieces", "My pieces"))


def _pieces_page(request: Request, user: WebUser, *, status: int = 200, **context: object) -> HTMLResponse:
    app = app_of(request)
    page = app.queries.pieces_by_holder(
        user.org_id, live_only=True, cursor=request.query_params.get("cursor"), limit=None
    )
    return render(
        request, "supplier/pieces.html", status=status, pieces=page.items, next_cursor=page.next_cursor, **context
    )


@router.get("/ui/supplier/pieces")
def pieces(request: Request, user: Supplier) -> HTMLResponse:
    return _pieces_page(request, user)


@router.post("/ui/supplier/pieces/{piece_id}/accept", response_model=None)
def accept(
    request: Request, piece_id: str, user: Supplier, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    check_csrf(user, csrf_token)
    app = app_of(request)
    try:
        piece = visible_piece(app, user.principal, piece_id)
        app.ledger.accept(user.org_id, piece.id)
    except DomainError as error:
        return _pieces_page(request, user, status=error.status, **form_error(error))
    return done("/ui/supplier/pieces", f"Accepted piece {piece_id}.")
