"""Trade documents: import ERP files, look documents up, run the three-way match.

`TradeService.import_file` reads a file (`creditflow.trade.erp`), then in ONE transaction:

* refuses each document whose buyer and seller are both someone other than the importing organisation
  (by the USCC it registered, table ``parties``): ``not_a_party``;
* skips each document already stored with the same digest (a re-import changes nothing);
* refuses each document whose (kind, seller, number) is already stored with a different digest
  (``invoice_number_reused`` for invoices, ``document_conflict`` otherwise): never overwritten;
* refuses a receipt or invoice dated before its purchase order, when that order is already stored
  (``date_out_of_order``);
* stores the rest.

A document is refused whole, with every reason; the other documents of the file still import. A
file-level error (unreadable encoding, missing columns, over a limit) imports nothing. Two imports racing
on the same document: the database's unique key lets one insert, and the other is retried once and then
sees the stored document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from creditflow.config import Settings
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import NotFound
from creditflow.ledger import reads as ledger
from creditflow.ledger.model.parties import Role
from creditflow.trade import store
from creditflow.trade.documents import (
    KIND_NAME,
    NUMBER_FIELD,
    DocKind,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    PurchaseOrder,
    ReceiptLine,
    RejectedDocument,
    RowError,
    TradeDocument,
    TradeLine,
    check_dates_in_order,
    decimal_text,
    document_digest,
)
from creditflow.trade.erp import Format, parse_file, parse_kind
from creditflow.trade.match import MatchResult, three_way_match

CHUNK = 500
ATTEMPTS = 2
OVERSEERS = frozenset({Role.OPERATOR.value, Role.AUDITOR.value})


@dataclass(frozen=True, slots=True)
class DocumentOutcome:
    """A document that is stored: imported by this call, or skipped as an identical re-import."""

    kind: DocKind
    number: str
    seller_uscc: str
    document_id: int
    digest: str
    row: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "number": self.number,
            "seller_uscc": self.seller_uscc,
            "document_id": self.document_id,
            "digest": self.digest,
            "row": self.row,
        }


@dataclass(frozen=True, slots=True)
class ImportReport:
    kind: DocKind
    filename: str
    format: str | None
    encoding: str | None
    rows: int
    imported: tuple[DocumentOutcome, ...]
    skipped: tuple[DocumentOutcome, ...]
    rejected: tuple[RejectedDocument, ...]
    file_errors: tuple[RowError, ...]
    ignored_columns: tuple[str, ...] = ()

    @property
    def outcome(self) -> str:
        """``ok`` (everything stored), ``partial``, ``rejected`` (nothing stored) or ``file_error``."""
        if self.file_errors:
            return "file_error"
        if not self.rejected:
            return "ok"
        return "partial" if self.imported or self.skipped else "rejected"

    def errors(self) -> list[dict[str, Any]]:
        """Every reason, flat: file-level ones first, then per refused document."""
        out = [{"document": None, **e.to_json()} for e in self.file_errors]
        for doc in self.rejected:
            out.extend({"document": doc.number, **e.to_json()} for e in doc.errors)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "filename": self.filename,
            "format": self.format,
            "encoding": self.encoding,
            "rows": self.rows,
            "outcome": self.outcome,
            "counts": {
                "imported": len(self.imported),
                "skipped": len(self.skipped),
                "rejected": len(self.rejected),
            },
            "imported": [d.to_json() for d in self.imported],
            "skipped": [d.to_json() for d in self.skipped],
            "rejected": [d.to_json() for d in self.rejected],
            "file_errors": [e.to_json() for e in self.file_errors],
            "ignored_columns": list(self.ignored_columns),
        }


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: int
    document: TradeDocument
    digest: str
    imported_by: str
    imported_ts_ms: int

    @property
    def kind(self) -> DocKind:
        return self.document.kind

    def to_json(self) -> dict[str, Any]:
        doc = self.document
        lines: list[dict[str, Any]] = []
        doc_lines: Sequence[TradeLine] = doc.lines
        for line in sorted(doc_lines, key=lambda x: x.line_no):
            item: dict[str, Any] = {"line_no": line.line_no, "item": line.item}
            if isinstance(line, ReceiptLine):
                item |= {"po_line_no": line.po_line_no, "quantity_received": decimal_text(line.quantity_received)}
            else:
                item |= {
                    "quantity": decimal_text(line.quantity),
                    "unit_price": decimal_text(line.unit_price),
                    "net_minor": line.net_minor,
                }
            if isinstance(line, InvoiceLine):
                item |= {
                    "po_line_no": line.po_line_no,
                    "tax_rate_pct": line.tax_rate_pct,
                    "tax_minor": line.tax_minor,
                    "gross_minor": line.gross_minor,
                }
            lines.append(item)
        return {
            "id": self.id,
            "kind": doc.kind.value,
            "number": doc.number,
            "buyer_uscc": doc.buyer_uscc,
            "seller_uscc": doc.seller_uscc,
            "date": doc.doc_date.isoformat(),
            "currency": doc.currency,
            "po_number": doc.po_number,
            "net_minor": doc.net_minor,
            "tax_minor": doc.tax_minor,
            "gross_minor": doc.gross_minor,
            "digest": self.digest,
            "imported_by": self.imported_by,
            "imported_ts_ms": self.imported_ts_ms,
            "lines": lines,
        }


def _reject(doc: TradeDocument, field_name: str, code: str, message: str) -> RejectedDocument:
    return RejectedDocument(
        doc.kind, doc.number, doc.seller_uscc, doc.row, (RowError(doc.row, field_name, code, message),)
    )


class TradeService:
    def __init__(self, engine: Engine, settings: Settings, clock: Clock):
        self.engine = engine
        self.settings = settings
        self.clock = clock

    # --- import ----------------------------------------------------------------------------------------

    def import_file(
        self, org_id: str, kind: DocKind | str, data: bytes, filename: str = "", *, fmt: Format | None = None
    ) -> ImportReport:
        """Import one ERP file as ``org_id``; see the module docstring. Raises `NotFound` for an unknown org."""
        doc_kind = parse_kind(kind)
        with self._read() as conn:
            importer = self._party(conn, org_id)
        parsed = parse_file(
            doc_kind,
            data,
            filename,
            fmt=fmt,
            max_bytes=self.settings.erp_max_file_bytes,
            max_rows=self.settings.erp_max_rows,
            allowed_tax_rates_pct=self.settings.allowed_tax_rates_pct,
        )
        imported: list[DocumentOutcome] = []
        skipped: list[DocumentOutcome] = []
        refused: list[RejectedDocument] = []
        if parsed.documents:
            for attempt in range(ATTEMPTS):
                try:
                    with self.engine.begin() as conn:
                        imported, skipped, refused = self._store(conn, org_id, importer[0], parsed.documents)
                    break
                except store.DocumentRace:
                    # another import stored one of these documents first; look again (it now exists)
                    if attempt == ATTEMPTS - 1:
                        raise
        rejected = sorted([*parsed.rejected, *refused], key=lambda d: (d.row, d.number))
        return ImportReport(
            kind=doc_kind,
            filename=filename,
            format=parsed.format,
            encoding=parsed.encoding,
            rows=parsed.rows,
            imported=tuple(imported),
            skipped=tuple(skipped),
            rejected=tuple(rejected),
            file_errors=parsed.file_errors,
            ignored_columns=parsed.ignored_columns,
        )

    def _store(
        self, conn: Connection, org_id: str, importer_uscc: str, docs: Sequence[TradeDocument]
    ) -> tuple[list[DocumentOutcome], list[DocumentOutcome], list[RejectedDocument]]:
        kind = docs[0].kind
        existing = {
            key: (stored_id, digest)
            for key, (stored_id, digest, _) in store.stored_keys(
                conn, kind, [(d.seller_uscc, d.number) for d in docs]
            ).items()
        }
        orders = (
            store.stored_keys(conn, DocKind.PO, [(d.seller_uscc, d.po_number) for d in docs if d.po_number])
            if kind is not DocKind.PO
            else {}
        )
        imported: list[DocumentOutcome] = []
        skipped: list[DocumentOutcome] = []
        rejected: list[RejectedDocument] = []
        to_insert: list[tuple[TradeDocument, str]] = []
        number_field = NUMBER_FIELD[kind]
        for doc in docs:
            digest = document_digest(doc)
            if importer_uscc not in (doc.buyer_uscc, doc.seller_uscc):
                rejected.append(
                    _reject(
                        doc,
                        "buyer_uscc",
                        "not_a_party",
                        f"{org_id} (USCC {importer_uscc}) is neither the buyer ({doc.buyer_uscc}) nor the seller "
                        f"({doc.seller_uscc}) of {KIND_NAME[kind]} {doc.number}",
                    )
                )
                continue
            stored = existing.get((doc.seller_uscc, doc.number))
            if stored is not None:
                stored_id, stored_digest = stored
                if stored_digest == digest:
                    skipped.append(DocumentOutcome(kind, doc.number, doc.seller_uscc, stored_id, digest, doc.row))
                else:
                    code = "invoice_number_reused" if kind is DocKind.INVOICE else "document_conflict"
                    rejected.append(
                        _reject(
                            doc,
                            number_field,
                            code,
                            f"{KIND_NAME[kind]} {doc.number} of seller {doc.seller_uscc} was already imported "
                            f"(document {stored_id}) with different content; it is not overwritten",
                        )
                    )
                continue
            if isinstance(doc, GoodsReceipt | Invoice) and doc.po_number:
                order = orders.get((doc.seller_uscc, doc.po_number))
                if order is not None:
                    date_errors = check_dates_in_order(doc, order[2])
                    if date_errors:
                        rejected.append(
                            RejectedDocument(kind, doc.number, doc.seller_uscc, doc.row, tuple(date_errors))
                        )
                        continue
            to_insert.append((doc, digest))
        now = self.clock.now_ms()
        for start in range(0, len(to_insert), CHUNK):
            batch = to_insert[start : start + CHUNK]
            ids = store.insert_documents(conn, batch, org_id, now)
            imported.extend(
                DocumentOutcome(kind, doc.number, doc.seller_uscc, doc_id, digest, doc.row)
                for (doc, digest), doc_id in zip(batch, ids, strict=True)
            )
        return imported, skipped, rejected

    # --- look-ups ----------------------------------------------------------------------------------------

    def _read(self) -> Connection:
        return self.engine.connect().execution_options(read_only=True)

    def _party(self, conn: Connection, org_id: str) -> tuple[str, str]:
        """(USCC, role) of a registered organisation."""
        found = ledger.parties(conn, [org_id])
        if not found:
            raise NotFound(f"organisation {org_id!r} is not registered", code="party_not_found", field="org_id")
        return found[0].uscc, found[0].role.value

    def _load(self, conn: Connection, **where: Any) -> list[StoredDocument]:
        return [StoredDocument(*record) for record in store.load_documents(conn, **where)]

    def _check_visible(self, conn: Connection, stored: StoredDocument, viewer: str | None, what: str) -> None:
        if viewer is None:
            return
        uscc, role = self._party(conn, viewer)
        doc = stored.document
        if role in OVERSEERS or uscc in (doc.buyer_uscc, doc.seller_uscc):
            return
        raise NotFound(f"no {what} {stored.id}", code=f"{what}_not_found")

    def get_document(self, document_id: int, *, viewer: str | None = None) -> StoredDocument:
        """A stored document by id; with ``viewer``, only if that org is its buyer or seller (or an overseer)."""
        with self._read() as conn:
            found = self._load(conn, document_id=document_id)
            if not found:
                raise NotFound(f"no document {document_id}", code="document_not_found", field="document_id")
            self._check_visible(conn, found[0], viewer, "document")
        return found[0]

    def find_document(
        self, kind: DocKind | str, seller_uscc: str, number: str, *, viewer: str | None = None
    ) -> StoredDocument:
        doc_kind = parse_kind(kind)
        with self._read() as conn:
            found = self._load(conn, kind=doc_kind, seller_uscc=seller_uscc.strip().upper(), number=number)
            if not found:
                raise NotFound(
                    f"no {KIND_NAME[doc_kind]} {number} of seller {seller_uscc}",
                    code=f"{doc_kind.value}_not_found",
                    field=NUMBER_FIELD[doc_kind],
                )
            self._check_visible(conn, found[0], viewer, "document")
        return found[0]

    def invoices_between(self, buyer_org: str, seller_org: str) -> list[StoredDocument]:
        """The invoices a seller issued to a buyer (by their registered USCCs), oldest first."""
        with self._read() as conn:
            buyer, _ = self._party(conn, buyer_org)
            seller, _ = self._party(conn, seller_org)
            found = self._load(conn, kind=DocKind.INVOICE, buyer_uscc=buyer, seller_uscc=seller)
        return sorted(found, key=lambda s: (s.document.doc_date, s.document.number))

    # --- three-way match ---------------------------------------------------------------------------------

    def match_invoice(self, invoice_id: int, *, viewer: str | None = None) -> MatchResult:
        """Match a stored invoice against its purchase order (by the invoice's po_number and seller), the
        receipts for that order, and the invoices on that order imported before it."""
        with self._read() as conn:
            found = self._load(conn, document_id=invoice_id, kind=DocKind.INVOICE)
            if not found:
                raise NotFound(f"no invoice {invoice_id}", code="invoice_not_found", field="invoice_id")
            self._check_visible(conn, found[0], viewer, "invoice")
            invoice = found[0].document
            assert isinstance(invoice, Invoice)
            po: PurchaseOrder | None = None
            receipts: list[GoodsReceipt] = []
            earlier: list[Invoice] = []
            if invoice.po_number:
                same_order = {"seller_uscc": invoice.seller_uscc, "po_number": invoice.po_number}
                for stored in self._load(
                    conn, kind=DocKind.PO, seller_uscc=invoice.seller_uscc, number=invoice.po_number
                ):
                    assert isinstance(stored.document, PurchaseOrder)
                    po = stored.document
                for stored in self._load(conn, **same_order, kind=DocKind.RECEIPT):
                    assert isinstance(stored.document, GoodsReceipt)
                    receipts.append(stored.document)
                for stored in self._load(conn, **same_order, kind=DocKind.INVOICE, id_below=invoice_id):
                    assert isinstance(stored.document, Invoice)
                    earlier.append(stored.document)
        return three_way_match(
            po,
            receipts,
            invoice,
            self.settings.match_quantity_tolerance_pct,
            self.settings.match_price_tolerance_pct,
            earlier_invoices=earlier,
        )
