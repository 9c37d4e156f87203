"""Supplier pages: my pieces (accept, reject, transfer, split, finance), the provenance and history of a
piece, my financing requests with the bank's quote, and the collateral loans and pledges banks proposed to
me (accept or refuse each: nothing binds me until I accept it).

Every action goes through the same visibility rule (`visible_piece`) and the same services as the JSON
API, as the signed-in user's organisation. Amounts are typed by people in yuan ("200,000.50") and read
exactly into fen (`parse_major`); a refused action re-renders its form with the message next to the
field at fault and changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from creditflow.bootstrap import App
from creditflow.http.api.collateral import iot_of
from creditflow.http.pages.common import HOME, NAV, app_of, check_csrf, done, render, role_pages
from creditflow.http.visibility import PieceView, provenance_view, sees_face, visible_piece
from creditflow.identity.sessions import WebUser
from creditflow.kernel.errors import DomainError, InvalidInput, NotFound
from creditflow.kernel.money import parse_major
from creditflow.ledger.model.certificates import Piece, PieceState
from creditflow.ledger.model.parties import Role

router = APIRouter(include_in_schema=False)
Supplier = Annotated[WebUser, role_pages(Role.SUPPLIER)]

HOME[Role.SUPPLIER] = "/ui/supplier/pieces"
NAV[Role.SUPPLIER].append(("/ui/supplier/pieces", "My pieces"))
NAV[Role.SUPPLIER].append(("/ui/supplier/financing", "Financing"))
NAV[Role.SUPPLIER].append(("/ui/supplier/collateral", "Collateral"))

# The fields of each form, and which service field each one feeds (an error names the service field).
FORM_FIELDS: dict[str, dict[str, str]] = {
    "transfer": {"to": "to", "amount_minor": "amount", "amount": "amount", "trade_ref": "trade_ref"},
    "split": {"amounts_minor": "amounts", "amounts": "amounts"},
    "finance": {
        "product_id": "product_id",
        "bank": "product_id",
        "amount_minor": "finance_amount",
        "finance_amount": "finance_amount",
    },
}
_SPLIT_SEPARATORS = re.compile(r"[;\s]+")
Text = Annotated[str, Form(max_length=4000)]
Token = Annotated[str, Form(max_length=200)]


def page_error(error: DomainError, form: str | None = None) -> dict[str, Any]:
    """The message of a refused action, with its field renamed to the form's field (``amount_minor`` ->
    ``amount``); an error about something that is not a field of the form (the piece was spent, say)
    has no field, so the page shows it at the top."""
    name = (error.field or "").split("[", 1)[0]
    field = FORM_FIELDS.get(form or "", {}).get(name)
    return {"error": {"message": error.message, "code": error.code, "field": field}, "form": form}


def names_of(app: App) -> dict[str, str]:
    return {p.org_id: p.name for p in app.queries.parties()}


def pager(request: Request, next_cursor: str | None) -> dict[str, Any]:
    """Cursor links of a list page, keeping its other parameters (``limit``, ``all``)."""
    keep = [(k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "ok")]
    first = f"{request.url.path}?{urlencode(keep)}" if request.query_params.get("cursor") else None
    after = f"{request.url.path}?{urlencode([*keep, ('cursor', next_cursor)])}" if next_cursor else None
    return {"first_href": first, "next_href": after}


def page_limit(request: Request) -> int | None:
    """The ``limit`` of a list page (rows per page; the configured default when absent). Its range is
    checked by the query, as on the API."""
    text = request.query_params.get("limit")
    if text is None or text == "":
        return None
    if not text.isdigit() or len(text) > 9:
        raise InvalidInput("limit must be a whole number of rows", field="limit")
    return int(text)


def _not_found(request: Request, error: DomainError) -> HTMLResponse:
    return render(request, "supplier/not_found.html", status=error.status, message=error.message)


# --- my pieces --------------------------------------------------------------------------------------


def _pieces_page(request: Request, user: WebUser, *, status: int = 200, **context: Any) -> HTMLResponse:
    app = app_of(request)
    show_all = request.query_params.get("all") == "1"
    cursor = request.query_params.get("cursor")
    try:
        page = app.queries.pieces_by_holder(
            user.org_id, live_only=not show_all, cursor=cursor, limit=page_limit(request)
        )
    except DomainError as error:  # a cursor this page did not hand out
        return render(request, "supplier/pieces.html", status=error.status, pieces=[], **page_error(error))
    return render(
        request,
        "supplier/pieces.html",
        status=status,
        pieces=page.items,
        show_all=show_all,
        **pager(request, page.next_cursor),
        names=names_of(app),
        **context,
    )


@router.get("/ui/supplier/pieces")
def pieces(request: Request, user: Supplier) -> HTMLResponse:
    return _pieces_page(request, user)


@router.post("/ui/supplier/pieces/{piece_id}/accept", response_model=None)
def accept(request: Request, piece_id: str, user: Supplier, csrf_token: Token = "") -> Response:
    check_csrf(user, csrf_token)
    app = app_of(request)
    try:
        piece = visible_piece(app, user.principal, piece_id)
        app.ledger.accept(user.org_id, piece.id)
    except DomainError as error:
        return _pieces_page(request, user, status=error.status, **page_error(error))
    return done("/ui/supplier/pieces", f"Accepted piece {piece_id}.")


@router.post("/ui/supplier/pieces/{piece_id}/reject", response_model=None)
def reject(request: Request, piece_id: str, user: Supplier, csrf_token: Token = "") -> Response:
    check_csrf(user, csrf_token)
    app = app_of(request)
    try:
        piece = visible_piece(app, user.principal, piece_id)
        app.ledger.reject(user.org_id, piece.id)
    except DomainError as error:
        return _pieces_page(request, user, status=error.status, **page_error(error))
    return done("/ui/supplier/pieces", f"Rejected piece {piece_id}: its value went back to the sender.")


# --- one piece: provenance, history, and the transfer / split / finance forms ---------------------------


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One piece on the walk from the certificate's first piece down to the piece shown."""

    piece: Piece
    holder_name: str  # "" when redacted
    how: str  # how this piece came to be: issued, received, financed, split off, change, returned ("" when redacted)
    view: PieceView

    @property
    def redacted(self) -> bool:
        return not self.view.clear


