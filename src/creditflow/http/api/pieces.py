"""Pieces and signed operations: /v1/pieces, /v1/operations."""

from __future__ import annotations

import asyncio
from typing import Annotated

import anyio
from fastapi import APIRouter, Query

from creditflow.bootstrap import App
from creditflow.http.common import error_responses, piece_out, receipt_out
from creditflow.http.schemas import (
    EventOut,
    HistoryOut,
    Page,
    PieceOut,
    ProvenanceOut,
    ReasonIn,
    ReceiptOut,
    SignedOperationIn,
    SplitIn,
    TransferIn,
)
from creditflow.http.security import AppDep, Caller, require_role
from creditflow.http.visibility import provenance_view, visible_certificate, visible_payable, visible_piece
from creditflow.identity.access import Principal
from creditflow.kernel.errors import Forbidden, NotFound
from creditflow.ledger.entries import SignedOperation
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.parties import Role

router = APIRouter(tags=["pieces"])

_ACT_ERRORS = error_responses(401, 403, 404, 409, 422)


@router.get("/v1/pieces", response_model=Page[PieceOut], responses=error_responses(401, 422))
def list_pieces(
    app: AppDep,
    who: Caller,
    live_only: bool = True,
    limit: Annotated[int | None, Query(description="page size")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[PieceOut]:
    """The caller's pieces, oldest first (``live_only``: pending and active only)."""
    page = app.queries.pieces_by_holder(who.org_id, live_only=live_only, cursor=cursor, limit=limit)
    return Page[PieceOut](items=[piece_out(p) for p in page.items], next_cursor=page.next_cursor)


@router.get("/v1/pieces/{piece_id}", response_model=PieceOut, responses=error_responses(401, 404))
def get_piece(piece_id: str, app: AppDep, who: Caller) -> PieceOut:
    """A piece, for its holder, its sender, its certificate's issuer, the operator and the auditor."""
    return piece_out(visible_piece(app, who, piece_id))


@router.get(
    "/v1/pieces/{piece_id}/provenance",
    response_model=ProvenanceOut,
    responses=error_responses(401, 404),
)
def provenance(piece_id: str, app: AppDep, who: Caller) -> ProvenanceOut:
    """The walk from the piece up to its certificate's first piece: where this value came from. Need to
    know: pieces the caller neither holds nor sent show only their tier, state and a salted commitment
    (holder, sender and amount are null) unless the caller is the issuer, the operator or the auditor."""
    piece = visible_piece(app, who, piece_id)
    return ProvenanceOut(piece_id=piece.id, chain=[v.out() for v in provenance_view(app, who, piece)])


@router.get("/v1/pieces/{piece_id}/history", response_model=HistoryOut, responses=error_responses(401, 404))
def history(piece_id: str, app: AppDep, who: Caller) -> HistoryOut:
    """What happened to the piece, in log order."""
    piece = visible_piece(app, who, piece_id)
    return HistoryOut(piece_id=piece.id, events=[EventOut(**e) for e in app.queries.history(piece.id)])


@router.post("/v1/pieces/{piece_id}/accept", response_model=ReceiptOut, responses=_ACT_ERRORS)
def accept(piece_id: str, app: AppDep, who: Caller) -> ReceiptOut:
    """Accept a piece sent to the caller."""
    piece = visible_piece(app, who, piece_id)
    return receipt_out(app.ledger.accept(who.org_id, piece.id))


@router.post("/v1/pieces/{piece_id}/reject", response_model=ReceiptOut, responses=_ACT_ERRORS)
def reject(piece_id: str, app: AppDep, who: Caller) -> ReceiptOut:
    """Refuse a piece sent to the caller: its value goes back to the sender."""
    piece = visible_piece(app, who, piece_id)
    return receipt_out(app.ledger.reject(who.org_id, piece.id))


@router.post("/v1/pieces/{piece_id}/transfer", response_model=ReceiptOut, responses=_ACT_ERRORS)
def transfer(piece_id: str, body: TransferIn, app: AppDep, who: Caller) -> ReceiptOut:
    """Send ``amount_minor`` of the caller's piece to ``to``; any remainder comes back as a change piece."""
    piece = visible_piece(app, who, piece_id)
    return receipt_out(app.ledger.transfer(who.org_id, piece.id, body.to, body.amount_minor, trade_ref=body.trade_ref))


@router.post("/v1/pieces/{piece_id}/split", response_model=ReceiptOut, responses=_ACT_ERRORS)
def split(piece_id: str, body: SplitIn, app: AppDep, who: Caller) -> ReceiptOut:
    """Split the caller's piece into pieces of ``amounts_minor`` (they must add up to the piece)."""
    piece = visible_piece(app, who, piece_id)
    return receipt_out(app.ledger.split(who.org_id, piece.id, body.amounts_minor))


@router.post("/v1/pieces/{piece_id}/freeze", response_model=ReceiptOut, responses=_ACT_ERRORS)
def freeze(piece_id: str, body: ReasonIn, app: AppDep, who: Caller) -> ReceiptOut:
    """Freeze a live piece (operator only): nothing moves it until it is unfrozen."""
    piece = visible_piece(app, who, piece_id)
    require_role(who, Role.OPERATOR, what="freeze pieces")
    return receipt_out(app.ledger.freeze(who.org_id, piece.id, body.reason))


@router.post("/v1/pieces/{piece_id}/unfreeze", response_model=ReceiptOut, responses=_ACT_ERRORS)
def unfreeze(piece_id: str, body: ReasonIn, app: AppDep, who: Caller) -> ReceiptOut:
    """Unfreeze a piece (operator only)."""
    piece = visible_piece(app, who, piece_id)
    require_role(who, Role.OPERATOR, what="unfreeze pieces")
    return receipt_out(app.ledger.unfreeze(who.org_id, piece.id, body.reason))


def _check_targets(app: App, who: Principal, op: ops.Operation) -> None:
    """404 for a piece, certificate or payable the caller may not see, as on the other endpoints."""
    if isinstance(op, ops.Accept | ops.Reject | ops.Transfer | ops.Split | ops.Freeze | ops.Unfreeze | ops.Finance):
        visible_piece(app, who, op.piece_id)
    elif isinstance(op, ops.Revoke):
        visible_certificate(app, who, op.certificate_id)
    elif isinstance(op, ops.Issue):
        visible_payable(app, who, op.payable_id)


@router.post(
    "/v1/operations",
    response_model=ReceiptOut,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def submit_operation(body: SignedOperationIn, app: AppDep, who: Caller) -> ReceiptOut:
    """Submit an operation the caller signed itself (self custody).

    ``op`` is the operation payload (``v``, ``type``, ``op_id``: a fresh UUID, ``actor``: the caller's
    org_id, and the fields of its type); ``sigs`` holds the actor's Ed25519 signature over
    ``b"creditflow/op/v1\\x00" + canonical_encoding(op)`` with a key registered on the ledger."""
    signed = SignedOperation.from_json(body.model_dump())
    if signed.op.actor != who.org_id:
        raise Forbidden("the operation's actor must be the calling organisation", code="not_actor", field="op.actor")
    # The hot path awaits the group commit on the event loop (no thread held). Visibility is checked
    # only when the ledger refuses: an accepted operation was by the holder, recipient or issuer,
    # who may see its target; a refused one answers 404 for a target the caller may not know exists.
    try:
        receipt = await asyncio.wrap_future(app.ledger.submit_signed_async(signed, block=False))
    except (Forbidden, NotFound):
        await anyio.to_thread.run_sync(_check_targets, app, who, signed.op)
        raise
    return receipt_out(receipt)
