"""Off-ledger tables for confirmation, financing and clearing (the trade-finance capability).

Registered on the shared `metadata`, so Alembic and `creditflow verify` see them with the rest.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from creditflow.kernel.tables import ID, UUID, metadata

core_ratings = Table(
    "core_ratings",
    metadata,
    Column("org_id", ID, primary_key=True),
    Column("rating", String(8), nullable=False),
    Column("set_ts_ms", BigInteger, nullable=False),
)

settlement_accounts = Table(
    "settlement_accounts",
    metadata,
    Column("org_id", ID, primary_key=True),
    Column("account_name", String(140), nullable=False),
    Column("account_number", String(34), nullable=False),
    Column("bic", String(11), nullable=False),
)

# A requested change of an organisation's settlement account (at most one per organisation): it takes
# effect at ``effective_ts_ms`` (the waiting period, ``financing.account_change_wait_s``) unless an admin
# cancels it; until then payouts use ``settlement_accounts``.
settlement_account_changes = Table(
    "settlement_account_changes",
    metadata,
    Column("org_id", ID, primary_key=True),
    Column("account_name", String(140), nullable=False),
    Column("account_number", String(34), nullable=False),
    Column("bic", String(11), nullable=False),
    Column("requested_ts_ms", BigInteger, nullable=False),
    Column("effective_ts_ms", BigInteger, nullable=False),
    Column("requested_by", String(100), nullable=False),
)

bank_products = Table(
    "bank_products",
    metadata,
    Column("id", ID, primary_key=True),
    Column("bank", ID, nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("rates_json", Text, nullable=False),
    Column("fee_bps", Integer, nullable=False),
    Column("fee_fixed_minor", BigInteger, nullable=False),
    Column("min_minor", BigInteger, nullable=False),
    Column("max_minor", BigInteger, nullable=False),
    Column("with_recourse", Boolean, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
)

bank_limits = Table(
    "bank_limits",
    metadata,
    Column("bank", ID, nullable=False),
    Column("core", ID, nullable=False),
    Column("limit_minor", BigInteger, nullable=False),
    Column("used_minor", BigInteger, nullable=False),
    PrimaryKeyConstraint("bank", "core"),
    CheckConstraint("used_minor >= 0 AND used_minor <= limit_minor", name="used_within_limit"),
)

bank_blacklist = Table(
    "bank_blacklist",
    metadata,
    Column("bank", ID, nullable=False),
    Column("org_id", ID, nullable=False),
    Column("reason", String(200), nullable=False),
    PrimaryKeyConstraint("bank", "org_id"),
)

financing_requests = Table(
    "financing_requests",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("piece_id", UUID, nullable=False, index=True),
    Column("holder", ID, nullable=False, index=True),
    Column("bank", ID, nullable=False, index=True),
    Column("product_id", ID, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reasons_json", Text, nullable=False),
    Column("requested_ts_ms", BigInteger, nullable=False),
    Column("decision_us", BigInteger, nullable=False),
)

financing_agreements = Table(
    "financing_agreements",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("piece_id", UUID, nullable=False),
    Column("bank_piece_id", UUID, nullable=False, unique=True),
    Column("certificate_id", UUID, nullable=False, index=True),
    Column("seller", ID, nullable=False, index=True),
    Column("bank", ID, nullable=False, index=True),
    Column("core", ID, nullable=False, index=True),
    Column("product_id", ID, nullable=False),
    Column("face_minor", BigInteger, nullable=False),
    Column("rate_bps", Integer, nullable=False),
    Column("days", Integer, nullable=False),
    Column("interest_minor", BigInteger, nullable=False),
    Column("fees_minor", BigInteger, nullable=False),
    Column("disbursement_minor", BigInteger, nullable=False),
    Column("with_recourse", Boolean, nullable=False),
    Column("tier", Integer, nullable=False),
    Column("financed_on", Date, nullable=False),
    Column("financed_ts_ms", BigInteger, nullable=False),
    Column("agreement_digest", String(64), nullable=False),
    CheckConstraint("interest_minor + fees_minor + disbursement_minor = face_minor", name="adds_up"),
)


payments = Table(
    "payments",
    metadata,
    Column("certificate_id", UUID, primary_key=True),
    Column("payer", ID, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("reference", String(140), nullable=False),
    Column("paid_ts_ms", BigInteger, nullable=False),
)

clearing_runs = Table(
    "clearing_runs",
    metadata,
    Column("certificate_id", UUID, primary_key=True),
    Column("message_id", String(35), nullable=False, unique=True),
    Column("payment_file", LargeBinary, nullable=True),  # none when every payout was held
    Column("total_minor", BigInteger, nullable=False),
    Column("transfers", Integer, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
)

# A holder's payout that clearing could not pay (no account, or an account that breaks the rules): the
# piece is cleared on the ledger (the issuer paid), the money waits here until a release pays it.
held_payouts = Table(
    "held_payouts",
    metadata,
    Column("piece_id", UUID, primary_key=True),
    Column("certificate_id", UUID, nullable=False, index=True),
    Column("holder", ID, nullable=False, index=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("code", String(64), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("held_ts_ms", BigInteger, nullable=False),
    Column("released_message_id", String(35), nullable=True),
    Column("released_ts_ms", BigInteger, nullable=True),
    CheckConstraint("amount_minor > 0", name="held_positive"),
)

# The payment files that paid held payouts later (one per release).
payout_releases = Table(
    "payout_releases",
    metadata,
    Column("message_id", String(35), primary_key=True),
    Column("certificate_id", UUID, nullable=False, index=True),
    Column("payment_file", LargeBinary, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("transfers", Integer, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
)
