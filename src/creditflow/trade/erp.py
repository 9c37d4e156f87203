"""Read ERP exports (CSV or JSON) of purchase orders, goods receipts and invoices into trade documents.

`parse_file` returns a `ParsedFile`: the documents that are valid by every rule of
`creditflow.trade.documents`, the documents refused whole with every failing row and why, and file-level
errors (which mean nothing in the file is used). It never guesses: a cell it cannot read exactly is an
error naming the row and the column.

Files
    * Encoding: strict UTF-8 (with or without a byte-order mark), else GBK/GB18030; anything else
      (UTF-16, binary, broken bytes) is a file-level error.
    * Format: ``fmt`` if given, else the file name's extension (``.json``; ``.csv``, ``.tsv``, ``.txt``),
      else JSON if the text starts with ``{``, else CSV.
    * Limits: at most ``max_bytes`` bytes and ``max_rows`` data rows (JSON: lines), else a file-level error.

CSV
    One row per document line; the first non-empty record is the header; rows are grouped into documents
    by the document number column (one file carries each number once: rows with the same number are one
    document and must agree on every header field). Comma-separated, or tab-separated when the header has
    tabs and no commas. A row with more or fewer cells than the header is an error (often an amount like
    1,234.56 written without quotes). Row n is the n-th record after the header (blank records count but
    are skipped); row 0 means the file or the header.

JSON
    ``{"kind": "po" | "receipt" | "invoice", "documents": [{<header fields>, "lines": [{<line fields>}]}]}``.
    Keys are the same column names (and aliases) as in CSV; values are strings or numbers (numbers are read
    exactly, never as floats); ``null`` is empty. Row n is the n-th line object in the file.

Columns (English names; every alias is matched after Unicode NFKC, case and space folding)
    ===============  =======================================================  =============================
    column           aliases (examples)                                       kinds
    ===============  =======================================================  =============================
    po_number        采购订单号, 订单号, 采购单号                               po; receipt; invoice (optional)
    receipt_number   收货单号, 入库单号                                         receipt
    invoice_number   发票号码, 发票号                                           invoice
    buyer_uscc       购方税号, 购买方纳税人识别号                               all
    seller_uscc      销方税号, 销售方纳税人识别号                               all
    order_date       订单日期, 采购日期                                         po
    receipt_date     收货日期, 入库日期                                         receipt
    invoice_date     开票日期                                                   invoice
    currency         币种 (optional; empty means CNY; RMB/人民币 mean CNY)       po, invoice
    line_no          行号, 序号                                                 all
    po_line_no       订单行号 (optional; empty means the same as line_no)       receipt, invoice
    item             物料, 物料名称, 货物名称 (optional)                        all
    quantity         数量                                                       po, invoice
    quantity_received  收货数量, 实收数量 (also 数量 / quantity in a receipt)    receipt
    unit_price       单价, 不含税单价 (yuan, excluding VAT)                      po, invoice
    net              金额, 不含税金额, amount                                   po, invoice
    tax_rate         税率                                                       invoice
    tax              税额                                                       invoice
    gross            价税合计                                                   invoice
    total_net, total_tax, total_gross  合计金额, 合计税额 (optional document totals, checked)
    ===============  =======================================================  =============================

    Other columns (规格型号, 单位, 备注, ...) are ignored and listed in ``ignored_columns``.

Cells
    * Amounts (net, tax, gross, totals, unit price): ``1234.56``, ``1,234.56``, ``¥1,234.56``,
      ``1234.56元``, ``12.5万元`` (or ``12.5万``). A unit in the header, ``金额(万元)`` or ``amount (wan)``,
      multiplies the whole column (a cell may repeat the same unit but not name another); ``net_minor`` or
      ``金额(分)`` means integer fen. Converted exactly; refused: text, signs and negatives, two decimal
      points, misplaced thousands separators, full-width digits, scientific notation, fractions of a fen.
    * Quantities: digits with optional thousands separators and decimals; a unit in the header
      (``数量(吨)``) is a unit of measure and is ignored.
    * Tax rate: ``13%`` is a percentage; in a column headed ``税率(%)`` every number is a percentage; else a
      bare number below 1 is a fraction (``0.13``), above 1 a percentage (``13``), and ``0`` is 0%;
      a bare ``1`` is refused as ambiguous (1% or 100%?) - write ``1%`` or ``0.01``. ``免税`` and ``不征税``
      mean 0%. The rate must come out as a whole percent.
    * Dates: ``2026-03-31``, ``2026/3/31``, ``2026年3月31日``.
    * Text cells may be wrapped as ``="00123"`` (the Excel trick that keeps leading zeros).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any, Literal

from creditflow.kernel.errors import InvalidInput
from creditflow.kernel.money import MAX_AMOUNT_MINOR
from creditflow.trade.documents import (
    DATE_FIELD,
    DEFAULT_TAX_RATES_PCT,
    NUMBER_FIELD,
    DocKind,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    PoLine,
    PurchaseOrder,
    ReceiptLine,
    RejectedDocument,
    RowError,
    Totals,
    TradeDocument,
    validate_document,
)

Format = Literal["csv", "json"]

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_ROWS = 200_000
MAX_NUMBER_DIGITS = 24
_CTX = Context(prec=60)


# --- result ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedFile:
    kind: DocKind
    format: Format | None
    encoding: str | None
    rows: int
    documents: tuple[TradeDocument, ...]
    rejected: tuple[RejectedDocument, ...]
    file_errors: tuple[RowError, ...]
    ignored_columns: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.file_errors and not self.rejected


def _file_error(
    kind: DocKind,
    code: str,
    message: str,
    *,
    field_name: str = "file",
    fmt: Format | None = None,
    encoding: str | None = None,
) -> ParsedFile:
    return ParsedFile(
        kind=kind,
        format=fmt,
        encoding=encoding,
        rows=0,
        documents=(),
        rejected=(),
        file_errors=(RowError(0, field_name, code, message),),
    )


# --- columns -----------------------------------------------------------------------------------------


class T(Enum):
    NUMBER = "number"  # a document number
    TEXT = "text"
    USCC = "uscc"
    DATE = "date"
    LINE_NO = "line_no"
    QUANTITY = "quantity"
    PRICE = "price"
    MONEY = "money"
    RATE = "rate"
    CURRENCY = "currency"


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    type: T
    header: bool  # a document-level field (repeated on every CSV row of the document)
    required: bool


def _specs(kind: DocKind) -> dict[str, Spec]:
    number = NUMBER_FIELD[kind]
    out = [
        Spec(number, T.NUMBER, True, True),
        Spec("buyer_uscc", T.USCC, True, True),
        Spec("seller_uscc", T.USCC, True, True),
        Spec(DATE_FIELD[kind], T.DATE, True, True),
        Spec("line_no", T.LINE_NO, False, True),
        Spec("item", T.TEXT, False, False),
    ]
    if kind is DocKind.PO:
        out += [
            Spec("currency", T.CURRENCY, True, False),
            Spec("total_net", T.MONEY, True, False),
            Spec("quantity", T.QUANTITY, False, True),
            Spec("unit_price", T.PRICE, False, True),
            Spec("net", T.MONEY, False, True),
        ]
    elif kind is DocKind.RECEIPT:
        out += [
            Spec("po_number", T.NUMBER, True, True),
            Spec("po_line_no", T.LINE_NO, False, False),
            Spec("quantity_received", T.QUANTITY, False, True),
        ]
    else:
        out += [
            Spec("po_number", T.NUMBER, True, False),
            Spec("currency", T.CURRENCY, True, False),
            Spec("total_net", T.MONEY, True, False),
            Spec("total_tax", T.MONEY, True, False),
            Spec("total_gross", T.MONEY, True, False),
            Spec("po_line_no", T.LINE_NO, False, False),
            Spec("quantity", T.QUANTITY, False, True),
            Spec("unit_price", T.PRICE, False, True),
            Spec("net", T.MONEY, False, True),
            Spec("tax_rate", T.RATE, False, True),
            Spec("tax", T.MONEY, False, True),
            Spec("gross", T.MONEY, False, True),
        ]
    return {s.name: s for s in out}


_COMMON_ALIASES: dict[str, tuple[str, ...]] = {
    "po_number": (
        "po",
        "po_no",
        "purchase_order",
        "purchase_order_no",
        "purchase_order_number",
        "order_no",
        "order_number",
        "采购订单号",
        "采购订单编号",
        "采购订单",
        "采购单号",
        "订单号",
        "订单编号",
    ),
    "receipt_number": (
        "receipt_no",
        "grn",
        "grn_no",
        "grn_number",
        "goods_receipt_number",
        "goods_receipt_no",
        "收货单号",
        "收货单编号",
        "入库单号",
        "入库单编号",
    ),
    "invoice_number": ("invoice_no", "发票号码", "发票号", "发票编号", "数电发票号码", "数电票号码"),
    "buyer_uscc": (
        "buyer_tax_id",
        "buyer_tax_no",
        "buyer_taxid",
        "购方税号",
        "购买方税号",
        "购方纳税人识别号",
        "购买方纳税人识别号",
        "购方识别号",
        "购买方识别号",
        "购方统一社会信用代码",
        "购买方统一社会信用代码",
        "购买方统一社会信用代码/纳税人识别号",
    ),
    "seller_uscc": (
        "seller_tax_id",
        "seller_tax_no",
        "seller_taxid",
        "supplier_uscc",
        "销方税号",
        "销售方税号",
        "销方纳税人识别号",
        "销售方纳税人识别号",
        "销方识别号",
        "销售方识别号",
        "销方统一社会信用代码",
        "销售方统一社会信用代码",
        "销售方统一社会信用代码/纳税人识别号",
        "供应商税号",
        "供应商统一社会信用代码",
    ),
    "order_date": ("po_date", "订单日期", "采购日期", "下单日期", "采购订单日期"),
    "receipt_date": ("received_date", "date_received", "grn_date", "收货日期", "入库日期", "到货日期"),
    "invoice_date": ("issue_date", "date_issued", "开票日期", "发票日期"),
    "currency": ("ccy", "币种", "币别", "货币"),
    "line_no": ("line", "line_number", "行号", "序号", "明细行号", "行项目号"),
    "po_line_no": ("po_line", "order_line", "order_line_no", "采购订单行号", "订单行号"),
    "item": (
        "item_name",
        "description",
        "goods",
        "material",
        "物料",
        "物料名称",
        "物料描述",
        "货物名称",
        "商品名称",
        "品名",
        "项目名称",
        "货物或应税劳务名称",
        "货物或应税劳务、服务名称",
    ),
    "unit_price": ("price", "单价", "不含税单价"),
    "net": ("amount", "net_amount", "line_amount", "金额", "不含税金额"),
    "tax_rate": ("vat_rate", "rate", "税率", "征收率", "税率/征收率"),
    "tax": ("tax_amount", "vat", "vat_amount", "税额"),
    "gross": ("gross_amount", "amount_with_tax", "total", "价税合计", "含税金额"),
    "total_net": ("合计金额",),
    "total_tax": ("合计税额",),
    "total_gross": ("价税合计总额",),
}
_KIND_ALIASES: dict[DocKind, dict[str, tuple[str, ...]]] = {
    DocKind.PO: {"quantity": ("qty", "数量", "订单数量", "采购数量")},
    DocKind.RECEIPT: {
        "quantity_received": (
            "received_quantity",
            "qty_received",
            "quantity",
            "qty",
            "数量",
            "收货数量",
            "实收数量",
            "入库数量",
        )
    },
    DocKind.INVOICE: {"quantity": ("qty", "数量", "开票数量")},
}

# How many yuan one unit of a money column is.
_MONEY_UNITS: dict[str, Decimal] = {
    "元": Decimal(1),
    "yuan": Decimal(1),
    "cny": Decimal(1),
    "rmb": Decimal(1),
    "人民币": Decimal(1),
    "人民币元": Decimal(1),
    "万元": Decimal(10_000),
    "万": Decimal(10_000),
    "wan": Decimal(10_000),
    "wan_yuan": Decimal(10_000),
    "10k_yuan": Decimal(10_000),
    "分": Decimal("0.01"),
    "fen": Decimal("0.01"),
    "minor": Decimal("0.01"),
}
_CELL_UNITS = (("万元", Decimal(10_000)), ("万", Decimal(10_000)), ("元", Decimal(1)))


def _fold(name: str) -> str:
    """Header name folding: NFKC, lower case, spaces/hyphens to one underscore."""
    text = unicodedata.normalize("NFKC", name).strip().lower()
    text = re.sub(r"[\s\-]+", "_", text)
    return re.sub(r"_+", "_", text).strip("_")


_UNIT_RE = re.compile(r"^(?P<name>.*?)\s*[(\[【]\s*(?P<unit>[^)\]】]*?)\s*[)\]】]\s*$")
# Digits are ASCII 0-9 only (Python's \d would also match full-width and other scripts' digits).
_A = re.ASCII


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # canonical
    source: str  # as written in the file
    yuan_per_unit: Decimal | None = None  # money and price columns with a unit in the header
    percent: bool = False  # a tax-rate column headed "(%)"


class _HeaderError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ColumnResolver:
    """Maps header names (CSV headers, JSON keys) to canonical fields of one kind of document."""

    def __init__(self, kind: DocKind):
        self.kind = kind
        self.specs = _specs(kind)
        aliases: dict[str, str] = {}
        tables = [_COMMON_ALIASES, _KIND_ALIASES[kind]]
        for name in self.specs:
            aliases[_fold(name)] = name
        for table in tables:
            for name, names in table.items():
                if name in self.specs:
                    for alias in names:
                        aliases.setdefault(_fold(alias), name)
        self.aliases = aliases

    def resolve(self, source: str) -> Column | None:
        """The column ``source`` names, or None if it is not one we read; `_HeaderError` for a bad unit."""
        text = unicodedata.normalize("NFKC", source).strip()
        unit_text: str | None = None
        match = _UNIT_RE.match(text)
        if match and match.group("name"):
            text, unit_text = match.group("name"), match.group("unit").strip()
        key = _fold(text)
        name = self.aliases.get(key)
        fen_suffix = False
        if name is None and key.endswith("_minor"):
            name = self.aliases.get(key[: -len("_minor")])
            fen_suffix = name is not None
        if name is None:
            return None
        spec = self.specs[name]
        if fen_suffix:
            if spec.type not in (T.MONEY, T.PRICE) or unit_text:
                raise _HeaderError("unknown_column", f"column {source!r}: only amounts can be given in fen (_minor)")
            return Column(name, source, yuan_per_unit=Decimal("0.01"))
        if not unit_text:
            return Column(name, source)
        if spec.type in (T.MONEY, T.PRICE):
            unit_key = _fold(unit_text.split("/")[0]) if spec.type is T.PRICE else _fold(unit_text)
            per_unit = _MONEY_UNITS.get(unit_key)
            if per_unit is None:
                known = "元, 万元, 分, yuan, wan, fen"
                raise _HeaderError("unknown_unit", f"column {source!r}: the unit {unit_text!r} is not one of {known}")
            return Column(name, source, yuan_per_unit=per_unit)
        if spec.type is T.RATE:
            if unit_text != "%":
                raise _HeaderError("unknown_unit", f"column {source!r}: a tax rate column may only be marked (%)")
            return Column(name, source, percent=True)
        return Column(name, source)  # quantities (吨, 件, pcs), dates (YYYY-MM-DD), ...: a note for people


# --- cells -------------------------------------------------------------------------------------------


class _CellError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


_STRIP = " \t\r\n\u00a0\u3000"
_EXCEL_TEXT_RE = re.compile(r'^="(.*)"$', re.DOTALL)
_PLAIN_NUMBER_RE = re.compile(r"^(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$", _A)
_DATE_RES = (
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$", _A),
    re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$", _A),
    re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日$", _A),
)
_EXCEL_SCIENTIFIC_RE = re.compile(r"^\d(?:\.\d+)?[eE]\+?\d+$", _A)
_ZERO_RATE_WORDS = frozenset({"免税", "不征税", "免征"})
_CURRENCY_WORDS = {"CNY": "CNY", "RMB": "CNY", "人民币": "CNY", "元": "CNY", "¥": "CNY", "￥": "CNY"}


def _text_of(value: object, *, excel_text: bool = True) -> str:
    """The cell as text: strings stripped, JSON numbers as written; other JSON values refused."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise _CellError("invalid_value", "must be text or a number")
    text = value if isinstance(value, str) else str(value)
    text = text.strip(_STRIP)
    if excel_text:
        match = _EXCEL_TEXT_RE.match(text)
        if match:
            text = match.group(1).strip(_STRIP)
    return text


