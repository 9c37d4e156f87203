"""Reading ERP exports: encodings, Chinese headers, 万元, separators, and refusing what cannot be read."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from creditflow.kernel.errors import InvalidInput
from creditflow.kernel.uscc import make_uscc
from creditflow.trade.documents import DocKind, GoodsReceipt, Invoice, PurchaseOrder
from creditflow.trade.erp import (
    Column,
    ColumnResolver,
    ParsedFile,
    _CellError,
    parse_date,
    parse_file,
    parse_money_minor,
    parse_tax_rate_pct,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "erp"
SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "erp"
B = make_uscc("91320300134780001")  # xcmg in tests/conftest.py
S = make_uscc("91320300134780002")  # factory
BAD_USCC = S[:-1] + ("1" if S[-1] != "1" else "2")

INVOICE_HEADER = "invoice_number,invoice_date,buyer_uscc,seller_uscc,po_number,line_no,item,quantity,unit_price,net,tax_rate,tax,gross"


def inv_row(
    number: str,
    line: int,
    qty: str = "10",
    price: str = "100",
    net: str = "1000.00",
    rate: str = "13%",
    tax: str = "130.00",
    gross: str = "1130.00",
    *,
    date: str = "2026-03-10",
    buyer: str = B,
    seller: str = S,
) -> str:
    return f"{number},{date},{buyer},{seller},PO-1,{line},item {line},{qty},{price},{net},{rate},{tax},{gross}"


def csv_bytes(*rows: str, header: str = INVOICE_HEADER, encoding: str = "utf-8") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode(encoding)


def errors_of(parsed: ParsedFile) -> list[tuple[str, int, str, str]]:
    return [(doc.number, e.row, e.field, e.code) for doc in parsed.rejected for e in doc.errors]


def money(text: str, unit: str | None = None) -> int:
    column = ColumnResolver(DocKind.INVOICE).resolve(f"金额({unit})" if unit else "金额")
    assert column is not None
    return parse_money_minor(text, column)


# --- files that read --------------------------------------------------------------------------------


def test_utf8_english_headers() -> None:
    parsed = parse_file(
        "invoice",
        csv_bytes(inv_row("INV-1", 1), inv_row("INV-1", 2, "3", "33.33", "99.99", "13%", "13.00", "112.99")),
        "inv.csv",
    )
    assert parsed.ok and parsed.encoding == "utf-8" and parsed.format == "csv" and parsed.rows == 2
    (invoice,) = parsed.documents
    assert isinstance(invoice, Invoice)
    assert invoice.number == "INV-1" and invoice.buyer_uscc == B and invoice.seller_uscc == S
    assert invoice.invoice_date == dt.date(2026, 3, 10) and invoice.currency == "CNY" and invoice.po_number == "PO-1"
    assert [(line.row, line.net_minor, line.tax_minor, line.gross_minor) for line in invoice.lines] == [
        (1, 100_000, 13_000, 113_000),
        (2, 9_999, 1_300, 11_299),
    ]
    assert invoice.lines[1].quantity == Decimal("3") and invoice.lines[1].unit_price == Decimal("33.33")


def test_utf8_with_byte_order_mark() -> None:
    data = b"\xef\xbb\xbf" + csv_bytes(inv_row("INV-1", 1))
    parsed = parse_file("invoice", data, "inv.csv")
    assert parsed.ok and parsed.encoding == "utf-8-sig"
    assert parsed.documents[0].number == "INV-1"  # the BOM did not stick to the first header


GBK_HEADER = "发票号码,开票日期,购买方纳税人识别号,销售方纳税人识别号,采购订单号,行号,货物或应税劳务、服务名称,规格型号,数量,单价,金额(万元),税率,税额(万元),价税合计(万元)"


def test_gbk_file_with_chinese_headers_and_wan_yuan_columns() -> None:
    rows = [
        f'26322000000000000102,2026年3月13日,{B},{S},PO-2026-0002,1,回转支承,SB-1200,18,"8,600.00",15.48,13%,2.0124,17.4924',
        f"26322000000000000102,2026年3月13日,{B},{S},PO-2026-0002,2,密封件,SK-80,500,38.6,1.93,0.13,0.2509,2.1809",
    ]
    data = csv_bytes(*rows, header=GBK_HEADER, encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    parsed = parse_file(DocKind.INVOICE, data, "发票.csv")
    assert parsed.ok, parsed.rejected
    assert parsed.encoding == "gb18030" and parsed.ignored_columns == ("规格型号",)
    (invoice,) = parsed.documents
    assert isinstance(invoice, Invoice)
    assert invoice.invoice_date == dt.date(2026, 3, 13)
    assert [line.item for line in invoice.lines] == ["回转支承", "密封件"]
    assert [(line.net_minor, line.tax_rate_pct, line.tax_minor, line.gross_minor) for line in invoice.lines] == [
        (15_480_000, 13, 2_012_400, 17_492_400),
        (1_930_000, 13, 250_900, 2_180_900),
    ]


def test_sample_files_read(tmp_path: Path) -> None:
    expectations = {
        ("po", "po.csv"): ("utf-8", 3),
        ("receipt", "receipts.csv"): ("utf-8-sig", 3),
        ("invoice", "invoices.csv"): ("utf-8", 2),
        ("invoice", "invoices_gbk.csv"): ("gb18030", 1),
    }
    for (kind, name), (encoding, count) in expectations.items():
        parsed = parse_file(kind, (SAMPLES / name).read_bytes(), name)
        assert parsed.ok, (name, parsed.rejected, parsed.file_errors)
        assert (parsed.encoding, len(parsed.documents)) == (encoding, count), name


def test_receipts_with_chinese_headers_default_po_line_to_line_no() -> None:
    header = "收货单号,采购订单号,收货日期,购方税号,销方税号,行号,物料,数量(件)"
    data = csv_bytes(
        f'GR-1,PO-1,2026/3/9,{B},{S},1,油缸,"1,000.5"', f"GR-1,PO-1,2026/3/9,{B},{S},2,螺栓,20", header=header
    )
    parsed = parse_file("receipt", data, "gr.csv")
    (receipt,) = parsed.documents
    assert isinstance(receipt, GoodsReceipt)
    assert receipt.po_number == "PO-1" and receipt.receipt_date == dt.date(2026, 3, 9)
    assert [(line.line_no, line.po_line_no, line.quantity_received) for line in receipt.lines] == [
        (1, 1, Decimal("1000.5")),
        (2, 2, Decimal(20)),
    ]


def test_purchase_orders_with_thousands_separators_yuan_and_currency_words() -> None:
    header = "采购订单号,订单日期,购方税号,销方税号,币种,行号,物料名称,数量,单价,金额"
    rows = [
        f'PO-1,2026-03-02,{B},{S},人民币,1,液压油缸,100,"¥1,250.00","125,000.00元"',
        f'PO-1,2026-03-02,{B},{S},人民币,2,螺栓,"2,000",2.35,4700',
    ]
    parsed = parse_file("po", csv_bytes(*rows, header=header), "po.csv")
    (po,) = parsed.documents
    assert isinstance(po, PurchaseOrder)
    assert po.currency == "CNY" and po.net_minor == 12_970_000
    assert po.lines[1].quantity == Decimal(2000)


def test_tab_separated_and_excel_text_cells() -> None:
    header = INVOICE_HEADER.replace(",", "\t")
    row = inv_row('="00012345"', 1).replace(",", "\t")
    parsed = parse_file("invoice", csv_bytes(row, header=header), "inv.txt")
    assert parsed.ok and parsed.documents[0].number == "00012345"


def test_unknown_columns_are_ignored_and_listed() -> None:
    header = INVOICE_HEADER + ",备注,unit"
    parsed = parse_file("invoice", csv_bytes(inv_row("INV-1", 1) + ",urgent,pcs", header=header), "inv.csv")
    assert parsed.ok and parsed.ignored_columns == ("备注", "unit")


def test_minor_columns_are_integer_fen() -> None:
    header = (
        INVOICE_HEADER.replace(",net,", ",net_minor,").replace(",tax,", ",tax_minor,").replace(",gross", ",gross_minor")
    )
    parsed = parse_file(
        "invoice", csv_bytes(inv_row("INV-1", 1, net="100000", tax="13000", gross="113000"), header=header), "x.csv"
    )
    assert parsed.ok and parsed.documents[0].gross_minor == 113_000


# --- cells ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "unit", "fen"),
    [
        ("1234.56", None, 123_456),
        ("1,234.56", None, 123_456),
        ("1,234,567.89", None, 123_456_789),
        ("¥1,234.56", None, 123_456),
        ("￥1,234.56", None, 123_456),
        ("1234.56元", None, 123_456),
        (" 1234.56 元 ", None, 123_456),
        ("12.5万元", None, 12_500_000),
        ("12.5万", None, 12_500_000),
        ("0.0001万元", None, 100),
        ("12.5", "万元", 12_500_000),
        ("12.5万元", "万元", 12_500_000),
        ("1,234.5678", "万元", 1_234_567_800),
        ("12.5", "wan", 12_500_000),
        ("12.5", "元", 1_250),
        ("1250", "分", 1_250),
        ("0", None, 0),
        ("1.50000", None, 150),
    ],
)
def test_amount_cells_convert_exactly(text: str, unit: str | None, fen: int) -> None:
    assert money(text, unit) == fen


@pytest.mark.parametrize(
    ("text", "unit", "code", "words"),
    [
        ("abc", None, "invalid_amount", "is not a valid amount"),
        ("12.34.56", None, "invalid_amount", "more than one decimal point"),
        ("1,23.45", None, "invalid_amount", "thousands separators are misplaced"),
        ("12,3456", None, "invalid_amount", "thousands separators are misplaced"),
        ("-5.00", None, "negative_amount", "negative"),
        ("(5.00)", None, "negative_amount", "negative"),
        ("1.5e3", None, "invalid_amount", "scientific notation"),
        ("１２３", None, "invalid_amount", "full-width"),
        ("12.345", None, "invalid_amount", "fraction of a fen"),
        ("0.0000001万元", None, "invalid_amount", "fraction of a fen"),
        ("12.5元", "万元", "unit_conflict", "unit other than the column's"),
        ("12.5", "分", "invalid_amount", "fraction of a fen"),
        ("元", None, "invalid_amount", "no number"),
        (".5", None, "invalid_amount", "both sides of the decimal point"),
        ("1" * 30, None, "invalid_amount", "too large"),
        ("10000000000000000", None, "invalid_amount", "exceeds the maximum"),
        ("一千元", None, "invalid_amount", "is not a valid amount"),
    ],
)
def test_amount_cells_that_cannot_be_read_exactly_are_refused(
    text: str, unit: str | None, code: str, words: str
) -> None:
    with pytest.raises(_CellError) as caught:
        money(text, unit)
    assert caught.value.code == code
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("text", "pct"),
    [
        ("13%", 13),
        ("13 %", 13),
        ("13％", 13),
        ("0.13", 13),
        ("13", 13),
        ("9", 9),
        ("0.06", 6),
        ("0", 0),
        ("0%", 0),
        ("1%", 1),
        ("0.01", 1),
        ("免税", 0),
        ("不征税", 0),
    ],
)
def test_tax_rates_read(text: str, pct: int) -> None:
    assert parse_tax_rate_pct(text, Column("tax_rate", "税率")) == pct


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1", "ambiguous_tax_rate"),
        ("1.0", "ambiguous_tax_rate"),
        ("6.5%", "invalid_tax_rate"),
        ("0.065", "invalid_tax_rate"),
        ("thirteen", "invalid_tax_rate"),
        ("-13%", "invalid_tax_rate"),
    ],
)
def test_tax_rates_refused(text: str, code: str) -> None:
    with pytest.raises(_CellError) as caught:
        parse_tax_rate_pct(text, Column("tax_rate", "税率"))
    assert caught.value.code == code


def test_a_percent_header_makes_bare_numbers_percentages() -> None:
    column = ColumnResolver(DocKind.INVOICE).resolve("税率(%)")
    assert column is not None and column.percent
    assert parse_tax_rate_pct("1", column) == 1 and parse_tax_rate_pct("13", column) == 13
    with pytest.raises(_CellError):  # 0.13% is not a whole percent
        parse_tax_rate_pct("0.13", column)


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("2026-03-31", dt.date(2026, 3, 31)),
        ("2026/3/31", dt.date(2026, 3, 31)),
        ("2026年3月31日", dt.date(2026, 3, 31)),
        ("2026年03月01日", dt.date(2026, 3, 1)),
    ],
)
def test_dates_read(text: str, date: dt.date) -> None:
    assert parse_date(text) == date


@pytest.mark.parametrize("text", ["31/03/2026", "2026.03.31", "2026-02-30", "20260331", "March 3", "2026-3"])
def test_dates_refused(text: str) -> None:
    with pytest.raises(_CellError) as caught:
        parse_date(text)
    assert caught.value.code == "invalid_date"


# --- rows and documents that are refused -----------------------------------------------------------


def test_one_bad_line_rejects_its_document_whole_and_the_others_still_import() -> None:
    data = csv_bytes(
        inv_row("INV-1", 1),
        inv_row("INV-2", 1),
        inv_row("INV-2", 2, tax="131.50", gross="1131.50"),  # tax is not 13% of net
        inv_row("INV-3", 1),
    )
    parsed = parse_file("invoice", data, "inv.csv")
    assert [d.number for d in parsed.documents] == ["INV-1", "INV-3"]
    assert errors_of(parsed) == [("INV-2", 3, "tax", "tax_mismatch")]
    assert not parsed.file_errors


def test_every_failing_row_is_reported_with_its_reason() -> None:
    data = csv_bytes(
        inv_row("INV-1", 1),
        inv_row("INV-2", 1, date="2026-02-30"),
        inv_row("INV-2", 2, net='"1,00.00"'),
        inv_row("INV-3", 1, seller=BAD_USCC),
        inv_row("INV-3", 2, seller=BAD_USCC, rate="7%", tax="70.00", gross="1070.00"),
        inv_row("INV-4", 1, qty="ten"),
        inv_row("INV-5", 1, gross="1130.01"),
        inv_row("INV-6", 1, price="-100"),
        inv_row("INV-7", 1),
    )
    parsed = parse_file("invoice", data, "inv.csv")
    assert [d.number for d in parsed.documents] == ["INV-1", "INV-7"]
    assert errors_of(parsed) == [
        ("INV-2", 2, "invoice_date", "invalid_date"),
        ("INV-2", 3, "net", "invalid_amount"),
        ("INV-3", 4, "seller_uscc", "invalid_uscc"),
        ("INV-3", 5, "tax_rate", "tax_rate_not_allowed"),
        ("INV-4", 6, "quantity", "invalid_quantity"),
        ("INV-5", 7, "gross", "gross_mismatch"),
        ("INV-6", 8, "unit_price", "invalid_price"),
    ]
    messages = {e.field: e.message for doc in parsed.rejected for e in doc.errors}
    assert "2026-02-30" in messages["invoice_date"]
    assert "'1,00.00'" in messages["net"] and "misplaced" in messages["net"]
    assert "check character" in messages["seller_uscc"]


def test_bad_dates_and_missing_values() -> None:
    data = csv_bytes(inv_row("INV-1", 1, date="10/03/2026"), inv_row("INV-2", 1, qty=""), inv_row("", 1))
    parsed = parse_file("invoice", data, "inv.csv")
    assert not parsed.documents
    assert errors_of(parsed) == [
        ("INV-1", 1, "invoice_date", "invalid_date"),
        ("INV-2", 2, "quantity", "missing_value"),
        ("", 3, "invoice_number", "missing_value"),
    ]


def test_rows_of_one_document_must_agree_on_its_header() -> None:
    data = csv_bytes(
        inv_row("INV-1", 1),
        inv_row("INV-1", 2, date="2026/3/10"),
        inv_row("INV-1", 3, buyer=make_uscc("91320300134780003")),
    )
    parsed = parse_file("invoice", data, "inv.csv")
    assert errors_of(parsed) == [("INV-1", 3, "buyer_uscc", "inconsistent_header")]
    assert "row 1" in parsed.rejected[0].errors[0].message


def test_unquoted_thousands_separator_shifts_cells_and_is_refused() -> None:
    row = inv_row("INV-1", 1, net="1,000.00")  # written without quotes
    parsed = parse_file("invoice", csv_bytes(row, inv_row("INV-2", 1)), "inv.csv")
    assert errors_of(parsed) == [("INV-1", 1, "row", "wrong_cell_count")]
    assert "unquoted thousands separator" in parsed.rejected[0].errors[0].message
    assert [d.number for d in parsed.documents] == ["INV-2"]


def test_duplicate_lines_in_a_document() -> None:
    parsed = parse_file("invoice", csv_bytes(inv_row("INV-1", 1), inv_row("INV-1", 1)), "inv.csv")
    assert errors_of(parsed) == [("INV-1", 2, "line_no", "duplicate_line")]


def test_number_turned_into_scientific_notation_by_a_spreadsheet() -> None:
    parsed = parse_file("invoice", csv_bytes(inv_row("2.63222E+19", 1)), "inv.csv")
    assert errors_of(parsed) == [("2.63222E+19", 1, "invoice_number", "invalid_number")]


# --- files that are refused whole --------------------------------------------------------------------


def file_error(parsed: ParsedFile) -> tuple[str, str]:
    assert not parsed.documents and not parsed.rejected
    (error,) = parsed.file_errors
    assert error.row == 0
    return error.code, error.message


def test_neither_utf8_nor_gbk_is_a_file_error() -> None:
    code, message = file_error(parse_file("invoice", csv_bytes(inv_row("INV-1", 1)) + b"\x80\xff\xfe", "x.csv"))
    assert code == "unreadable_encoding" and "neither UTF-8" in message


def test_utf16_is_named() -> None:
    data = csv_bytes(inv_row("INV-1", 1), encoding="utf-16")
    assert file_error(parse_file("invoice", data, "x.csv")) == (
        "unreadable_encoding",
        "UTF-16 files are not accepted: save the file as UTF-8 or GBK",
    )


def test_bom_with_broken_utf8() -> None:
    code, _ = file_error(parse_file("invoice", b"\xef\xbb\xbf" + "发票".encode("gbk"), "x.csv"))
    assert code == "unreadable_encoding"


def test_binary_is_not_text() -> None:
    assert file_error(parse_file("invoice", b"PK\x03\x04\x00\x00", "x.xlsx"))[0] == "not_text"


def test_missing_columns_are_named() -> None:
    header = INVOICE_HEADER.replace(",tax_rate", "").replace(",gross", "")
    code, message = file_error(parse_file("invoice", csv_bytes("x", header=header), "x.csv"))
    assert code == "missing_columns" and "tax_rate, gross" in message


def test_two_columns_meaning_the_same_field() -> None:
    header = INVOICE_HEADER + ",发票号码"
    code, message = file_error(parse_file("invoice", csv_bytes(inv_row("INV-1", 1) + ",INV-1", header=header), "x.csv"))
    assert code == "duplicate_columns" and "invoice_number" in message


def test_unknown_unit_in_a_money_header() -> None:
    header = INVOICE_HEADER.replace(",net,", ",金额(千元),")
    code, message = file_error(parse_file("invoice", csv_bytes(inv_row("INV-1", 1), header=header), "x.csv"))
    assert code == "unknown_unit" and "千元" in message


def test_empty_and_header_only_files() -> None:
    assert file_error(parse_file("invoice", b"", "x.csv"))[0] == "empty_file"
    assert file_error(parse_file("invoice", b"\n\n", "x.csv"))[0] == "empty_file"
    assert file_error(parse_file("invoice", csv_bytes(), "x.csv"))[0] == "empty_file"


def test_malformed_csv_quoting() -> None:
    data = csv_bytes(inv_row("INV-1", 1).replace("item 1", '"item 1"x'))
    assert file_error(parse_file("invoice", data, "x.csv"))[0] == "malformed_csv"


def test_limits() -> None:
    data = csv_bytes(inv_row("INV-1", 1), inv_row("INV-2", 1), inv_row("INV-3", 1))
    code, message = file_error(parse_file("invoice", data, "x.csv", max_bytes=100))
    assert code == "file_too_large" and "erp_max_file_bytes" in message
    code, message = file_error(parse_file("invoice", data, "x.csv", max_rows=2))
    assert code == "too_many_rows" and "erp_max_rows" in message
    assert parse_file("invoice", data, "x.csv", max_rows=3).ok


def test_unknown_kind() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_file("delivery", b"", "x.csv")
    assert caught.value.code == "invalid_kind"


# --- JSON --------------------------------------------------------------------------------------------


def invoice_json(**changes: object) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "invoice_number": "INV-9",
        "invoice_date": "2026-03-10",
        "buyer_uscc": B,
        "seller_uscc": S,
        "po_number": "PO-1",
        "lines": [
            {
                "line_no": 1,
                "item": "cylinder",
                "quantity": 100,
                "unit_price": "1,250.00",
                "net": 125000.00,
                "tax_rate": "13%",
                "tax": 16250,
                "gross": "141,250.00",
            },
            {
                "line_no": 2,
                "item": "seal",
                "quantity": "500",
                "unit_price": 38.6,
                "net_minor": 1930000,
                "tax_rate": 0.13,
                "tax_minor": 250900,
                "gross_minor": 2180900,
            },
        ],
    }
    doc.update(changes)
    return doc


def json_bytes(*docs: dict[str, Any], kind: str = "invoice") -> bytes:
    return json.dumps({"kind": kind, "documents": list(docs)}, ensure_ascii=False).encode()


def test_json_documents_read_exactly() -> None:
    parsed = parse_file("invoice", json_bytes(invoice_json()), "inv.json")
    assert parsed.ok and parsed.format == "json" and parsed.rows == 2
    (invoice,) = parsed.documents
    assert isinstance(invoice, Invoice)
    assert [line.gross_minor for line in invoice.lines] == [14_125_000, 2_180_900]
    assert invoice.lines[1].unit_price == Decimal("38.6")


def test_json_and_csv_of_the_same_document_have_the_same_digest() -> None:
    from creditflow.trade.documents import document_digest

    row1 = f'INV-9,2026/3/10,{B},{S},PO-1,1,cylinder,100,1250,"125,000.00",0.13,16250,141250'
    row2 = f"INV-9,2026年3月10日,{B},{S},PO-1,2,seal,500,38.60,1.93万元,13%,2509.00,21809"
    from_csv = parse_file("invoice", csv_bytes(row2, row1), "x.csv").documents[0]
    from_json = parse_file("invoice", json_bytes(invoice_json()), "x.json").documents[0]
    assert document_digest(from_csv) == document_digest(from_json)


def test_json_chinese_keys_and_header_units() -> None:
    doc: dict[str, Any] = {
        "发票号码": "INV-9",
        "开票日期": "2026年3月10日",
        "购方税号": B,
        "销方税号": S,
        "lines": [
            {
                "行号": 1,
                "数量": 100,
                "单价": 1250,
                "金额(万元)": "12.5",
                "税率": "13%",
                "税额": "16,250.00",
                "价税合计(万元)": 14.125,
            }
        ],
    }
    parsed = parse_file("invoice", json_bytes(doc), "x.json")
    assert parsed.ok and parsed.documents[0].gross_minor == 14_125_000


def test_json_errors_per_line_and_document() -> None:
    bad_line = invoice_json(invoice_number="INV-2")
    bad_line["lines"] = [{**bad_line["lines"][0], "tax": "16,250.02", "gross": "141,250.02"}]
    missing = invoice_json(invoice_number="INV-3")
    del missing["buyer_uscc"]
    parsed = parse_file("invoice", json_bytes(invoice_json(), bad_line, missing), "x.json")
    assert [d.number for d in parsed.documents] == ["INV-9"]
    assert errors_of(parsed) == [("INV-2", 3, "tax", "tax_mismatch"), ("INV-3", 4, "buyer_uscc", "missing_value")]


def test_json_same_number_twice_is_refused() -> None:
    parsed = parse_file("invoice", json_bytes(invoice_json(), invoice_json()), "x.json")
    assert not parsed.documents
    assert [e.code for d in parsed.rejected for e in d.errors] == ["duplicate_document", "duplicate_document"]


def test_json_values_must_be_text_or_numbers() -> None:
    doc = invoice_json()
    doc["lines"][0]["quantity"] = [100]
    assert errors_of(parse_file("invoice", json_bytes(doc), "x.json")) == [("INV-9", 1, "quantity", "invalid_value")]
    doc["lines"][0]["quantity"] = 1e2  # written as 100.0, read as the exact decimal 100.0
    assert parse_file("invoice", json_bytes(doc), "x.json").ok


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"kind": "invoice", "documents": [', "invalid_json"),
        (b'{"kind": "invoice"}', "invalid_json"),
        (b'{"kind": "po", "documents": []}', "wrong_kind"),
        (b'{"kind": "invoice", "documents": []}', "empty_file"),
        (b'{"kind": "invoice", "documents": [1]}', "invalid_json"),
        (b'{"kind": "invoice", "kind": "invoice", "documents": []}', "invalid_json"),
        (b'{"kind": "invoice", "documents": [{"lines": [{"quantity": NaN}]}]}', "invalid_json"),
    ],
)
def test_json_file_errors(data: bytes, code: str) -> None:
    assert file_error(parse_file("invoice", data, "x.json"))[0] == code


def test_format_detection() -> None:
    assert parse_file("invoice", json_bytes(invoice_json()), "upload").format == "json"
    assert parse_file("invoice", csv_bytes(inv_row("INV-1", 1)), "upload").format == "csv"
    assert parse_file("invoice", json_bytes(invoice_json()), "x.csv", fmt="json").ok


# --- the committed test files -------------------------------------------------------------------------


def test_data_files() -> None:
    mixed = parse_file("invoice", (DATA / "invoices_mixed.csv").read_bytes(), "invoices_mixed.csv")
    assert [d.number for d in mixed.documents] == ["INV-A1", "INV-A4"]
    assert {d.number for d in mixed.rejected} == {"INV-A2", "INV-A3"}
    as_json = parse_file("invoice", (DATA / "invoices.json").read_bytes(), "invoices.json")
    assert as_json.ok and len(as_json.documents) == 1
