"""Trade documents imported from ERP systems (off-ledger service data), on the shared `metadata`.

`trade_documents` holds one row per purchase order, goods receipt or invoice; a document is identified
by (kind, seller USCC, number), so an invoice number is used once per seller, and re-importing a
document is recognised by its `digest` (`creditflow.trade.documents.document_digest`). `trade_lines` holds
its lines. Quantities and unit prices are exact decimal text ("10.5"); money is integer fen.
Columns that do not apply to a kind are NULL: receipts carry no money and no currency (their quantity
is `quantity_received`), purchase orders no tax.

This module must be imported before migrations run (``creditflow.ledger.tables`` imports it).
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

from creditflow.kernel.tables import ID, UUID, metadata

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

payables = Table(
    "payables",
    metadata,
    Column("id", ID, primary_key=True),
    Column("debtor", ID, nullable=False, index=True),
    Column("creditor", ID, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("issued_minor", BigInteger, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    # draft (entered by hand) or matched (from a three-way match) -> confirmed after two approvals
    Column("status", String(16), nullable=False, server_default="draft"),
    Column("invoice_id", String(64)),
    # the person who entered it (its maker, who may not approve it); NULL: an organisation-wide key or a
    # three-way match made it (no person maker)
    Column("created_by", ID, nullable=True),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("issued_minor >= 0 AND issued_minor <= amount_minor", name="issued_within_amount"),
)

payable_approvals = Table(
    "payable_approvals",
    metadata,
    Column("payable_id", ID, nullable=False),
    Column("user_id", ID, nullable=False),
    Column("approved_ts_ms", BigInteger, nullable=False),
    # how the approver proved who they were (creditflow.identity.roles.Auth: session, personal_token;
    # 'unrecorded' for approvals from before migration 0011) and with which credential
    # (key:<api key id> or session:<reference>)
    Column("auth", String(16), nullable=False, server_default="unrecorded"),
    Column("credential", String(80), nullable=True),
    # the approval's place among the payable's approvals: 1, 2, ... (0: recorded before migration 0011)
    Column("ordinal", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("payable_id", "user_id"),
)

credit_lines = Table(
    "credit_lines",
    metadata,
    Column("org_id", ID, primary_key=True),
    Column("limit_minor", BigInteger, nullable=False),
    # face value of the issuer's certificates that are pending, outstanding or overdue
    Column("used_minor", BigInteger, nullable=False),
    Column("set_ts_ms", BigInteger, nullable=False),
    CheckConstraint("used_minor >= 0 AND used_minor <= limit_minor", name="used_within_limit"),
)

invoice_usage = Table(
    "invoice_usage",
    metadata,
    # One row per trade invoice cited by a transfer: the platform-wide guard against double financing.
    Column("trade_ref", String(64), primary_key=True),
    Column("gross_minor", BigInteger, nullable=False),
    Column("used_minor", BigInteger, nullable=False),
    CheckConstraint("used_minor >= 0 AND used_minor <= gross_minor", name="used_within_gross"),
)

piece_trade_refs = Table(
    "piece_trade_refs",
    metadata,
    Column("piece_id", UUID, primary_key=True),
    Column("trade_ref", String(64), nullable=False, index=True),
    Column("amount_minor", BigInteger, nullable=False),
)
