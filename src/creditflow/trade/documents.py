"""Trade documents: purchase orders, goods receipts and VAT invoices, and their rules.

Pure: no I/O, no clock. Readers (`creditflow.trade.erp`) turn files into these values; the
trade service (`creditflow.trade.service`) stores them and runs the match.

Numbers
    Money is integer fen (``*_minor``). Quantities are `Decimal` with at most 3 decimals; unit prices are
    `Decimal` yuan *excluding VAT* (不含税单价, as printed on a VAT invoice and as a purchase order states
    them here) with at most 4 decimals.

Line arithmetic (invoice lines; purchase-order lines check the first rule only)
    * net = quantity x unit price, rounded half-up to the fen, must equal the stated net;
    * tax = net x rate, rounded half-up to the fen, may differ from the stated tax by at most 1 fen
      (Chinese invoices compute tax per line, and issuing systems round in slightly different ways);
    * net + tax = gross, exactly;
    * the rate is one of the allowed VAT rates (whole percent);
    * a document's totals are the sums of its lines (totals a source states must equal them).

Errors are values: every ``validate_*`` returns a list of `RowError` (row = 1-based data row of the
source file, 0 for the file or a document as a whole), empty when the document is valid.

Digest
    `document_digest` is SHA-256 over ``b"creditflow/trade/v1\\0"`` and the canonical bytes
    (`creditflow.kernel.encoding.encode`) of `canonical_dict`: the document's fields, its lines sorted
    by line number, decimals in plain shortest form ("10.500" -> "10.5"); source row numbers are not part
    of it, so re-ordering rows or re-formatting cells ("1,000.00" vs "1000") leaves it unchanged.

The three-way match of an invoice with its order and receipts is in `creditflow.trade.match`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from typing import Any, ClassVar

from creditflow.kernel.encoding import encode
from creditflow.kernel.errors import InvalidInput
from creditflow.kernel.money import CURRENCIES, MAX_AMOUNT_MINOR, format_minor
from creditflow.kernel.uscc import validate_uscc

DIGEST_PREFIX = b"creditflow/trade/v1\0"
DEFAULT_TAX_RATES_PCT: tuple[int, ...] = (0, 1, 3, 6, 9, 13)
QUANTITY_DECIMALS = 3
PRICE_DECIMALS = 4
MAX_QUANTITY = Decimal(10) ** 12
MAX_UNIT_PRICE = Decimal(10) ** 12
NUMBER_MAX_CHARS = 64
ITEM_MAX_CHARS = 200
TAX_TOLERANCE_MINOR = 1

# Enough digits for any product of a 3-decimal quantity and a 4-decimal price below the maxima.
_CTX = Context(prec=60, rounding=ROUND_HALF_UP)
_ONE = Decimal(1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HUNDRED = Decimal(100)


class DocKind(StrEnum):
    PO = "po"
    RECEIPT = "receipt"
    INVOICE = "invoice"


NUMBER_FIELD = {DocKind.PO: "po_number", DocKind.RECEIPT: "receipt_number", DocKind.INVOICE: "invoice_number"}
DATE_FIELD = {DocKind.PO: "order_date", DocKind.RECEIPT: "receipt_date", DocKind.INVOICE: "invoice_date"}
KIND_NAME = {DocKind.PO: "purchase order", DocKind.RECEIPT: "goods receipt", DocKind.INVOICE: "invoice"}


@dataclass(frozen=True, slots=True)
class RowError:
    """One reason a row (or, with row 0, a file or document) was refused. ``field`` names the column."""

    row: int
    field: str
    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class RejectedDocument:
    """A document refused whole, with every reason (``number`` is "" when the rows named none)."""

    kind: DocKind
    number: str
    seller_uscc: str
    row: int
    errors: tuple[RowError, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "number": self.number,
            "seller_uscc": self.seller_uscc,
            "row": self.row,
            "errors": [e.to_json() for e in self.errors],
        }


# --- documents ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoLine:
    line_no: int
    item: str
    quantity: Decimal
    unit_price: Decimal
    net_minor: int
    row: int = 0


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    number: str
    buyer_uscc: str
    seller_uscc: str
    order_date: dt.date
    currency: str
    lines: tuple[PoLine, ...]
    stated_net_minor: int | None = None
    row: int = 0

    kind: ClassVar[DocKind] = DocKind.PO

    @property
    def doc_date(self) -> dt.date:
        return self.order_date

    @property
    def po_number(self) -> str | None:
        return None

    @property
    def net_minor(self) -> int:
        return sum(line.net_minor for line in self.lines)

    @property
    def tax_minor(self) -> int | None:
        return None

    @property
    def gross_minor(self) -> int | None:
        return None


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    line_no: int
    po_line_no: int
    item: str
    quantity_received: Decimal
    row: int = 0


@dataclass(frozen=True, slots=True)
class GoodsReceipt:
    number: str
    po_number: str
    buyer_uscc: str
    seller_uscc: str
    receipt_date: dt.date
    lines: tuple[ReceiptLine, ...]
    row: int = 0

    kind: ClassVar[DocKind] = DocKind.RECEIPT

    @property
    def doc_date(self) -> dt.date:
        return self.receipt_date

    @property
    def currency(self) -> str | None:
        return None

    @property
    def net_minor(self) -> int | None:
        return None

    @property
    def tax_minor(self) -> int | None:
        return None

    @property
    def gross_minor(self) -> int | None:
        return None


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    line_no: int
    po_line_no: int
    item: str
    quantity: Decimal
    unit_price: Decimal
    net_minor: int
    tax_rate_pct: int
    tax_minor: int
    gross_minor: int
    row: int = 0


@dataclass(frozen=True, slots=True)
class Totals:
    net_minor: int
    tax_minor: int
    gross_minor: int


@dataclass(frozen=True, slots=True)
class Invoice:
    number: str
    po_number: str | None
    buyer_uscc: str
    seller_uscc: str
    invoice_date: dt.date
    currency: str
    lines: tuple[InvoiceLine, ...]
    stated_totals: Totals | None = None
    row: int = 0

    kind: ClassVar[DocKind] = DocKind.INVOICE

    @property
    def doc_date(self) -> dt.date:
        return self.invoice_date

    @property
    def net_minor(self) -> int:
        return sum(line.net_minor for line in self.lines)

    @property
    def tax_minor(self) -> int:
        return sum(line.tax_minor for line in self.lines)

    @property
    def gross_minor(self) -> int:
        return sum(line.gross_minor for line in self.lines)


TradeDocument = PurchaseOrder | GoodsReceipt | Invoice
TradeLine = PoLine | ReceiptLine | InvoiceLine


# --- arithmetic --------------------------------------------------------------------------------------


def decimal_text(value: Decimal) -> str:
    """Plain shortest text of a finite decimal: ``Decimal("10.500")`` -> ``"10.5"``, ``1E+2`` -> ``"100"``."""
    assert value.is_finite(), value
    text = format(value.normalize(_CTX), "f")
    return "0" if text in ("-0", "") else text


def decimals_of(value: Decimal) -> int:
    """How many decimals ``value`` really has (trailing zeros do not count)."""
    exponent = value.normalize(_CTX).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _round_fen(yuan_times_100: Decimal) -> int:
    return int(yuan_times_100.quantize(_ONE, rounding=ROUND_HALF_UP, context=_CTX))


def line_net_minor(quantity: Decimal, unit_price: Decimal) -> int:
    """quantity x unit price (yuan), rounded half-up to the fen."""
    return _round_fen(_CTX.multiply(_CTX.multiply(quantity, unit_price), _HUNDRED))


def line_tax_minor(net_minor: int, tax_rate_pct: int) -> int:
    """net x rate, rounded half-up to the fen."""
    return _round_fen(_CTX.divide(_CTX.multiply(Decimal(net_minor), Decimal(tax_rate_pct)), _HUNDRED))


def price_text(value: Decimal) -> str:
    """A unit price for people: ``Decimal("1250")`` -> ``"1,250.00 yuan"``, ``2.3456`` stays ``"2.3456 yuan"``."""
    shown = value.normalize(_CTX)
    if decimals_of(shown) < 2:
        shown = shown.quantize(Decimal("0.01"), context=_CTX)
    return f"{shown:,f} yuan"


# --- validation --------------------------------------------------------------------------------------


def _err(errors: list[RowError], row: int, field_name: str, code: str, message: str) -> None:
    errors.append(RowError(row, field_name, code, message))


def _check_text(
    errors: list[RowError], row: int, field_name: str, value: str, max_chars: int, *, required: bool
) -> None:
    if not value:
        if required:
            _err(errors, row, field_name, "missing_value", f"{field_name} is empty")
        return
    if len(value) > max_chars:
        _err(errors, row, field_name, "too_long", f"{field_name} has {len(value)} characters, at most {max_chars}")
    if _CONTROL.search(value):
        _err(errors, row, field_name, "invalid_text", f"{field_name} contains control characters")


def _check_header(doc: TradeDocument, errors: list[RowError]) -> None:
    row = doc.row
    _check_text(errors, row, NUMBER_FIELD[doc.kind], doc.number, NUMBER_MAX_CHARS, required=True)
    for field_name in ("buyer_uscc", "seller_uscc"):
        try:
            validate_uscc(getattr(doc, field_name), field=field_name)
        except InvalidInput as exc:
            _err(errors, row, field_name, exc.code, exc.message)
    if doc.buyer_uscc == doc.seller_uscc:
        _err(errors, row, "seller_uscc", "same_party", "the buyer and the seller are the same party")
    if not isinstance(doc, GoodsReceipt) and doc.currency not in CURRENCIES:
        _err(
            errors,
            row,
            "currency",
            "invalid_currency",
            f"currency {doc.currency!r} is not accepted (accepted: {', '.join(sorted(CURRENCIES))})",
        )
    if doc.po_number is not None:  # required on a receipt, optional on an invoice, absent on an order
        _check_text(errors, row, "po_number", doc.po_number, NUMBER_MAX_CHARS, required=True)
    if not doc.lines:
        _err(errors, row, "lines", "no_lines", f"the {KIND_NAME[doc.kind]} has no lines")
    first_row: dict[int, int] = {}
    for line in doc.lines:
        if line.line_no < 1:
            _err(errors, line.row, "line_no", "invalid_line_no", f"line_no must be 1 or more, got {line.line_no}")
        elif line.line_no in first_row:
            _err(
                errors,
                line.row,
                "line_no",
                "duplicate_line",
                f"line {line.line_no} appears twice in {doc.number} (first at row {first_row[line.line_no]})",
            )
        else:
            first_row[line.line_no] = line.row
        if not isinstance(line, PoLine) and line.po_line_no < 1:
            _err(
                errors,
                line.row,
                "po_line_no",
                "invalid_line_no",
                f"po_line_no must be 1 or more, got {line.po_line_no}",
            )
        _check_text(errors, line.row, "item", line.item, ITEM_MAX_CHARS, required=False)


def _check_quantity(errors: list[RowError], row: int, field_name: str, value: Decimal) -> bool:
    if not value.is_finite() or value <= 0:
        _err(errors, row, field_name, "invalid_quantity", f"{field_name} must be greater than zero")
        return False
    if value > MAX_QUANTITY:
        _err(errors, row, field_name, "invalid_quantity", f"{field_name} {decimal_text(value)} is too large")
        return False
    if decimals_of(value) > QUANTITY_DECIMALS:
        _err(
            errors,
            row,
            field_name,
            "invalid_quantity",
            f"{field_name} {decimal_text(value)} has more than {QUANTITY_DECIMALS} decimals",
        )
        return False
    return True


def _check_price(errors: list[RowError], row: int, value: Decimal) -> bool:
    if not value.is_finite() or value <= 0:
        _err(errors, row, "unit_price", "invalid_price", "unit_price must be greater than zero")
        return False
    if value > MAX_UNIT_PRICE:
        _err(errors, row, "unit_price", "invalid_price", f"unit_price {decimal_text(value)} is too large")
        return False
    if decimals_of(value) > PRICE_DECIMALS:
        _err(
            errors,
            row,
            "unit_price",
            "invalid_price",
            f"unit_price {decimal_text(value)} has more than {PRICE_DECIMALS} decimals",
        )
        return False
    return True


def _check_amount(errors: list[RowError], row: int, field_name: str, value: int, *, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        _err(errors, row, field_name, "invalid_amount", f"{field_name} must be an integer number of fen")
        return False
    if value < 0 or (value == 0 and not allow_zero):
        _err(errors, row, field_name, "invalid_amount", f"{field_name} must be greater than zero")
        return False
    if value > MAX_AMOUNT_MINOR:
        _err(errors, row, field_name, "invalid_amount", f"{field_name} exceeds the maximum amount")
        return False
    return True


def _check_net(errors: list[RowError], line: PoLine | InvoiceLine, currency: str) -> bool:
    """Check quantity, unit price and net; return whether net is a valid amount."""
    quantity_ok = _check_quantity(errors, line.row, "quantity", line.quantity)
    price_ok = _check_price(errors, line.row, line.unit_price)
    net_ok = _check_amount(errors, line.row, "net", line.net_minor)
    if quantity_ok and price_ok and net_ok:
        expected = line_net_minor(line.quantity, line.unit_price)
        if expected != line.net_minor:
            _err(
                errors,
                line.row,
                "net",
                "net_mismatch",
                f"line {line.line_no}: net {format_minor(line.net_minor, currency)} is not quantity "
                f"{decimal_text(line.quantity)} x unit price {decimal_text(line.unit_price)} = "
                f"{format_minor(expected, currency)} (rounded half-up to the fen)",
            )
    return net_ok


def validate_purchase_order(po: PurchaseOrder) -> list[RowError]:
    errors: list[RowError] = []
    _check_header(po, errors)
    for line in po.lines:
        _check_net(errors, line, po.currency)
    if po.stated_net_minor is not None and not errors and po.stated_net_minor != po.net_minor:
        _err(
            errors,
            po.row,
            "total_net",
            "total_mismatch",
            f"stated total {format_minor(po.stated_net_minor, po.currency)} is not the sum of the lines, "
            f"{format_minor(po.net_minor, po.currency)}",
        )
    return errors


def validate_goods_receipt(receipt: GoodsReceipt) -> list[RowError]:
    errors: list[RowError] = []
    _check_header(receipt, errors)
    for line in receipt.lines:
        _check_quantity(errors, line.row, "quantity_received", line.quantity_received)
    return errors


def validate_invoice(invoice: Invoice, allowed_tax_rates_pct: Iterable[int] = DEFAULT_TAX_RATES_PCT) -> list[RowError]:
    allowed = sorted(set(allowed_tax_rates_pct))
    errors: list[RowError] = []
    _check_header(invoice, errors)
    cur = invoice.currency
    for line in invoice.lines:
        net_ok = _check_net(errors, line, cur)
        rate_ok = line.tax_rate_pct in allowed and not isinstance(line.tax_rate_pct, bool)
        if not rate_ok:
            _err(
                errors,
                line.row,
                "tax_rate",
                "tax_rate_not_allowed",
                f"line {line.line_no}: tax rate {line.tax_rate_pct}% is not an allowed VAT rate "
                f"({', '.join(f'{r}%' for r in allowed)})",
            )
        tax_ok = _check_amount(errors, line.row, "tax", line.tax_minor, allow_zero=True)
        gross_ok = _check_amount(errors, line.row, "gross", line.gross_minor)
        if rate_ok and tax_ok and net_ok:
            expected = line_tax_minor(line.net_minor, line.tax_rate_pct)
            if abs(expected - line.tax_minor) > TAX_TOLERANCE_MINOR:
                _err(
                    errors,
                    line.row,
                    "tax",
                    "tax_mismatch",
                    f"line {line.line_no}: tax {format_minor(line.tax_minor, cur)} is not {line.tax_rate_pct}% of "
                    f"net {format_minor(line.net_minor, cur)} = {format_minor(expected, cur)} "
                    f"(at most 0.01 apart)",
                )
        if tax_ok and gross_ok and net_ok and line.net_minor + line.tax_minor != line.gross_minor:
            _err(
                errors,
                line.row,
                "gross",
                "gross_mismatch",
                f"line {line.line_no}: net {format_minor(line.net_minor, cur)} + tax "
                f"{format_minor(line.tax_minor, cur)} = {format_minor(line.net_minor + line.tax_minor, cur)}, "
                f"not the stated gross {format_minor(line.gross_minor, cur)}",
            )
    stated = invoice.stated_totals
    if stated is not None and not errors:
        for name, given, summed in (
            ("total_net", stated.net_minor, invoice.net_minor),
            ("total_tax", stated.tax_minor, invoice.tax_minor),
            ("total_gross", stated.gross_minor, invoice.gross_minor),
        ):
            if given != summed:
                _err(
                    errors,
                    invoice.row,
                    name,
                    "total_mismatch",
                    f"stated {name} {format_minor(given, cur)} is not the sum of the lines, {format_minor(summed, cur)}",
                )
    if invoice.gross_minor > MAX_AMOUNT_MINOR and not errors:
        _err(errors, invoice.row, "gross", "invalid_amount", "the invoice total exceeds the maximum amount")
    return errors


def validate_document(
    doc: TradeDocument, allowed_tax_rates_pct: Iterable[int] = DEFAULT_TAX_RATES_PCT
) -> list[RowError]:
    if isinstance(doc, PurchaseOrder):
        return validate_purchase_order(doc)
    if isinstance(doc, GoodsReceipt):
        return validate_goods_receipt(doc)
    return validate_invoice(doc, allowed_tax_rates_pct)


def check_dates_in_order(doc: GoodsReceipt | Invoice, order_date: dt.date) -> list[RowError]:
    """A receipt or an invoice may not be dated before its purchase order (dated ``order_date``)."""
    if doc.doc_date >= order_date:
        return []
    field_name = DATE_FIELD[doc.kind]
    return [
        RowError(
            doc.row,
            field_name,
            "date_out_of_order",
            f"{field_name} {doc.doc_date.isoformat()} is before the date of purchase order {doc.po_number}, "
            f"{order_date.isoformat()}",
        )
    ]


# --- canonical form and digest -----------------------------------------------------------------------


def _line_dict(line: PoLine | ReceiptLine | InvoiceLine) -> dict[str, Any]:
    if isinstance(line, PoLine):
        return {
            "line_no": line.line_no,
            "item": line.item,
            "quantity": decimal_text(line.quantity),
            "unit_price": decimal_text(line.unit_price),
            "net_minor": line.net_minor,
        }
    if isinstance(line, ReceiptLine):
        return {
            "line_no": line.line_no,
            "po_line_no": line.po_line_no,
            "item": line.item,
            "quantity_received": decimal_text(line.quantity_received),
        }
    return {
        "line_no": line.line_no,
        "po_line_no": line.po_line_no,
        "item": line.item,
        "quantity": decimal_text(line.quantity),
        "unit_price": decimal_text(line.unit_price),
        "net_minor": line.net_minor,
        "tax_rate_pct": line.tax_rate_pct,
        "tax_minor": line.tax_minor,
        "gross_minor": line.gross_minor,
    }


def canonical_dict(doc: TradeDocument) -> dict[str, Any]:
    """What the digest covers: everything the document says, nothing about where it came from."""
    lines = sorted((_line_dict(line) for line in doc.lines), key=lambda d: (d["line_no"], encode(d)))
    return {
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
        "lines": lines,
    }


def document_digest(doc: TradeDocument) -> str:
    return hashlib.sha256(DIGEST_PREFIX + encode(canonical_dict(doc))).hexdigest()