_HOW = {"split_off": "split off", "finance": "financed"}


def _chain(app: App, user: WebUser, piece: Piece, names: dict[str, str]) -> list[ChainLink]:
    """Root first; how each piece came to be is read from the log entry that created it. The same need
    to know as the API (`provenance_view`): another holder's upstream piece shows its tier, state and
    commitment only (how it came to be would tell, e.g. that a bank financed it)."""
    links = []
    for view in reversed(provenance_view(app, user.principal, piece)):
        p = view.piece
        if not view.clear:
            links.append(ChainLink(p, "", "", view))
            continue
        created = app.queries.history(p.id)[0]["event"]
        links.append(ChainLink(p, names.get(p.holder, p.holder), _HOW.get(created, created), view))
    return links


def _piece_page(request: Request, user: WebUser, piece_id: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    app = app_of(request)
    try:
        piece = visible_piece(app, user.principal, piece_id)
    except NotFound as error:
        return _not_found(request, error)
    cert = app.queries.certificate(piece.certificate_id)
    names = names_of(app)
    parties = app.queries.parties()
    recipients = [
        (p.org_id, p.name) for p in parties if p.role == Role.SUPPLIER and p.org_id not in (user.org_id, cert.issuer)
    ]
    mine = piece.holder == user.org_id
    products = app.financing.products() if mine else []
    offers = [
        (p.id, f"{names.get(p.bank, p.bank)} · {p.name} ({'with' if p.with_recourse else 'without'} recourse)")
        for p in products
    ]
    return render(
        request,
        "supplier/piece.html",
        status=status,
        piece=piece,
        cert=cert,
        names=names,
        chain=_chain(app, user, piece, names),
        face_visible=sees_face(app, user.principal, cert),
        history=app.queries.history(piece.id),
        recipients=recipients,
        products=products,
        offers=offers,
        can_act=mine and piece.state == PieceState.ACTIVE and not piece.frozen,
        can_answer=mine and piece.state == PieceState.PENDING,
        trade_rules=app.settings.enforce_trade_rules,
        values=context.pop("values", {}),
        **context,
    )


@router.get("/ui/supplier/pieces/{piece_id}")
def piece_page(request: Request, piece_id: str, user: Supplier) -> HTMLResponse:
    return _piece_page(request, user, piece_id)


def _refused(request: Request, user: WebUser, piece_id: str, error: DomainError, form: str, **values: str) -> Response:
    if isinstance(error, NotFound) and error.field == "piece_id":
        return _not_found(request, error)
    return _piece_page(request, user, piece_id, status=error.status, values=values, **page_error(error, form))


@router.post("/ui/supplier/pieces/{piece_id}/transfer", response_model=None)
def transfer(
    request: Request,
    piece_id: str,
    user: Supplier,
    csrf_token: Token = "",
    to: Text = "",
    amount: Text = "",
    trade_ref: Text = "",
) -> Response:
    """Send part (or all) of the piece to another organisation; the rest comes back as a change piece."""
    check_csrf(user, csrf_token)
    app = app_of(request)
    values = {"to": to, "amount": amount, "trade_ref": trade_ref}
    try:
        piece = visible_piece(app, user.principal, piece_id)
        if not to.strip():
            raise InvalidInput("choose the organisation to send the piece to", field="to")
        amount_minor = parse_major(amount, field="amount")
        ref = trade_ref.strip().lower() or None
        if ref is not None and not re.fullmatch(r"[0-9a-f]{64}", ref):
            raise InvalidInput(
                "trade_ref: the invoice's digest is 64 hexadecimal characters", code="invalid_input", field="trade_ref"
            )
        app.ledger.transfer(user.org_id, piece.id, to.strip(), amount_minor, trade_ref=ref)
    except DomainError as error:
        return _refused(request, user, piece_id, error, "transfer", **values)
    return done("/ui/supplier/pieces", f"Sent {amount.strip()} CNY of piece {piece_id} to {to.strip()}.")


def parse_amounts(text: str) -> list[int]:
    """``"600,000; 400,000.00"`` (or one amount a line) -> fen, exactly, naming the item at fault."""
    items = [t for t in _SPLIT_SEPARATORS.split(text.strip()) if t]
    if len(items) < 2:
        raise InvalidInput(
            "amounts: give at least two amounts, separated by ';' or one a line", code="invalid_input", field="amounts"
        )
    amounts = []
    for i, item in enumerate(items, start=1):
        try:
            amounts.append(parse_major(item, field="amounts"))
        except InvalidInput as error:
            raise InvalidInput(f"amount {i}: {error.message}", code=error.code, field="amounts") from error
    return amounts


@router.post("/ui/supplier/pieces/{piece_id}/split", response_model=None)
def split(request: Request, piece_id: str, user: Supplier, csrf_token: Token = "", amounts: Text = "") -> Response:
    """Split the piece into pieces of the given amounts (they must add up to the piece)."""
    check_csrf(user, csrf_token)
    app = app_of(request)
    try:
        piece = visible_piece(app, user.principal, piece_id)
        app.ledger.split(user.org_id, piece.id, parse_amounts(amounts))
    except DomainError as error:
        return _refused(request, user, piece_id, error, "split", amounts=amounts)
    return done("/ui/supplier/pieces", f"Split piece {piece_id}.")


@router.post("/ui/supplier/pieces/{piece_id}/finance", response_model=None)
def finance(
    request: Request,
    piece_id: str,
    user: Supplier,
    csrf_token: Token = "",
    product_id: Text = "",
    finance_amount: Text = "",
    step: Text = "request",
    expect_disbursement_minor: Text = "",
) -> Response:
    """Finance the piece (blank amount: the whole piece) at the bank offering ``product_id``.

    ``step=quote`` shows the bank's offer (cash, rate, days, interest, fees, or every reason it would
    decline) and commits nothing; accepting it posts ``step=request`` with the offered cash, and terms that
    changed in between are refused (``terms_changed``) with the new offer shown. ``step=request`` without an
    offer asks at once. The answer, approved with its quote or declined with its reasons, is on the
    request's page."""
    check_csrf(user, csrf_token)
    app = app_of(request)
    values = {"product_id": product_id, "finance_amount": finance_amount}
    try:
        piece = visible_piece(app, user.principal, piece_id)
        if not product_id.strip():
            raise InvalidInput("choose a bank's financing product", field="product_id")
        product = app.financing.product(product_id.strip())
        amount_minor = parse_major(finance_amount, field="finance_amount") if finance_amount.strip() else None

        def with_offer(status: int = 200, **context: Any) -> HTMLResponse:
            offer = app.financing.offer(user.org_id, piece.id, product.bank, product.id, amount_minor)
            return _piece_page(
                request, user, piece.id, status=status, values=values, offer=offer, offer_product=product, **context
            )

        if step == "quote":
            return with_offer()
        expected = None
        if expect_disbursement_minor.strip():  # the offer's cash, from the form's hidden field
            if not expect_disbursement_minor.strip().isdigit():
                raise InvalidInput("the accepted offer's cash is not a whole number of fen", field="finance_amount")
            expected = int(expect_disbursement_minor)
        try:
            outcome = app.financing.request(
                user.org_id, piece.id, product.bank, product.id, amount_minor, expect_disbursement_minor=expected
            )
        except DomainError as error:
            if error.code != "terms_changed":
                raise
            return with_offer(error.status, **page_error(error, "finance"))
    except DomainError as error:
        return _refused(request, user, piece_id, error, "finance", **values)
    verdict = "approved" if outcome.approved else "declined"
    return done(f"/ui/supplier/financing/{outcome.request_id}", f"The bank {verdict} your request.")


# --- financing requests ------------------------------------------------------------------------------


@router.get("/ui/supplier/financing")
def financing(request: Request, user: Supplier) -> HTMLResponse:
    """My financing requests, oldest first, a page at a time."""
    app = app_of(request)
    try:
        page = app.queries.page_of(
            app.financing.requests(user.org_id, as_bank=False),
            lambda r: (r["requested_ts_ms"], r["id"]),
            (int, str),
            cursor=request.query_params.get("cursor"),
            limit=page_limit(request),
        )
    except DomainError as error:
        return render(request, "supplier/financing.html", status=error.status, rows=[], **page_error(error))
    agreements = {a["id"]: a for a in app.financing.agreements(seller=user.org_id)}
    return render(
        request,
        "supplier/financing.html",
        rows=page.items,
        agreements=agreements,
        **pager(request, page.next_cursor),
        names=names_of(app),
    )


@router.get("/ui/supplier/financing/{request_id}")
def financing_request(request: Request, request_id: str, user: Supplier) -> HTMLResponse:
    """One request: the bank's answer, with the quote (rate, days ACT/360, interest, fees, cash) or the
    reasons it declined."""
    app = app_of(request)
    row = next((r for r in app.financing.requests(user.org_id, as_bank=False) if r["id"] == request_id), None)
    if row is None:
        error = NotFound(
            f"financing request {request_id!r} does not exist", code="request_not_found", field="request_id"
        )
        return _not_found(request, error)
    agreement = next((a for a in app.financing.agreements(seller=user.org_id) if a["id"] == request_id), None)
    product = None
    try:
        product = app.financing.product(row["product_id"])
    except NotFound:
        product = None
    return render(
        request,
        "supplier/financing_request.html",
        row=row,
        agreement=agreement,
        product=product,
        names=names_of(app),
    )


# --- collateral: loans and pledges proposed to me ------------------------------------------------------------


def _collateral_page(request: Request, user: WebUser, *, status: int = 200, **context: Any) -> HTMLResponse:
    """The loans banks proposed to me (and those I accepted or refused), each with its pledge proposals, as
    ``GET /v1/iot/loans`` shows them to me."""
    app = app_of(request)
    loans = iot_of(app).collateral.borrower_loans(user.org_id)
    open_count = sum(
        (loan["status"] == "proposed") + sum(p["status"] == "proposed" for p in loan["pledge_proposals"])
        for loan in loans
    )
    return render(
        request,
        "supplier/collateral.html",
        status=status,
        loans=loans,
        pledges=[(loan, p) for loan in loans for p in loan["pledge_proposals"]],
        open_count=open_count,
        names=names_of(app),
        **context,
    )


@router.get("/ui/supplier/collateral")
def collateral(request: Request, user: Supplier) -> HTMLResponse:
    return _collateral_page(request, user)


_DECISIONS = {"accept": "Accepted", "refuse": "Refused"}


@router.post("/ui/supplier/collateral/loans/{loan_id}/{action}", response_model=None)
def decide_loan(request: Request, loan_id: str, action: str, user: Supplier, csrf_token: Token = "") -> Response:
    """Accept (sign) or refuse a loan a bank proposed to me: the same service call as the API's."""
    check_csrf(user, csrf_token)
    if action not in _DECISIONS:
        return _collateral_page(request, user, status=404, **page_error(NotFound("no such action")))
    c = iot_of(app_of(request)).collateral
    try:
        if action == "accept":
            c.accept_loan(loan_id, user.org_id)
        else:
            c.refuse_loan(loan_id, user.org_id)
    except DomainError as error:
        return _collateral_page(request, user, status=error.status, **page_error(error))
    return done("/ui/supplier/collateral", f"{_DECISIONS[action]} loan {loan_id}.")


@router.post("/ui/supplier/collateral/loans/{loan_id}/pledges/{asset_id}/{action}", response_model=None)
def decide_pledge(
    request: Request, loan_id: str, asset_id: str, action: str, user: Supplier, csrf_token: Token = ""
) -> Response:
    """Accept (sign) or refuse a bank's proposal to take one of my assets as collateral for its loan."""
    check_csrf(user, csrf_token)
    if action not in _DECISIONS:
        return _collateral_page(request, user, status=404, **page_error(NotFound("no such action")))
    c = iot_of(app_of(request)).collateral
    try:
        if action == "accept":
            c.accept_pledge(loan_id, asset_id, user.org_id)
        else:
            c.refuse_pledge(loan_id, asset_id, user.org_id)
    except DomainError as error:
        return _collateral_page(request, user, status=error.status, **page_error(error))
    return done("/ui/supplier/collateral", f"{_DECISIONS[action]} the pledge of {asset_id} to loan {loan_id}.")
