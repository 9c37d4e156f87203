"""Trade documents: validation rules, per-line arithmetic, the digest and the three-way match."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditflow.kernel.encoding import encode
from creditflow.kernel.uscc import make_uscc
from creditflow.trade.documents import (
    DEFAULT_TAX_RATES_PCT,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    PoLine,
    PurchaseOrder,
    ReceiptLine,
    RowError,
    Totals,
    canonical_dict,
    check_dates_in_order,
    decimal_text,
    document_digest,
    line_net_minor,
    line_tax_minor,
    validate_goods_receipt,
    validate_invoice,
    validate_purchase_order,
)
from creditflow.trade.match import MatchStatus, three_way_match

BUYER = make_uscc("91320300134780001")
SELLER = make_uscc("91320300134780002")
OTHER = make_uscc("91320300134780003")
ORDERED = dt.date(2026, 3, 2)
RECEIVED = dt.date(2026, 3, 9)
INVOICED = dt.date(2026, 3, 10)


def po_line(n: int, qty: str, price: str, *, row: int | None = None) -> PoLine:
    q, p = Decimal(qty), Decimal(price)
    return PoLine(n, f"item {n}", q, p, line_net_minor(q, p), row if row is not None else n)


def make_po(*lines: PoLine, number: str = "PO-1", **changes: object) -> PurchaseOrder:
    po = PurchaseOrder(number, BUYER, SELLER, ORDERED, "CNY", lines or (po_line(1, "100", "100.00"),), row=1)
    return dataclasses.replace(po, **changes)  # type: ignore[arg-type]


def receipt(*quantities: tuple[int, str], number: str = "GR-1", **changes: object) -> GoodsReceipt:
    lines = tuple(
        ReceiptLine(i, po_line_no, f"item {po_line_no}", Decimal(q), i)
        for i, (po_line_no, q) in enumerate(quantities, 1)
    )
    doc = GoodsReceipt(number, "PO-1", BUYER, SELLER, RECEIVED, lines, row=1)
    return dataclasses.replace(doc, **changes)  # type: ignore[arg-type]


def inv_line(
    n: int,
    qty: str,
    price: str,
    rate: int = 13,
    *,
    po_line_no: int | None = None,
    net: int | None = None,
    tax_delta: int = 0,
    gross: int | None = None,
    row: int | None = None,
) -> InvoiceLine:
    q, p = Decimal(qty), Decimal(price)
    net_minor = line_net_minor(q, p) if net is None else net
    tax = line_tax_minor(net_minor, rate) + tax_delta
    return InvoiceLine(
        n,
        po_line_no if po_line_no is not None else n,
        f"item {n}",
        q,
        p,
        net_minor,
        rate,
        tax,
        net_minor + tax if gross is None else gross,
        row if row is not None else n,
    )


def make_invoice(*lines: InvoiceLine, number: str = "INV-1", **changes: object) -> Invoice:
    doc = Invoice(number, "PO-1", BUYER, SELLER, INVOICED, "CNY", lines or (inv_line(1, "100", "100.00"),), row=1)
    return dataclasses.replace(doc, **changes)  # type: ignore[arg-type]


def codes(errors: list[RowError]) -> list[tuple[int, str, str]]:
    return [(e.row, e.field, e.code) for e in errors]


# --- arithmetic ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "price", "fen"),
    [
        ("1", "0.125", 13),  # 12.5 fen: half-up, not banker's (which gives 12)
        ("1", "0.145", 15),
        ("1", "0.0049", 0),
        ("1", "0.005", 1),
        ("3", "0.3335", 100),  # 1.0005 yuan
        ("2.5", "1.2345", 309),  # 3.08625 yuan
        ("100", "1250", 12_500_000),
        ("0.001", "0.0001", 0),
    ],
)
def test_line_net_rounds_half_up_to_the_fen(qty: str, price: str, fen: int) -> None:
    assert line_net_minor(Decimal(qty), Decimal(price)) == fen


@pytest.mark.parametrize(
    ("net", "rate", "tax"),
    [(10_000, 13, 1300), (5, 13, 1), (4, 13, 1), (3, 13, 0), (50, 1, 1), (150, 3, 5), (0, 13, 0)],
)
def test_line_tax_rounds_half_up(net: int, rate: int, tax: int) -> None:
    assert line_tax_minor(net, rate) == tax


def test_decimal_text_is_plain_and_shortest() -> None:
    assert decimal_text(Decimal("10.500")) == "10.5"
    assert decimal_text(Decimal("1E+2")) == "100"
    assert decimal_text(Decimal("0.000")) == "0"
    assert decimal_text(Decimal("2000")) == "2000"


# --- validation ----------------------------------------------------------------------------------------


def test_valid_documents_have_no_errors() -> None:
    assert validate_purchase_order(make_po(po_line(1, "100", "1250"), po_line(2, "500", "38.6"))) == []
    assert validate_goods_receipt(receipt((1, "100"), (2, "500"))) == []
    assert validate_invoice(make_invoice(inv_line(1, "100", "1250"), inv_line(2, "500", "38.6", 9))) == []


def test_uscc_check_characters_of_buyer_and_seller() -> None:
    bad = BUYER[:-1] + ("0" if BUYER[-1] != "0" else "1")
    errors = validate_invoice(make_invoice(buyer_uscc=bad, seller_uscc="12345"))
    assert codes(errors) == [(1, "buyer_uscc", "invalid_uscc"), (1, "seller_uscc", "invalid_uscc")]
    assert "check character" in errors[0].message


def test_buyer_and_seller_must_differ() -> None:
    assert codes(validate_purchase_order(make_po(seller_uscc=BUYER))) == [(1, "seller_uscc", "same_party")]


def test_currency_must_be_accepted() -> None:
    errors = validate_invoice(make_invoice(currency="USD"))
    assert codes(errors) == [(1, "currency", "invalid_currency")]
    assert "USD" in errors[0].message


def test_net_must_be_quantity_times_price() -> None:
    line = inv_line(1, "3", "0.3335", net=101, row=7)
    errors = validate_invoice(make_invoice(line))
    assert (7, "net", "net_mismatch") in codes(errors)
    message = next(e.message for e in errors if e.code == "net_mismatch")
    assert "1.01" in message and "1.00" in message and "0.3335" in message


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_tax_may_differ_by_one_fen_per_line(delta: int) -> None:
    assert validate_invoice(make_invoice(inv_line(1, "3", "33.33", tax_delta=delta))) == []


@pytest.mark.parametrize("delta", [-2, 2, 100])
def test_tax_off_by_more_than_one_fen_is_refused(delta: int) -> None:
    errors = validate_invoice(make_invoice(inv_line(1, "3", "33.33", tax_delta=delta, row=4)))
    assert codes(errors) == [(4, "tax", "tax_mismatch")]
    assert "13%" in errors[0].message and "99.99" in errors[0].message


def test_gross_is_net_plus_tax_exactly() -> None:
    good = inv_line(1, "100", "100")
    errors = validate_invoice(make_invoice(dataclasses.replace(good, gross_minor=good.gross_minor + 1)))
    assert codes(errors) == [(1, "gross", "gross_mismatch")]
    assert "11,300.00" in errors[0].message and "11,300.01" in errors[0].message


def test_tax_rate_must_be_allowed() -> None:
    assert codes(validate_invoice(make_invoice(inv_line(1, "1", "100", 5)))) == [
        (1, "tax_rate", "tax_rate_not_allowed")
    ]
    for rate in DEFAULT_TAX_RATES_PCT:
        assert validate_invoice(make_invoice(inv_line(1, "1", "100", rate))) == []
    # the allowed set is configuration
    assert codes(validate_invoice(make_invoice(inv_line(1, "1", "100", 9)), (13,))) == [
        (1, "tax_rate", "tax_rate_not_allowed")
    ]


def test_zero_rate_with_zero_tax() -> None:
    assert validate_invoice(make_invoice(inv_line(1, "10", "10", 0))) == []


@pytest.mark.parametrize(
    ("qty", "price", "field", "code"),
    [
        ("1.0001", "10", "quantity", "invalid_quantity"),
        ("0", "10", "quantity", "invalid_quantity"),
        ("-1", "10", "quantity", "invalid_quantity"),
        ("1", "10.00001", "unit_price", "invalid_price"),
        ("1", "0", "unit_price", "invalid_price"),
    ],
)
def test_quantity_and_price_precision_and_sign(qty: str, price: str, field: str, code: str) -> None:
    line = PoLine(1, "x", Decimal(qty), Decimal(price), 1000, 3)
    assert (3, field, code) in codes(validate_purchase_order(make_po(line)))


def test_quantity_with_three_decimals_and_price_with_four_are_fine() -> None:
    assert validate_purchase_order(make_po(po_line(1, "1.125", "10.1234"))) == []
    assert validate_purchase_order(make_po(po_line(1, "1.12500", "10.12340"))) == []


def test_every_bad_line_is_reported() -> None:
    lines = (
        inv_line(1, "1", "100", row=2),
        inv_line(2, "1", "100", net=1, row=3),
        inv_line(3, "1", "100", 7, row=4),
        inv_line(4, "1", "100", tax_delta=5, row=5),
    )
    assert [e.row for e in validate_invoice(make_invoice(*lines))] == [3, 4, 5]


def test_duplicate_line_numbers_and_empty_documents() -> None:
    errors = validate_purchase_order(make_po(po_line(1, "1", "1", row=2), po_line(1, "2", "1", row=5)))
    assert codes(errors) == [(5, "line_no", "duplicate_line")]
    assert "row 2" in errors[0].message
    empty = GoodsReceipt("GR-1", "PO-1", BUYER, SELLER, RECEIVED, (), row=1)
    assert codes(validate_goods_receipt(empty)) == [(1, "lines", "no_lines")]


def test_numbers_and_items_are_bounded_text() -> None:
    errors = validate_purchase_order(make_po(number="P" * 65))
    assert codes(errors) == [(1, "po_number", "too_long")]
    errors = validate_purchase_order(make_po(PoLine(1, "bad\x07item", Decimal(1), Decimal(1), 100, 2)))
    assert codes(errors) == [(2, "item", "invalid_text")]
    assert codes(validate_goods_receipt(receipt((1, "1"), po_number=""))) == [(1, "po_number", "missing_value")]


def test_stated_totals_must_be_the_sums() -> None:
    lines = (inv_line(1, "1", "100"), inv_line(2, "2", "100"))
    net, tax = 30_000, 3_900
    assert validate_invoice(make_invoice(*lines, stated_totals=Totals(net, tax, net + tax))) == []
    errors = validate_invoice(make_invoice(*lines, stated_totals=Totals(net, tax, net + tax + 1)))
    assert codes(errors) == [(1, "total_gross", "total_mismatch")]
    assert codes(validate_purchase_order(make_po(stated_net_minor=1))) == [(1, "total_net", "total_mismatch")]


def test_dates_in_order() -> None:
    assert check_dates_in_order(receipt((1, "1"), receipt_date=ORDERED), ORDERED) == []
    early = check_dates_in_order(make_invoice(invoice_date=ORDERED - dt.timedelta(days=1)), ORDERED)
    assert codes(early) == [(1, "invoice_date", "date_out_of_order")]
    assert "2026-03-01" in early[0].message and "2026-03-02" in early[0].message and "PO-1" in early[0].message


def test_document_totals_are_sums_of_lines() -> None:
    invoice = make_invoice(inv_line(1, "1", "100"), inv_line(2, "3", "33.33"))
    assert invoice.net_minor == 10_000 + 9_999
    assert invoice.gross_minor == invoice.net_minor + invoice.tax_minor
    assert make_po(po_line(1, "2", "5"), po_line(2, "1", "1")).net_minor == 1_100


# --- digest --------------------------------------------------------------------------------------------


def test_digest_is_domain_separated_sha256_of_the_canonical_bytes() -> None:
    invoice = make_invoice(inv_line(1, "100", "1250"), inv_line(2, "500", "38.6"))
    expected = hashlib.sha256(b"creditflow/trade/v1\0" + encode(canonical_dict(invoice))).hexdigest()
    assert document_digest(invoice) == expected


def test_digest_golden_vector() -> None:
    """Pins the canonical form: changing it silently would make every stored document a 'conflict'."""
    po = make_po(po_line(1, "100", "1250.00"), po_line(2, "2000.000", "2.35"))
    assert canonical_dict(po)["lines"][1] == {
        "line_no": 2,
        "item": "item 2",
        "quantity": "2000",
        "unit_price": "2.35",
        "net_minor": 470_000,
    }
    canonical = (
        b'{"buyer_uscc":"91320300134780001W","currency":"CNY","date":"2026-03-02","gross_minor":null,"kind":"po",'
        b'"lines":[{"item":"item 1","line_no":1,"net_minor":12500000,"quantity":"100","unit_price":"1250"},'
        b'{"item":"item 2","line_no":2,"net_minor":470000,"quantity":"2000","unit_price":"2.35"}],'
        b'"net_minor":12970000,"number":"PO-1","po_number":null,"seller_uscc":"913203001347800020","tax_minor":null}'
    )
    assert encode(canonical_dict(po)) == canonical
    assert document_digest(po) == "b9fd3464d94ccb1188ebec39981672a0d369d85d648db361eb27054c8e717876"


def test_digest_ignores_rows_and_number_formatting_but_not_content() -> None:
    a = make_po(po_line(1, "10.500", "2.5000", row=3))
    b = make_po(po_line(1, "10.5", "2.5", row=9), row=7)
    assert document_digest(a) == document_digest(b)
    assert document_digest(a) != document_digest(make_po(po_line(1, "10.5", "2.6")))
    assert document_digest(a) != document_digest(dataclasses.replace(a, number="PO-2"))
    assert document_digest(make_invoice()) != document_digest(make_invoice(po_number=None))


# --- properties ----------------------------------------------------------------------------------------

quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100000"), places=3)
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=4)
rates = st.sampled_from(DEFAULT_TAX_RATES_PCT)


@st.composite
def valid_lines(draw: st.DrawFn) -> list[InvoiceLine]:
    count = draw(st.integers(min_value=1, max_value=8))
    lines = []
    for n in range(1, count + 1):
        q, p = draw(quantities), draw(prices)
        if line_net_minor(q, p) == 0:  # a line worth less than half a fen: not a valid line
            q, p = Decimal(1), Decimal(1)
        lines.append(inv_line(n, str(q), str(p), draw(rates), tax_delta=draw(st.sampled_from([-1, 0, 1]))))
    return [line for line in lines if line.tax_minor >= 0]


@settings(max_examples=200, deadline=None)
@given(valid_lines(), st.randoms(use_true_random=False))
def test_random_valid_lines_hold_the_arithmetic_and_digest_ignores_line_order(
    lines: list[InvoiceLine], rnd: object
) -> None:
    invoice = make_invoice(*lines)
    assert validate_invoice(invoice) == []
    for line in invoice.lines:
        assert line.net_minor + line.tax_minor == line.gross_minor
        assert line.net_minor == line_net_minor(line.quantity, line.unit_price)
        assert abs(line.tax_minor - line_tax_minor(line.net_minor, line.tax_rate_pct)) <= 1
    assert invoice.net_minor + invoice.tax_minor == invoice.gross_minor
    shuffled = list(lines)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert document_digest(make_invoice(*shuffled)) == document_digest(invoice)


@settings(max_examples=200, deadline=None)
@given(quantities, prices, rates, st.integers(min_value=2, max_value=10_000), st.booleans())
def test_tax_off_by_two_fen_or_more_is_always_refused(
    qty: Decimal, price: Decimal, rate: int, off: int, up: bool
) -> None:
    line = inv_line(1, str(qty), str(price), rate)
    delta = off if up else -off
    if line.tax_minor + delta < 0 or line.net_minor == 0:
        return
    bad = dataclasses.replace(line, tax_minor=line.tax_minor + delta, gross_minor=line.gross_minor + delta)
    assert [e.code for e in validate_invoice(make_invoice(bad))] == ["tax_mismatch"]


# --- three-way match -----------------------------------------------------------------------------------


def statuses(result: object) -> list[tuple[int, MatchStatus]]:
    return [(line.line_no, line.status) for line in result.lines]  # type: ignore[attr-defined]


def test_exact_match_is_eligible_for_the_invoice_gross() -> None:
    po = make_po(po_line(1, "100", "1250"), po_line(2, "500", "38.6"))
    invoice = make_invoice(inv_line(1, "100", "1250"), inv_line(2, "500", "38.6"))
    gr = receipt((1, "100"), (2, "500"))
    result = three_way_match(po, [gr], invoice)
    assert result.ok and result.eligible_minor == invoice.gross_minor == 16_305_900
    assert result.document_digests == (document_digest(invoice), document_digest(po), document_digest(gr))
    assert statuses(result) == [(1, MatchStatus.MATCHED), (2, MatchStatus.MATCHED)]
    assert result.mismatches == 0
    assert result.to_json()["lines"][0]["status"] == "matched"


def test_receipts_add_up_across_deliveries() -> None:
    po = make_po(po_line(1, "100", "10"))
    result = three_way_match(
        po, [receipt((1, "60")), receipt((1, "40"), number="GR-2")], make_invoice(inv_line(1, "100", "10"))
    )
    assert result.ok


def test_quantity_invoiced_must_be_quantity_received() -> None:
    po = make_po(po_line(1, "100", "10"))
    result = three_way_match(po, [receipt((1, "90"))], make_invoice(inv_line(1, "100", "10")))
    assert not result.ok and result.eligible_minor == 0
    assert statuses(result) == [(1, MatchStatus.QUANTITY_MISMATCH)]
    explanation = result.lines[0].explanation
    assert "invoices 100" in explanation and "90 received" in explanation and "0%" in explanation


def test_quantity_tolerance_is_configurable() -> None:
    po = make_po(po_line(1, "110", "10"))
    invoice = make_invoice(inv_line(1, "105", "10"))
    assert not three_way_match(po, [receipt((1, "100"))], invoice).ok
    assert three_way_match(po, [receipt((1, "100"))], invoice, Decimal(5)).ok
    assert not three_way_match(po, [receipt((1, "100"))], invoice, Decimal("4.9")).ok


def test_price_within_one_percent_is_accepted() -> None:
    po = make_po(po_line(1, "10", "100.00"))
    for price in ("100.90", "99.10", "101.00"):
        assert three_way_match(po, [receipt((1, "10"))], make_invoice(inv_line(1, "10", price))).ok, price


def test_price_beyond_one_percent_is_refused_with_the_numbers() -> None:
    po = make_po(po_line(1, "10", "100.00"))
    result = three_way_match(po, [receipt((1, "10"))], make_invoice(inv_line(1, "10", "101.10")))
    assert statuses(result) == [(1, MatchStatus.PRICE_MISMATCH)]
    explanation = result.lines[0].explanation
    assert "101.10 yuan" in explanation and "100.00 yuan" in explanation
    assert "+1.10%" in explanation and "1% tolerance" in explanation
    below = three_way_match(po, [receipt((1, "10"))], make_invoice(inv_line(1, "10", "98.90")))
    assert "-1.10%" in below.lines[0].explanation
    # a wider tolerance lets it through
    assert three_way_match(
        po, [receipt((1, "10"))], make_invoice(inv_line(1, "10", "101.10")), price_tol_pct=Decimal(2)
    ).ok


def test_more_invoiced_than_ordered() -> None:
    po = make_po(po_line(1, "100", "10"))
    result = three_way_match(po, [receipt((1, "120"))], make_invoice(inv_line(1, "120", "10")))
    assert statuses(result) == [(1, MatchStatus.OVER_INVOICED)]
    assert "120" in result.lines[0].explanation and "only 100 were ordered" in result.lines[0].explanation


def test_earlier_invoices_use_up_what_was_received() -> None:
    po = make_po(po_line(1, "100", "10"))
    receipts = [receipt((1, "100"))]
    first = make_invoice(inv_line(1, "60", "10"), number="INV-1")
    second = make_invoice(inv_line(1, "60", "10"), number="INV-2")
    assert not three_way_match(po, receipts, first).ok  # 60 of 100 received is a quantity mismatch by itself...
    assert three_way_match(po, [receipt((1, "60"))], first).ok  # ...but matches the 60 delivered
    result = three_way_match(po, receipts, second, earlier_invoices=[first])
    assert statuses(result) == [(1, MatchStatus.OVER_INVOICED), (1, MatchStatus.QUANTITY_MISMATCH)]
    assert "60 are already on earlier invoices" in result.lines[0].explanation
    assert "40 received and not yet invoiced" in result.lines[1].explanation
    third = make_invoice(inv_line(1, "40", "10"), number="INV-3")
    assert three_way_match(po, receipts, third, earlier_invoices=[first]).ok


def test_missing_receipt() -> None:
    po = make_po(po_line(1, "100", "10"), po_line(2, "5", "10"))
    result = three_way_match(po, [], make_invoice(inv_line(1, "100", "10"), inv_line(2, "5", "10")))
    assert statuses(result) == [(1, MatchStatus.NOT_RECEIVED), (2, MatchStatus.NOT_RECEIVED)]
    assert result.eligible_minor == 0
    assert "no goods receipt" in result.lines[0].explanation and "receipts counted: none" in result.lines[0].explanation


def test_invoice_line_without_po_line() -> None:
    po = make_po(po_line(1, "1", "10"))
    result = three_way_match(
        po, [receipt((1, "1"))], make_invoice(inv_line(1, "1", "10"), inv_line(2, "1", "10", po_line_no=9))
    )
    assert statuses(result) == [(1, MatchStatus.MATCHED), (2, MatchStatus.NO_PO_LINE)]
    assert "line 9" in result.lines[1].explanation and "it has 1" in result.lines[1].explanation


def test_invoice_lines_on_the_same_po_line_are_added_up() -> None:
    po = make_po(po_line(1, "100", "10"))
    invoice = make_invoice(inv_line(1, "60", "10", po_line_no=1), inv_line(2, "40", "10", po_line_no=1))
    assert three_way_match(po, [receipt((1, "100"))], invoice).ok
    short = three_way_match(po, [receipt((1, "90"))], invoice)
    assert "invoice lines 1, 2 together" in short.lines[0].explanation


def test_parties_currency_and_dates_must_agree() -> None:
    po = make_po()
    invoice = make_invoice(buyer_uscc=OTHER, currency="USD", invoice_date=ORDERED - dt.timedelta(days=3))
    result = three_way_match(po, [receipt((1, "100"))], invoice)
    found = [(line.line_no, line.status) for line in result.lines if line.line_no == 0]
    assert found == [
        (0, MatchStatus.PARTY_MISMATCH),
        (0, MatchStatus.CURRENCY_MISMATCH),
        (0, MatchStatus.DATE_OUT_OF_ORDER),
    ]
    assert OTHER in result.lines[0].explanation and BUYER in result.lines[0].explanation
    assert "2026-02-27" in result.lines[2].explanation and not result.ok


def test_receipts_of_other_parties_or_before_the_order_do_not_count() -> None:
    po = make_po()
    bad = [
        receipt((1, "100"), number="GR-X", buyer_uscc=OTHER),
        receipt((1, "100"), number="GR-Y", receipt_date=dt.date(2026, 1, 5)),
        receipt((1, "100"), number="GR-Z", po_number="PO-2"),
    ]
    result = three_way_match(po, bad, make_invoice())
    assert statuses(result) == [
        (0, MatchStatus.RECEIPT_MISMATCH),
        (0, MatchStatus.RECEIPT_MISMATCH),
        (0, MatchStatus.RECEIPT_MISMATCH),
        (1, MatchStatus.NOT_RECEIVED),
    ]
    assert "GR-X" in result.lines[0].explanation and "2026-01-05" in result.lines[1].explanation
    assert "is for purchase order PO-2, not PO-1" in result.lines[2].explanation
    assert result.document_digests == (document_digest(make_invoice()), document_digest(po))


def test_without_purchase_order_nothing_matches() -> None:
    result = three_way_match(None, [], make_invoice())
    assert statuses(result) == [(0, MatchStatus.NO_PURCHASE_ORDER)] and result.eligible_minor == 0
    assert "PO-1" in result.lines[0].explanation
    result = three_way_match(None, [], make_invoice(po_number=None))
    assert "names no purchase order" in result.lines[0].explanation
