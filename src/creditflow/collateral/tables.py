"""Tables of the IoT-collateral capability, on the shared `metadata`.

The one rule the database itself enforces for alarms: at most one *active* alarm per (asset, type), a
partial unique index (SQLite and PostgreSQL both have them), so two ingest workers that see the same
event cannot both raise it. Readings are keyed by (device, seq): a replayed seq cannot be stored twice.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

from creditflow.kernel.tables import ID, UUID, metadata

iot_assets = Table(
    "iot_assets",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("owner", ID, nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("commodity", String(32)),  # warehouse lot (price key); crop field uses `crop`
    Column("expected_g", BigInteger, nullable=False),  # lot: pledged minus released; crop: expected yield
    Column("receipt_no", String(64), unique=True),  # one warehouse receipt, one asset, one pledge
    Column("serial_no", String(64)),
    Column("geofence_json", Text),
    Column("appraised_minor", BigInteger),
    Column("area_m2", BigInteger),
    Column("crop", String(32)),
    Column("created_ts_ms", BigInteger, nullable=False),
    # the rules engine's memory of this asset (JSON) and its current lendable value
    Column("state_json", Text, nullable=False),
    Column("health_index", SmallInteger, nullable=False),
    Column("measured_g", BigInteger),
    Column("value_minor", BigInteger, nullable=False),
    Column("valued_ts_ms", BigInteger, nullable=False),
    CheckConstraint("expected_g >= 0", name="expected_nonnegative"),
    CheckConstraint("value_minor >= 0", name="value_nonnegative"),
)

iot_devices = Table(
    "iot_devices",
    metadata,
    Column("id", ID, primary_key=True),
    Column("asset_id", ID, nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    # The HMAC key, sealed under the custody key (services/iot_secrets.py). `secret` is the clear column of
    # databases from before sealing: emptied into `secret_sealed` at start-up, never written.
    Column("secret", LargeBinary(32)),
    Column("secret_sealed", LargeBinary),
    Column("secret_version", Integer, nullable=False),
    Column("status", String(8), nullable=False),  # active | retired
    Column("created_ts_ms", BigInteger, nullable=False),
    Column("last_rx_ms", BigInteger),
)

iot_readings = Table(
    "iot_readings",
    metadata,
    Column("device_id", ID, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("asset_id", ID, nullable=False),
    Column("device_ts_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("values_json", Text, nullable=False),
    Column("sig", String(64), nullable=False),
    Column("late", Boolean, nullable=False),
    Column("skewed", Boolean, nullable=False),
    PrimaryKeyConstraint("device_id", "seq"),
    Index("ix_iot_readings_asset_ts", "asset_id", "device_ts_ms"),
)

iot_dead_letters = Table(
    "iot_dead_letters",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("received_ms", BigInteger, nullable=False),
    Column("source", String(8), nullable=False),
    Column("device_id", ID),
    Column("reason", String(32), nullable=False, index=True),
    Column("detail", String(300), nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

# The operator's price feed: values unpledged assets and the loans of a bank with no price of its own.
iot_prices = Table(
    "iot_prices",
    metadata,
    Column("commodity", String(32), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("price_minor_per_kg", BigInteger, nullable=False),
    Column("source", String(64), nullable=False),
    PrimaryKeyConstraint("commodity", "ts_ms"),
    CheckConstraint("price_minor_per_kg >= 0", name="price_nonnegative"),
)

# Each bank's own price book: used for the loans it granted, ahead of the operator's feed (``iot_prices``).
iot_bank_prices = Table(
    "iot_bank_prices",
    metadata,
    Column("bank", ID, nullable=False),  # whose price book: it values only that bank's loans
    Column("commodity", String(32), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("price_minor_per_kg", BigInteger, nullable=False),
    Column("source", String(64), nullable=False),
    PrimaryKeyConstraint("bank", "commodity", "ts_ms"),
    CheckConstraint("price_minor_per_kg >= 0", name="bank_price_nonnegative"),
)

# A loan is a proposal of its lender (``status`` proposed) until its borrower accepts (accepted) or refuses
# (refused) it; ``terms`` are the canonical bytes both sign (lender at proposal, borrower at acceptance).
iot_loans = Table(
    "iot_loans",
    metadata,
    Column("id", ID, primary_key=True),
    Column("borrower", ID, nullable=False, index=True),
    Column("lender", ID, nullable=False, index=True),
    Column("outstanding_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("bands_key", String(32), nullable=False),  # the commodity whose LTV bands apply
    Column("value_minor", BigInteger, nullable=False),
    Column("ltv_bps", BigInteger),  # NULL: no collateral value
    Column("band", String(16), nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    Column("updated_ts_ms", BigInteger, nullable=False),
    Column("status", String(10), nullable=False, index=True),  # proposed | accepted | refused
    Column("terms", Text),  # canonical JSON of the terms signed (NULL: booked before consent existed)
    Column("terms_digest", String(64)),
    Column("lender_key_id", ID),
    Column("lender_sig", String(128)),  # hex Ed25519 over the consent message of ``terms``
    Column("borrower_key_id", ID),
    Column("borrower_sig", String(128)),
    Column("decided_ts_ms", BigInteger),
    CheckConstraint("outstanding_minor >= 0", name="outstanding_nonnegative"),
    CheckConstraint("status IN ('proposed', 'accepted', 'refused')", name="loan_status_known"),
)

iot_pledges = Table(
    "iot_pledges",
    metadata,
    Column("asset_id", ID, primary_key=True),  # an asset secures at most one loan
    Column("loan_id", ID, nullable=False, index=True),
    Column("haircut_bps", Integer, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    CheckConstraint("haircut_bps >= 0 AND haircut_bps < 10000", name="haircut_range"),
)

# Pledges the lender proposed; the asset's owner (the borrower) accepts or refuses each. Only an accepted one
# becomes a row of ``iot_pledges`` (what values a loan and lets its lender see the asset).
iot_pledge_proposals = Table(
    "iot_pledge_proposals",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("loan_id", ID, nullable=False),
    Column("asset_id", ID, nullable=False),  # as the lender typed it: not checked until the owner accepts
    Column("haircut_bps", Integer, nullable=False),
    Column("status", String(10), nullable=False),  # proposed | accepted | refused
    Column("created_ts_ms", BigInteger, nullable=False),
    Column("decided_ts_ms", BigInteger),
    Column("terms", Text),  # NULL only for a pledge taken before consent existed: made at acceptance
    Column("terms_digest", String(64)),
    Column("lender_key_id", ID),
    Column("lender_sig", String(128)),
    Column("owner_key_id", ID),
    Column("owner_sig", String(128)),
    CheckConstraint("haircut_bps >= 0 AND haircut_bps < 10000", name="proposal_haircut_range"),
    CheckConstraint("status IN ('proposed', 'accepted', 'refused')", name="proposal_status_known"),
    Index("ix_iot_pledge_proposals_loan", "loan_id", "asset_id"),
    Index(
        "uq_iot_pledge_proposals_open",
        "loan_id",
        "asset_id",
        unique=True,
        sqlite_where=text("status = 'proposed'"),
        postgresql_where=text("status = 'proposed'"),
    ),
)

iot_releases = Table(
    "iot_releases",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("asset_id", ID, nullable=False, index=True),
    Column("quantity_g", BigInteger, nullable=False),
    Column("approved_by", ID, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    CheckConstraint("quantity_g > 0", name="quantity_positive"),
)

iot_loan_events = Table(
    "iot_loan_events",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("loan_id", ID, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("from_band", String(16), nullable=False),
    Column("to_band", String(16), nullable=False),
    Column("ltv_bps", BigInteger),
    Column("value_minor", BigInteger, nullable=False),
    Column("outstanding_minor", BigInteger, nullable=False),
    Column("cause", String(32), nullable=False),
    Index("ix_iot_loan_events_loan_ts", "loan_id", "ts_ms"),
)

iot_alarms = Table(
    "iot_alarms",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("asset_id", ID, nullable=False),
    Column("alarm_type", String(32), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("status", String(8), nullable=False),  # active | cleared
    Column("acknowledged", Boolean, nullable=False),
    Column("ack_by", ID),
    Column("ack_ts_ms", BigInteger),
    Column("raised_ts_ms", BigInteger, nullable=False),  # rule time (device time unless skewed)
    Column("stored_ms", BigInteger, nullable=False),  # receive-side time the alarm was written
    Column("cleared_ts_ms", BigInteger),
    Column("updated_ts_ms", BigInteger, nullable=False),
    Column("details_json", Text, nullable=False),
    CheckConstraint("status IN ('active', 'cleared')", name="status_known"),
    Index(
        "uq_iot_alarms_one_active",
        "asset_id",
        "alarm_type",
        unique=True,
        sqlite_where=text("status = 'active'"),
        postgresql_where=text("status = 'active'"),
    ),
    Index("ix_iot_alarms_asset_raised", "asset_id", "raised_ts_ms"),
)

iot_webhooks = Table(
    "iot_webhooks",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("org_id", ID, nullable=False, index=True),
    Column("url", String(500), nullable=False),
    Column("secret", LargeBinary(32)),  # clear, before sealing; emptied at start-up as for devices
    Column("secret_sealed", LargeBinary),
    Column("active", Boolean, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
)

# The outbox: notifications written in the ingest transaction, delivered afterwards (SSE, webhooks).
iot_notifications = Table(
    "iot_notifications",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("rate_key", String(100), nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    Column("payload_json", Text, nullable=False),
    Column("delivered", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Index("ix_iot_notifications_key_ts", "rate_key", "created_ts_ms"),
    Index(
        "ix_iot_notifications_pending",
        "id",
        sqlite_where=text("delivered = 0"),
        postgresql_where=text("delivered = false"),
    ),
)