def _why_not_number(text: str, what: str) -> _CellError:
    if text.startswith(("-", "−", "－", "+")) or (text.startswith("(") and text.endswith(")")):
        return _CellError(
            "negative_amount" if what == "amount" else f"invalid_{what}",
            f"{text!r}: signs and negative {what}s are not accepted",
        )
    if any(unicodedata.category(ch) == "Nd" and not ch.isascii() for ch in text):
        return _CellError(f"invalid_{what}", f"{text!r}: full-width or non-ASCII digits are not accepted; use 0-9")
    if text.count(".") > 1:
        return _CellError(f"invalid_{what}", f"{text!r} has more than one decimal point")
    if re.fullmatch(r"[\d.]*[eE][+-]?\d+", text, _A):
        return _CellError(f"invalid_{what}", f"{text!r}: scientific notation is not accepted")
    if "," in text and re.fullmatch(r"[\d,]+(?:\.\d+)?", text, _A):
        return _CellError(f"invalid_{what}", f"{text!r}: thousands separators are misplaced (write 1,234,567.89)")
    if text.startswith(".") or text.endswith("."):
        return _CellError(f"invalid_{what}", f"{text!r}: write a digit on both sides of the decimal point")
    return _CellError(f"invalid_{what}", f"{text!r} is not a valid {what} (write it like 1,234.56)")


