"""The three-way match (三单匹配) of an invoice with its purchase order and goods receipts.

Pure: no I/O, no clock; the trade service (`creditflow.trade.service`) loads the documents and runs it.

Three-way match (`three_way_match`)
    An invoice is matched against its purchase order and the goods receipts for that order, per purchase
    order line, with a quantity tolerance and a unit-price tolerance in percent. Quantities invoiced on
    earlier invoices for the same order are taken off what was received, so the same delivery cannot be
    invoiced twice. The result is eligible (amount = invoice gross) only when nothing mismatches; otherwise
    each mismatch is explained in plain words with the numbers, and the eligible amount is 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from typing import Any

from creditflow.kernel.money import format_minor
from creditflow.trade.documents import (
    GoodsReceipt,
    Invoice,
    PurchaseOrder,
    TradeDocument,
    decimal_text,
    document_digest,
    price_text,
)

_CTX = Context(prec=60, rounding=ROUND_HALF_UP)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)


class MatchStatus(StrEnum):
    MATCHED = "matched"
    NO_PURCHASE_ORDER = "no_purchase_order"
    PARTY_MISMATCH = "party_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    DATE_OUT_OF_ORDER = "date_out_of_order"
    RECEIPT_MISMATCH = "receipt_mismatch"
    NO_PO_LINE = "no_po_line"
    NOT_RECEIVED = "not_received"
    QUANTITY_MISMATCH = "quantity_mismatch"
    OVER_INVOICED = "over_invoiced"
    PRICE_MISMATCH = "price_mismatch"


@dataclass(frozen=True, slots=True)
class LineMatch:
    """One finding: ``line_no`` is the invoice line (0 for the invoice as a whole)."""

    line_no: int
    status: MatchStatus
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {"line_no": self.line_no, "status": self.status.value, "explanation": self.explanation}


@dataclass(frozen=True, slots=True)
class MatchResult:
    ok: bool
    eligible_minor: int
    lines: list[LineMatch]
    invoice_number: str = ""
    po_number: str | None = None
    currency: str = "CNY"
    gross_minor: int = 0
    quantity_tolerance_pct: Decimal = Decimal(0)
    price_tolerance_pct: Decimal = Decimal(1)
    mismatches: int = 0
    # digests of the invoice, its purchase order and the receipts counted (what a confirmed payable rests on)
    document_digests: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "eligible_minor": self.eligible_minor,
            "invoice_number": self.invoice_number,
            "po_number": self.po_number,
            "currency": self.currency,
            "gross_minor": self.gross_minor,
            "quantity_tolerance_pct": decimal_text(self.quantity_tolerance_pct),
            "price_tolerance_pct": decimal_text(self.price_tolerance_pct),
            "mismatches": self.mismatches,
            "document_digests": list(self.document_digests),
            "lines": [line.to_json() for line in self.lines],
        }


def _pct(value: Decimal) -> str:
    """A deviation, to two decimals: ``"1.10%"``."""
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP, context=_CTX):f}%"


def _tol(value: Decimal) -> str:
    """A configured tolerance as given: ``"1%"``, ``"0.5%"``."""
    return f"{decimal_text(value)}%"


def _within(actual: Decimal, expected: Decimal, tolerance_pct: Decimal) -> bool:
    """|actual - expected| <= expected x tolerance / 100, exactly."""
    return _CTX.multiply(abs(actual - expected), _HUNDRED) <= _CTX.multiply(expected, tolerance_pct)


def three_way_match(
    po: PurchaseOrder | None,
    receipts: Sequence[GoodsReceipt],
    invoice: Invoice,
    qty_tol_pct: Decimal = Decimal(0),
    price_tol_pct: Decimal = Decimal(1),
    *,
    earlier_invoices: Sequence[Invoice] = (),
) -> MatchResult:
    """Match ``invoice`` against ``po`` and its ``receipts``; ``earlier_invoices`` are other invoices on the
    same order that came first (their quantities are no longer available to invoice)."""
    assert qty_tol_pct >= 0 and price_tol_pct >= 0
    cur = invoice.currency
    findings: list[LineMatch] = []
    used: list[TradeDocument] = [invoice]

    def result() -> MatchResult:
        mismatches = sum(1 for f in findings if f.status is not MatchStatus.MATCHED)
        ok = mismatches == 0
        return MatchResult(
            ok=ok,
            eligible_minor=invoice.gross_minor if ok else 0,
            lines=findings,
            invoice_number=invoice.number,
            po_number=invoice.po_number,
            currency=cur,
            gross_minor=invoice.gross_minor,
            quantity_tolerance_pct=qty_tol_pct,
            price_tolerance_pct=price_tol_pct,
            mismatches=mismatches,
            document_digests=tuple(document_digest(doc) for doc in used),
        )

    if po is None:
        reason = (
            "the invoice names no purchase order"
            if invoice.po_number is None
            else f"purchase order {invoice.po_number} of seller {invoice.seller_uscc} has not been imported"
        )
        findings.append(LineMatch(0, MatchStatus.NO_PURCHASE_ORDER, reason + ", so nothing can be matched"))
        return result()

    used.append(po)
    # --- the documents as a whole
    for role in ("buyer", "seller"):
        mine, theirs = getattr(invoice, f"{role}_uscc"), getattr(po, f"{role}_uscc")
        if mine != theirs:
            findings.append(
                LineMatch(
                    0,
                    MatchStatus.PARTY_MISMATCH,
                    f"the invoice's {role} is {mine} but purchase order {po.number}'s {role} is {theirs}",
                )
            )
    if invoice.currency != po.currency:
        findings.append(
            LineMatch(
                0,
                MatchStatus.CURRENCY_MISMATCH,
                f"the invoice is in {invoice.currency} but purchase order {po.number} is in {po.currency}",
            )
        )
    if invoice.invoice_date < po.order_date:
        findings.append(
            LineMatch(
                0,
                MatchStatus.DATE_OUT_OF_ORDER,
                f"the invoice is dated {invoice.invoice_date.isoformat()}, before purchase order {po.number} "
                f"({po.order_date.isoformat()})",
            )
        )

    # --- receipts: only those of the same parties, not dated before the order, count
    received: dict[int, Decimal] = defaultdict(Decimal)
    counted: list[str] = []
    for receipt in sorted(receipts, key=lambda r: r.number):
        problems = []
        if receipt.po_number != po.number:
            problems.append(f"is for purchase order {receipt.po_number}, not {po.number}")
        if (receipt.buyer_uscc, receipt.seller_uscc) != (po.buyer_uscc, po.seller_uscc):
            problems.append(
                f"is between buyer {receipt.buyer_uscc} and seller {receipt.seller_uscc}, not the order's parties"
            )
        if receipt.receipt_date < po.order_date:
            problems.append(
                f"is dated {receipt.receipt_date.isoformat()}, before the order ({po.order_date.isoformat()})"
            )
        if problems:
            findings.append(
                LineMatch(
                    0,
                    MatchStatus.RECEIPT_MISMATCH,
                    f"goods receipt {receipt.number} " + " and ".join(problems) + "; it is not counted",
                )
            )
            continue
        counted.append(receipt.number)
        used.append(receipt)
        for rline in receipt.lines:
            received[rline.po_line_no] += rline.quantity_received

    earlier: dict[int, Decimal] = defaultdict(Decimal)
    for other in earlier_invoices:
        for iline in other.lines:
            earlier[iline.po_line_no] += iline.quantity
    here: dict[int, Decimal] = defaultdict(Decimal)
    lines_on: dict[int, list[int]] = defaultdict(list)
    for iline in invoice.lines:
        here[iline.po_line_no] += iline.quantity
        lines_on[iline.po_line_no].append(iline.line_no)

    po_lines = {line.line_no: line for line in po.lines}
    receipts_text = ", ".join(counted) if counted else "none"
    quantity_reported: set[int] = set()
    for iline in sorted(invoice.lines, key=lambda x: x.line_no):
        n = iline.line_no
        what = f"line {n}" + (f" ({iline.item})" if iline.item else "")
        pline = po_lines.get(iline.po_line_no)
        if pline is None:
            findings.append(
                LineMatch(
                    n,
                    MatchStatus.NO_PO_LINE,
                    f"{what} refers to line {iline.po_line_no} of purchase order {po.number}, which has no such "
                    f"line (it has {', '.join(str(k) for k in sorted(po_lines)) or 'none'})",
                )
            )
            continue
        found: list[LineMatch] = []
        # quantities: per purchase-order line, whichever invoice lines carry it (reported once)
        if iline.po_line_no not in quantity_reported:
            quantity_reported.add(iline.po_line_no)
            invoiced = here[iline.po_line_no]
            together = lines_on[iline.po_line_no]
            invoiced_text = decimal_text(invoiced) + (
                f" (invoice lines {', '.join(map(str, together))} together)" if len(together) > 1 else ""
            )
            before = earlier[iline.po_line_no]
            got = received[iline.po_line_no]
            available = got - before
            before_text = f", of which {decimal_text(before)} already on earlier invoices" if before else ""
            ordered_limit = _CTX.multiply(pline.quantity, _ONE + _CTX.divide(qty_tol_pct, _HUNDRED))
            if before + invoiced > ordered_limit:
                found.append(
                    LineMatch(
                        n,
                        MatchStatus.OVER_INVOICED,
                        f"{what} invoices {invoiced_text} of purchase order line {pline.line_no}, but only "
                        f"{decimal_text(pline.quantity)} were ordered"
                        + (f" and {decimal_text(before)} are already on earlier invoices" if before else "")
                        + f" (quantity tolerance {_tol(qty_tol_pct)})",
                    )
                )
            if got <= 0:
                found.append(
                    LineMatch(
                        n,
                        MatchStatus.NOT_RECEIVED,
                        f"{what} invoices {invoiced_text} but no goods receipt for purchase order {po.number} "
                        f"records line {pline.line_no} (receipts counted: {receipts_text})",
                    )
                )
            elif available <= 0 or not _within(invoiced, available, qty_tol_pct):
                found.append(
                    LineMatch(
                        n,
                        MatchStatus.QUANTITY_MISMATCH,
                        f"{what} invoices {invoiced_text} but {decimal_text(max(available, Decimal(0)))} "
                        f"received and not yet invoiced ({decimal_text(got)} received{before_text}) on purchase "
                        f"order line {pline.line_no}; quantity tolerance {_tol(qty_tol_pct)}",
                    )
                )
        # unit price, per invoice line
        if not _within(iline.unit_price, pline.unit_price, price_tol_pct):
            deviation = _CTX.divide(_CTX.multiply(iline.unit_price - pline.unit_price, _HUNDRED), pline.unit_price)
            found.append(
                LineMatch(
                    n,
                    MatchStatus.PRICE_MISMATCH,
                    f"{what} unit price {price_text(iline.unit_price)} differs from the purchase order's "
                    f"{price_text(pline.unit_price)} by {'+' if deviation > 0 else ''}{_pct(deviation)}, more than "
                    f"the {_tol(price_tol_pct)} tolerance",
                )
            )
        if found:
            findings.extend(found)
        else:
            findings.append(
                LineMatch(
                    n,
                    MatchStatus.MATCHED,
                    f"{what}: {decimal_text(iline.quantity)} at {price_text(iline.unit_price)} = "
                    f"{format_minor(iline.net_minor, cur)} net matches purchase order line {pline.line_no} "
                    f"({decimal_text(pline.quantity)} at {price_text(pline.unit_price)}) and what was received",
                )
            )
    return result()
