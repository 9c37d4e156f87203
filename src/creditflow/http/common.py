"""Small helpers the route modules share: documented error responses and domain-to-schema conversion."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from creditflow.http.schemas import CertificateOut, PieceOut, ProblemOut, ReceiptOut
from creditflow.ledger.model.certificates import Certificate, Piece
from creditflow.ledger.sequencer import Receipt

_DESCRIPTIONS = {
    400: "bad signature (`bad_signature`, `unknown_key`, `key_not_valid`)",
    401: "no valid API key (`unauthenticated`)",
    403: "the caller's role or position does not allow it (`role_not_allowed`, `not_holder`, ...)",
    404: "no such object, or one the caller may not see (`*_not_found`)",
    409: "conflicts with the current state (`piece_already_spent`, `idempotency_key_reused`, ...)",
    413: "over a limit (`request_too_large`, `tree_too_large`, `ledger_busy`)",
    422: "invalid input; `field` names it (`invalid_input`, `invalid_amount`, ...)",
}


# The two parameters of every paged list (cursors are opaque: `creditflow.ledger.queries.encode_cursor`).
Limit = Annotated[int | None, Query(description="page size (default `page_size_default`)")]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each listed status documented as problem+json."""
    return {s: {"model": ProblemOut, "description": _DESCRIPTIONS.get(s, "error")} for s in statuses}


def receipt_out(receipt: Receipt) -> ReceiptOut:
    return ReceiptOut.model_validate(receipt.to_json())


def piece_out(piece: Piece) -> PieceOut:
    return PieceOut.model_validate(piece, from_attributes=True)


def certificate_out(cert: Certificate) -> CertificateOut:
    return CertificateOut.model_validate(cert, from_attributes=True)