def _plain_number(text: str, what: str) -> Decimal:
    if not _PLAIN_NUMBER_RE.match(text):
        raise _why_not_number(text, what)
    digits = text.replace(",", "")
    if len(digits.partition(".")[0].lstrip("0")) > MAX_NUMBER_DIGITS:
        raise _CellError(f"invalid_{what}", f"{text!r} is too large")
    return Decimal(digits)


def _split_money_text(text: str, column: Column) -> tuple[str, Decimal]:
    """Strip ¥ and a unit (元, 万元) from a money cell; return the number text and yuan per unit."""
    body = text
    if body[:1] in ("¥", "￥"):
        body = body[1:].strip(_STRIP)
    cell_unit: Decimal | None = None
    for suffix, per_unit in _CELL_UNITS:
        if body.endswith(suffix):
            body, cell_unit = body[: -len(suffix)].strip(_STRIP), per_unit
            break
    header_unit = column.yuan_per_unit
    if cell_unit is not None and header_unit is not None and cell_unit != header_unit:
        raise _CellError(
            "unit_conflict", f"{text!r} names a unit other than the column's ({column.source}); not converted"
        )
    return body, cell_unit or header_unit or Decimal(1)


def parse_money_minor(value: object, column: Column) -> int:
    """A money cell to fen, exactly: "1,234.56", "¥1,234.56", "1234.56元", "12.5万元"; header units apply."""
    text = _text_of(value, excel_text=False)
    number_text, per_unit = _split_money_text(text, column)
    if not number_text:
        raise _CellError("invalid_amount", f"{text!r} has no number")
    amount = _plain_number(number_text, "amount")
    fen = _CTX.multiply(_CTX.multiply(amount, per_unit), Decimal(100))
    if fen != fen.to_integral_value():
        raise _CellError("invalid_amount", f"{text!r} has a fraction of a fen ({fen / 100} yuan)")
    if fen > MAX_AMOUNT_MINOR:
        raise _CellError("invalid_amount", f"{text!r} exceeds the maximum amount")
    return int(fen)


