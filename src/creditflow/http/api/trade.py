"""Trade documents pushed by ERP systems: /v1/erp.

| method | path                                   | what                                                     |
| ------ | -------------------------------------- | -------------------------------------------------------- |
| POST   | /v1/erp/{kind}/import?filename=...     | import a CSV (``text/csv``) or JSON (``application/json``) file of purchase orders (``po``), goods receipts (``receipt``) or invoices (``invoice``) |
| GET    | /v1/erp/documents/{document_id}        | a stored document (its buyer, its seller, overseers)     |
| GET    | /v1/erp/invoices/{invoice_id}/match    | three-way match of an invoice: eligible amount or every mismatch explained |

Import answers 201 with the report when anything was imported (refused documents are listed in it),
200 when every document was already imported identically (nothing changed), and 422 problem+json
(``invalid_file`` or ``documents_rejected``) with every row error when nothing could be imported.
The calling organisation must be the buyer or the seller of each document. The body is read as sent
(UTF-8 or GBK, whatever the charset parameter says); its size is capped by ``request_max_bytes``
before ``erp_max_file_bytes`` applies.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from creditflow.bootstrap import App
from creditflow.http.common import error_responses
from creditflow.http.problems import problem
from creditflow.http.schemas import ProblemOut
from creditflow.http.security import AppDep, Caller
from creditflow.trade.documents import DocKind
from creditflow.trade.erp import Format
from creditflow.trade.service import ImportReport, TradeService

router = APIRouter(prefix="/v1/erp", tags=["erp"])

DOCUMENT_ID_MAX = 2**31 - 1  # trade_documents.id is an INTEGER: no larger id exists (PostgreSQL refuses one)
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "text/tab-separated-values"})
JSON_TYPES = frozenset({"application/json"})


class RowErrorOut(BaseModel):
    row: int
    field: str
    code: str
    message: str


class DocumentOutcomeOut(BaseModel):
    kind: DocKind
    number: str
    seller_uscc: str
    document_id: int
    digest: str
    row: int


class RejectedDocumentOut(BaseModel):
    kind: DocKind
    number: str
    seller_uscc: str
    row: int
    errors: list[RowErrorOut]


class ImportCountsOut(BaseModel):
    imported: int
    skipped: int
    rejected: int


class ImportReportOut(BaseModel):
    """What an import did: ``outcome`` is ok, partial, rejected or file_error."""

    kind: DocKind
    filename: str
    format: str | None
    encoding: str | None
    rows: int
    outcome: str
    counts: ImportCountsOut
    imported: list[DocumentOutcomeOut]
    skipped: list[DocumentOutcomeOut]
    rejected: list[RejectedDocumentOut]
    file_errors: list[RowErrorOut]
    ignored_columns: list[str]


class LineMatchOut(BaseModel):
    line_no: int
    status: str
    explanation: str


class MatchOut(BaseModel):
    invoice_id: int
    ok: bool
    eligible_minor: int
    invoice_number: str
    po_number: str | None
    currency: str
    gross_minor: int
    quantity_tolerance_pct: str
    price_tolerance_pct: str
    mismatches: int
    document_digests: list[str]
    lines: list[LineMatchOut]


class TradeLineOut(BaseModel):
    line_no: int
    item: str
    po_line_no: int | None = None
    quantity: str | None = None
    quantity_received: str | None = None
    unit_price: str | None = None
    net_minor: int | None = None
    tax_rate_pct: int | None = None
    tax_minor: int | None = None
    gross_minor: int | None = None


class TradeDocumentOut(BaseModel):
    id: int
    kind: DocKind
    number: str
    buyer_uscc: str
    seller_uscc: str
    date: str
    currency: str | None
    po_number: str | None
    net_minor: int | None
    tax_minor: int | None
    gross_minor: int | None
    digest: str
    imported_by: str
    imported_ts_ms: int
    lines: list[TradeLineOut]


def trade_service(app: App) -> TradeService:
    return TradeService(app.engine, app.settings, app.clock)


def _format_of(content_type: str) -> Format | None:
    media = content_type.split(";", 1)[0].strip().lower()
    if media in JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in CSV_TYPES:
        return "csv"
    return None


def import_response(report: ImportReport, instance: str) -> Response:
    """201 if anything imported, 200 if all of it already was, else 422 problem+json with every error."""
    body = report.to_json()
    if report.imported:
        return JSONResponse(body, status_code=201)
    if report.outcome == "ok":
        return JSONResponse(body, status_code=200)
    errors = report.errors()
    first = errors[0]
    if report.file_errors:
        code, detail = "invalid_file", f"the file was not imported: {first['message']}"
    else:
        code = "documents_rejected"
        detail = (
            f"no document was imported: {len(report.rejected)} rejected "
            f"(first: row {first['row']}, {first['field']}: {first['message']})"
        )
    return problem(422, code, detail, instance=instance, field=first["field"], errors=errors, report=body)


_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The ERP file as exported: CSV (UTF-8 or GBK) or JSON "
        '`{"kind": ..., "documents": [{..., "lines": [...]}]}`',
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "po_number,order_date,buyer_uscc,seller_uscc,currency,line_no,item,quantity,unit_price,net\n"
                "PO-2026-0042,2026-02-20,91320300134780001W,913203001347800020,CNY,1,bearing 6204,1000,12.50,12500.00\n",
            },
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "kind": "po",
                    "documents": [
                        {
                            "po_number": "PO-2026-0042",
                            "order_date": "2026-02-20",
                            "buyer_uscc": "91320300134780001W",
                            "seller_uscc": "913203001347800020",
                            "currency": "CNY",
                            "lines": [
                                {
                                    "line_no": 1,
                                    "item": "bearing 6204",
                                    "quantity": "1000",
                                    "unit_price": "12.50",
                                    "net": "12500.00",
                                }
                            ],
                        }
                    ],
                },
            },
        },
    }
}


@router.post(
    "/{kind}/import",
    status_code=201,
    response_model=ImportReportOut,
    responses={
        200: {"model": ImportReportOut, "description": "every document was already imported identically"},
        **error_responses(401, 404, 413, 422),
        415: {
            "model": ProblemOut,
            "description": "the body is neither text/csv nor application/json (`unsupported_media_type`)",
        },
    },
    openapi_extra=_REQUEST_BODY,
)
async def import_documents(
    kind: DocKind,
    request: Request,
    app: AppDep,
    who: Caller,
    filename: Annotated[str | None, Query(max_length=200, description="name of the file, for the report")] = None,
) -> Response:
    """Import purchase orders, goods receipts or invoices as the calling organisation. A document with any
    bad row is refused whole (every reason listed); the file's good documents still import; re-sending
    the same file changes nothing."""
    fmt = _format_of(request.headers.get("content-type", ""))
    if fmt is None:
        return problem(
            415,
            "unsupported_media_type",
            "send the file as text/csv or application/json",
            instance=request.url.path,
            field="content-type",
        )
    data = await request.body()
    service = trade_service(app)
    report = await run_in_threadpool(service.import_file, who.org_id, kind, data, filename or f"upload.{fmt}", fmt=fmt)
    return import_response(report, request.url.path)


@router.get(
    "/documents/{document_id}",
    response_model=TradeDocumentOut,
    responses=error_responses(401, 404, 422),
)
def get_document(
    document_id: Annotated[int, Path(ge=1, le=DOCUMENT_ID_MAX)], app: AppDep, who: Caller
) -> TradeDocumentOut:
    """A stored purchase order, goods receipt or invoice, for its buyer and its seller."""
    stored = trade_service(app).get_document(document_id, viewer=who.org_id)
    return TradeDocumentOut.model_validate(stored.to_json())


@router.get(
    "/invoices/{invoice_id}/match",
    response_model=MatchOut,
    responses=error_responses(401, 404, 422),
)
def match_invoice(invoice_id: Annotated[int, Path(ge=1, le=DOCUMENT_ID_MAX)], app: AppDep, who: Caller) -> MatchOut:
    """Three-way match of an invoice with its purchase order and goods receipts: ``ok`` and the amount
    eligible for confirmation, or every mismatch explained line by line (eligible amount 0)."""
    result = trade_service(app).match_invoice(invoice_id, viewer=who.org_id)
    return MatchOut.model_validate({"invoice_id": invoice_id, **result.to_json()})
