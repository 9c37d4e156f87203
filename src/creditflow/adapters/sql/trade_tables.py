"""Trade documents imported from ERP systems (off-ledger service data), on the shared `metadata`.

`trade_documents` holds one row per purchase order, goods receipt or invoice; a document is identified
by (kind, seller USCC, number), so an invoice number is used once per seller, and re-importing a
document is recognised by its `digest` (`creditflow.domain.trade.document_digest`). `trade_lines` holds
its lines. Quantities and unit prices are exact decimal text ("10.5"); money is integer fen.
Columns that do not apply to a kind are NULL: receipts carry no money and no currency (their quantity
is `quantity_received`), purchase orders no tax.

This module must be imported before migrations run (``creditflow.adapters.sql.tables`` imports it).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

from creditflow.adapters.sql.tables import ID, metadata

DOC_NUMBER = String(64)
USCC = String(18)
DECIMAL_TEXT = String(40)

trade_documents = Table(
    "trade_documents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("number", DOC_NUMBER, nullable=False),
    Column("buyer_uscc", USCC, nullable=False),
    Column("seller_uscc", USCC, nullable=False),
    Column("doc_date", Date, nullable=False),
    Column("currency", String(3)),
    Column("net_minor", BigInteger),
    Column("tax_minor", BigInteger),
    Column("gross_minor", BigInteger),
    Column("po_number", DOC_NUMBER),
    Column("digest", String(64), nullable=False),
    Column("imported_by", ID, nullable=False),
    Column("imported_ts_ms", BigInteger, nullable=False),
    UniqueConstraint("kind", "seller_uscc", "number"),
    CheckConstraint("kind IN ('po', 'receipt', 'invoice')", name="known_kind"),
    CheckConstraint(
        "(net_minor IS NULL OR net_minor >= 0) AND (tax_minor IS NULL OR tax_minor >= 0) "
        "AND (gross_minor IS NULL OR gross_minor >= 0)",
        name="amounts_not_negative",
    ),
    # the match finds an invoice's order and receipts by (seller, order number)
    Index("ix_trade_documents_po", "seller_uscc", "po_number", "kind"),
    Index("ix_trade_documents_parties", "buyer_uscc", "seller_uscc", "kind"),
    # transfers cite the invoice they pay by its digest (created by migration 0003, services/trade_rules.py)
    Index("ix_trade_documents_digest", "digest"),
)

trade_lines = Table(
    "trade_lines",
    metadata,
    Column("document_id", Integer, ForeignKey("trade_documents.id", name="fk_trade_lines_document_id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("po_line_no", Integer),
    Column("item", String(200), nullable=False),
    Column("quantity", DECIMAL_TEXT),
    Column("unit_price", DECIMAL_TEXT),
    Column("net_minor", BigInteger),
    Column("tax_rate_pct", SmallInteger),
    Column("tax_minor", BigInteger),
    Column("gross_minor", BigInteger),
    Column("quantity_received", DECIMAL_TEXT),
    PrimaryKeyConstraint("document_id", "line_no"),
)