def parse_price(value: object, column: Column) -> Decimal:
    """A unit price cell to yuan (exactly): like an amount, but decimals beyond the fen are allowed."""
    text = _text_of(value, excel_text=False)
    number_text, per_unit = _split_money_text(text, column)
    if not number_text:
        raise _CellError("invalid_price", f"{text!r} has no number")
    return _CTX.multiply(_plain_number(number_text, "price"), per_unit)


def parse_quantity(value: object) -> Decimal:
    return _plain_number(_text_of(value, excel_text=False), "quantity")


def parse_tax_rate_pct(value: object, column: Column) -> int:
    """A tax rate cell to a whole percent; see the module docstring for what is accepted."""
    text = _text_of(value, excel_text=False)
    if text in _ZERO_RATE_WORDS:
        return 0
    if text.endswith(("%", "％")):
        pct = _plain_number(text[:-1].strip(_STRIP), "tax_rate")
    else:
        number = _plain_number(text, "tax_rate")
        if column.percent or number > 1:
            pct = number
        elif number == 1:
            raise _CellError("ambiguous_tax_rate", f"{text!r} is ambiguous (1% or 100%?): write 1% or 0.01")
        else:
            pct = _CTX.multiply(number, Decimal(100))
    if pct != pct.to_integral_value():
        raise _CellError("invalid_tax_rate", f"{text!r} is not a whole percent")
    return int(pct)


def parse_date(value: object) -> dt.date:
    text = _text_of(value)
    for pattern in _DATE_RES:
        match = pattern.match(text)
        if match:
            year, month, day = (int(g) for g in match.groups())
            try:
                return dt.date(year, month, day)
            except ValueError as exc:
                raise _CellError("invalid_date", f"{text!r} is not a calendar date ({exc})") from exc
    raise _CellError("invalid_date", f"{text!r} is not a date like 2026-03-31, 2026/3/31 or 2026年3月31日")


def parse_line_no(value: object) -> int:
    text = _text_of(value)
    if not re.fullmatch(r"\d{1,9}", text, _A):
        raise _CellError("invalid_line_no", f"{text!r} is not a line number (a whole number, 1 or more)")
    return int(text)


def parse_number_text(value: object) -> str:
    text = _text_of(value)
    if _EXCEL_SCIENTIFIC_RE.match(text):
        raise _CellError(
            "invalid_number",
            f"{text!r} looks like a number a spreadsheet turned into scientific notation; export it as text",
        )
    return text


def parse_currency(value: object) -> str:
    text = _text_of(value)
    if not text:
        return "CNY"
    return _CURRENCY_WORDS.get(text.upper(), text.upper())


def _read_cell(spec: Spec, value: object, column: Column) -> Any:
    if spec.type is T.NUMBER:
        return parse_number_text(value)
    if spec.type is T.TEXT:
        return _text_of(value)
    if spec.type is T.USCC:
        return _text_of(value).upper()
    if spec.type is T.DATE:
        return parse_date(value)
    if spec.type is T.LINE_NO:
        return parse_line_no(value)
    if spec.type is T.QUANTITY:
        return parse_quantity(value)
    if spec.type is T.PRICE:
        return parse_price(value, column)
    if spec.type is T.MONEY:
        return parse_money_minor(value, column)
    if spec.type is T.RATE:
        return parse_tax_rate_pct(value, column)
    return parse_currency(value)


# --- rows into documents -----------------------------------------------------------------------------

Cells = Mapping[str, tuple[object, Column]]


@dataclass
class _Group:
    number: str
    first_row: int
    headers: list[tuple[int, Cells]] = field(default_factory=list)
    lines: list[tuple[int, Cells]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # JSON: "documents[3]" per object, to spot duplicates


def _read_fields(
    specs: Sequence[Spec], row: int, cells: Cells, errors: list[RowError], *, missing_is_empty: bool
) -> dict[str, Any] | None:
    """Read ``specs`` from ``cells``; None if any failed (their errors appended)."""
    values: dict[str, Any] = {}
    ok = True
    for spec in specs:
        if spec.name not in cells:
            if spec.required and not missing_is_empty:
                errors.append(RowError(row, spec.name, "missing_value", f"{spec.name} is missing"))
                ok = False
            values[spec.name] = None
            continue
        raw, column = cells[spec.name]
        if raw is None or (isinstance(raw, str) and not raw.strip(_STRIP)):
            if spec.required:
                errors.append(RowError(row, spec.name, "missing_value", f"{column.source} is empty"))
                ok = False
            values[spec.name] = None if spec.type is not T.CURRENCY else "CNY"
            continue
        try:
            values[spec.name] = _read_cell(spec, raw, column)
        except _CellError as exc:
            errors.append(RowError(row, spec.name, exc.code, f"{column.source}: {exc.message}"))
            ok = False
    return values if ok else None


def _build(
    kind: DocKind, header: dict[str, Any], lines: list[tuple[int, dict[str, Any]]], row: int, whole: bool
) -> TradeDocument:
    number = header[NUMBER_FIELD[kind]]
    if kind is DocKind.PO:
        return PurchaseOrder(
            number=number,
            buyer_uscc=header["buyer_uscc"],
            seller_uscc=header["seller_uscc"],
            order_date=header["order_date"],
            currency=header["currency"] or "CNY",
            lines=tuple(
                PoLine(v["line_no"], v["item"] or "", v["quantity"], v["unit_price"], v["net"], r) for r, v in lines
            ),
            stated_net_minor=header["total_net"] if whole else None,
            row=row,
        )
    if kind is DocKind.RECEIPT:
        return GoodsReceipt(
            number=number,
            po_number=header["po_number"],
            buyer_uscc=header["buyer_uscc"],
            seller_uscc=header["seller_uscc"],
            receipt_date=header["receipt_date"],
            lines=tuple(
                ReceiptLine(
                    v["line_no"],
                    v["po_line_no"] if v["po_line_no"] is not None else v["line_no"],
                    v["item"] or "",
                    v["quantity_received"],
                    r,
                )
                for r, v in lines
            ),
            row=row,
        )
    totals = None
    stated = (header["total_net"], header["total_tax"], header["total_gross"])
    if whole and any(t is not None for t in stated):
        summed = [
            sum(v[k] for _, v in lines) for k in ("net", "tax", "gross")
        ]  # an absent total is taken as the sum: only the stated ones are checked
        totals = Totals(*(s if s is not None else d for s, d in zip(stated, summed, strict=True)))
    return Invoice(
        number=number,
        po_number=header["po_number"] or None,
        buyer_uscc=header["buyer_uscc"],
        seller_uscc=header["seller_uscc"],
        invoice_date=header["invoice_date"],
        currency=header["currency"] or "CNY",
        lines=tuple(
            InvoiceLine(
                v["line_no"],
                v["po_line_no"] if v["po_line_no"] is not None else v["line_no"],
                v["item"] or "",
                v["quantity"],
                v["unit_price"],
                v["net"],
                v["tax_rate"],
                v["tax"],
                v["gross"],
                r,
            )
            for r, v in lines
        ),
        stated_totals=totals,
        row=row,
    )


def _describe(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _document(
    kind: DocKind, specs: Mapping[str, Spec], group: _Group, allowed_rates: Sequence[int], *, csv_mode: bool
) -> TradeDocument | RejectedDocument:
    header_specs = [s for s in specs.values() if s.header]
    line_specs = [s for s in specs.values() if not s.header]
    errors = list(group.errors)
    reference: dict[str, Any] | None = None
    reference_row = 0
    reference_raw: list[object] | None = None
    for row, cells in group.headers:
        raw = [cells[s.name][0] if s.name in cells else None for s in header_specs]
        if raw == reference_raw:
            continue  # the same cells as the document's first readable row (the usual case): same values
        values = _read_fields(header_specs, row, cells, errors, missing_is_empty=csv_mode)
        if values is None:
            continue
        if reference is None:
            reference, reference_row, reference_raw = values, row, raw
            continue
        for spec in header_specs:
            if values[spec.name] != reference[spec.name]:
                errors.append(
                    RowError(
                        row,
                        spec.name,
                        "inconsistent_header",
                        f"{spec.name} {_describe(values[spec.name])!r} differs from "
                        f"{_describe(reference[spec.name])!r} on row {reference_row} of the same document {group.number}",
                    )
                )
    good_lines: list[tuple[int, dict[str, Any]]] = []
    for row, cells in group.lines:
        line_values = _read_fields(line_specs, row, cells, errors, missing_is_empty=csv_mode)
        if line_values is not None:
            good_lines.append((row, line_values))
    whole = len(good_lines) == len(group.lines)
    seller = (reference or {}).get("seller_uscc") or ""
    if reference is not None and (good_lines or whole):
        doc = _build(kind, reference, good_lines, group.first_row, whole and not errors)
        errors.extend(validate_document(doc, allowed_rates))
        if not errors:
            return doc
        seller = doc.seller_uscc
    order = {name: i for i, name in enumerate(specs)}
    errors.sort(key=lambda e: (e.row, order.get(e.field, len(order))))
    return RejectedDocument(kind, group.number, seller, group.first_row, tuple(_dedupe(errors)))


def _dedupe(errors: Sequence[RowError]) -> Iterator[RowError]:
    seen: set[RowError] = set()
    for error in errors:
        if error not in seen:
            seen.add(error)
            yield error


# --- decoding ----------------------------------------------------------------------------------------


def decode_text(data: bytes) -> tuple[str, str]:
    """Strict UTF-8 (BOM or not), else GB18030 (a superset of GBK); `_CellError` if neither reads."""
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise _CellError(
                "unreadable_encoding", f"starts with a UTF-8 byte-order mark but byte {exc.start} is not UTF-8"
            ) from exc
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _CellError("unreadable_encoding", "UTF-16 files are not accepted: save the file as UTF-8 or GBK")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError as gbk_error:
            raise _CellError(
                "unreadable_encoding",
                f"the file is neither UTF-8 (bad byte at offset {utf8_error.start}) nor GBK/GB18030 "
                f"(bad byte at offset {gbk_error.start})",
            ) from gbk_error


def _detect_format(filename: str, text: str) -> Format:
    suffix = PurePath(filename).suffix.lower() if filename else ""
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    return "json" if text.lstrip(_STRIP).startswith("{") else "csv"


# --- CSV ---------------------------------------------------------------------------------------------


class _FileError(Exception):
    def __init__(self, code: str, message: str, field_name: str = "file"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_name = field_name


def _read_csv(kind: DocKind, text: str, resolver: ColumnResolver, max_rows: int) -> tuple[list[_Group], int, list[str]]:
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    specs = resolver.specs
    number_field = NUMBER_FIELD[kind]
    groups: dict[str, _Group] = {}
    unnumbered: _Group | None = None
    columns: list[Column | None] = []
    ignored: list[str] = []
    header: list[str] | None = None
    row = 0
    rows = 0
    try:
        for record in reader:
            if header is None:
                if not any(cell.strip(_STRIP) for cell in record):
                    continue
                header = record
                columns = _csv_columns(record, resolver, ignored)
                continue
            row += 1
            if not any(cell.strip(_STRIP) for cell in record):
                continue
            rows += 1
            if rows > max_rows:
                raise _FileError("too_many_rows", f"the file has more than {max_rows} data rows (erp_max_rows)")
            cells: dict[str, tuple[object, Column]] = {}
            for column, cell in zip(columns, record, strict=False):
                if column is not None:
                    cells[column.name] = (cell, column)
            row_errors: list[RowError] = []
            if len(record) != len(header):
                row_errors.append(
                    RowError(
                        row,
                        "row",
                        "wrong_cell_count",
                        f"row has {len(record)} cells but the header has {len(header)}"
                        + (" (an amount with an unquoted thousands separator?)" if len(record) > len(header) else ""),
                    )
                )
            number = ""
            if number_field in cells:
                try:
                    number = parse_number_text(cells[number_field][0])
                except _CellError:
                    number = _text_of(cells[number_field][0]) if isinstance(cells[number_field][0], str) else ""
            if not number:
                if unnumbered is None:
                    unnumbered = _Group("", row)
                unnumbered.errors.extend(row_errors)
                unnumbered.errors.append(RowError(row, number_field, "missing_value", f"{number_field} is empty"))
                continue
            group = groups.get(number)
            if group is None:
                group = groups[number] = _Group(number, row)
            group.errors.extend(row_errors)
            if row_errors:  # the cells are not where the header says: do not read them
                continue
            group.headers.append((row, cells))
            group.lines.append((row, cells))
    except csv.Error as exc:
        raise _FileError("malformed_csv", f"line {reader.line_num}: {exc}") from exc
    if header is None:
        raise _FileError("empty_file", "the file is empty (no header row)")
    missing = [s.name for s in specs.values() if s.required and all(c is None or c.name != s.name for c in columns)]
    if missing:
        raise _FileError(
            "missing_columns",
            "the header lacks required columns: " + ", ".join(missing) + f" (it has: {', '.join(header)})",
            "header",
        )
    if rows == 0:
        raise _FileError("empty_file", "the file has a header but no data rows")
    out = list(groups.values())
    if unnumbered is not None:
        out.append(unnumbered)
    return out, rows, ignored


def _csv_columns(header: Sequence[str], resolver: ColumnResolver, ignored: list[str]) -> list[Column | None]:
    columns: list[Column | None] = []
    seen: dict[str, str] = {}
    for source in header:
        if not source.strip(_STRIP):
            columns.append(None)
            continue
        try:
            column = resolver.resolve(source)
        except _HeaderError as exc:
            raise _FileError(exc.code, exc.message, "header") from exc
        if column is None:
            ignored.append(source.strip(_STRIP))
            columns.append(None)
            continue
        if column.name in seen:
            raise _FileError(
                "duplicate_columns", f"columns {seen[column.name]!r} and {source!r} both mean {column.name}", "header"
            )
        seen[column.name] = source
        columns.append(column)
    return columns


# --- JSON --------------------------------------------------------------------------------------------


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        keys = [k for k, _ in pairs]
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise _FileError("invalid_json", f"the key {duplicate!r} appears twice in one object")
    return result


def _no_constant(text: str) -> Any:
    raise _FileError("invalid_json", f"{text} is not a number")


def _json_cells(
    obj: Mapping[str, Any], resolver: ColumnResolver, *, header: bool, where: str, ignored: list[str]
) -> dict[str, tuple[object, Column]]:
    cells: dict[str, tuple[object, Column]] = {}
    seen: dict[str, str] = {}
    for key, value in obj.items():
        if key == "lines" and header:
            continue
        try:
            column = resolver.resolve(key)
        except _HeaderError as exc:
            raise _FileError(exc.code, exc.message, "header") from exc
        if column is None or resolver.specs[column.name].header != header:
            ignored.append(f"{where}.{key}")
            continue
        if column.name in seen:
            raise _FileError("duplicate_columns", f"keys {seen[column.name]!r} and {key!r} both mean {column.name}")
        seen[column.name] = key
        cells[column.name] = (value, column)
    return cells


def _read_json(
    kind: DocKind, text: str, resolver: ColumnResolver, max_rows: int
) -> tuple[list[_Group], int, list[str]]:
    try:
        root = json.loads(text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise _FileError("invalid_json", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise _FileError("invalid_json", "the JSON is nested too deeply") from exc
    if not isinstance(root, dict) or not isinstance(root.get("documents"), list):
        raise _FileError("invalid_json", 'expected an object {"kind": ..., "documents": [...]}')
    stated_kind = root.get("kind")
    if stated_kind is not None and stated_kind != kind.value:
        raise _FileError(
            "wrong_kind", f"the file says kind {stated_kind!r} but it is being imported as {kind.value!r}", "kind"
        )
    number_field = NUMBER_FIELD[kind]
    groups: list[_Group] = []
    ignored: list[str] = []
    row = 0
    for index, doc in enumerate(root["documents"]):
        where = f"documents[{index}]"
        if not isinstance(doc, dict):
            raise _FileError("invalid_json", f"{where} is not an object")
        lines = doc.get("lines", [])
        if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
            raise _FileError("invalid_json", f"{where}.lines is not a list of objects")
        header_cells = _json_cells(doc, resolver, header=True, where="documents[]", ignored=ignored)
        raw_number = header_cells.get(number_field, (None, None))[0]
        try:
            number = parse_number_text(raw_number)
        except _CellError:
            number = raw_number if isinstance(raw_number, str) else ""
        group = _Group(number, row + 1 if lines else 0, sources=[where])
        group.headers.append((group.first_row, header_cells))
        for line in lines:
            row += 1
            if row > max_rows:
                raise _FileError("too_many_rows", f"the file has more than {max_rows} lines (erp_max_rows)")
            group.lines.append(
                (row, _json_cells(line, resolver, header=False, where="documents[].lines[]", ignored=ignored))
            )
        groups.append(group)
    if not groups:
        raise _FileError("empty_file", "the file has no documents")
    by_number: dict[str, list[_Group]] = {}
    for group in groups:
        if group.number:
            by_number.setdefault(group.number, []).append(group)
    for number, same in by_number.items():
        if len(same) > 1:
            places = ", ".join(g.sources[0] for g in same)
            for group in same:
                group.errors.append(
                    RowError(
                        group.first_row,
                        number_field,
                        "duplicate_document",
                        f"{number_field} {number} appears more than once in the file ({places})",
                    )
                )
    return groups, row, sorted(set(ignored), key=ignored.index)


# --- entry point -------------------------------------------------------------------------------------


def parse_kind(kind: DocKind | str) -> DocKind:
    try:
        return DocKind(kind)
    except ValueError as exc:
        kinds = ", ".join(k.value for k in DocKind)
        raise InvalidInput(f"kind must be one of {kinds}, got {kind!r}", code="invalid_kind", field="kind") from exc


def parse_file(
    kind: DocKind | str,
    data: bytes,
    filename: str = "",
    *,
    fmt: Format | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
    allowed_tax_rates_pct: Sequence[int] = DEFAULT_TAX_RATES_PCT,
) -> ParsedFile:
    """Read ``data`` as documents of ``kind``. Never raises for bad content: see `ParsedFile`."""
    doc_kind = parse_kind(kind)
    if len(data) > max_bytes:
        return _file_error(
            doc_kind, "file_too_large", f"the file has {len(data)} bytes, more than {max_bytes} (erp_max_file_bytes)"
        )
    try:
        text, encoding = decode_text(data)
    except _CellError as exc:
        return _file_error(doc_kind, exc.code, exc.message)
    if "\x00" in text:
        return _file_error(doc_kind, "not_text", "the file contains NUL characters: it is not a text file")
    chosen: Format = fmt or _detect_format(filename, text)
    resolver = ColumnResolver(doc_kind)
    try:
        if chosen == "json":
            groups, rows, ignored = _read_json(doc_kind, text, resolver, max_rows)
        else:
            groups, rows, ignored = _read_csv(doc_kind, text, resolver, max_rows)
    except _FileError as exc:
        return _file_error(doc_kind, exc.code, exc.message, field_name=exc.field_name, fmt=chosen, encoding=encoding)
    documents: list[TradeDocument] = []
    rejected: list[RejectedDocument] = []
    for group in groups:
        outcome = _document(doc_kind, resolver.specs, group, allowed_tax_rates_pct, csv_mode=chosen == "csv")
        if isinstance(outcome, RejectedDocument):
            rejected.append(outcome)
        else:
            documents.append(outcome)
    return ParsedFile(
        kind=doc_kind,
        format=chosen,
        encoding=encoding,
        rows=rows,
        documents=tuple(documents),
        rejected=tuple(rejected),
        file_errors=(),
        ignored_columns=tuple(ignored),
    )
