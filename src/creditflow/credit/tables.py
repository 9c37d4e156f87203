"""Off-ledger tables of the data-credit capability: firm profiles, source observations (point-in-time:
each row knows the day it became available), imports, model artefacts, decisions with their feature
snapshots, and labelled outcomes for monitoring.

Registered on the shared `metadata`; migration 0005 creates exactly these, 0008 adds the challenger's
shadow decision to `credit_decisions`, 0013 who asked, the authorisations, the query log and the manual
decisions (four eyes).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from creditflow.kernel.tables import ID, UUID, metadata

credit_firms = Table(
    "credit_firms",
    metadata,
    Column("org_id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("founded_on", Date, nullable=False),
    Column("industry", String(64), nullable=False),
    Column("blacklisted", Boolean, nullable=False),
    Column("court_judgment", Boolean, nullable=False),
    Column("updated_ts_ms", BigInteger, nullable=False),
)

credit_observations = Table(
    "credit_observations",
    metadata,
    Column("org_id", ID, nullable=False),
    Column("source", String(32), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("period", Date, nullable=False),
    Column("item_key", String(32), nullable=False),
    Column("available_on", Date, nullable=False),
    Column("value", Float, nullable=False),
    Column("note", Text),
    Column("import_id", UUID, nullable=False),
    PrimaryKeyConstraint("org_id", "source", "metric", "period", "item_key"),
    # one decision reads one firm's history up to a day: (org_id, available_on) answers it from the index
    Index("ix_credit_observations_org_available", "org_id", "available_on"),
)

credit_imports = Table(
    "credit_imports",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("source", String(32), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("observations", Integer, nullable=False),
    Column("imported_ts_ms", BigInteger, nullable=False),
)

credit_models = Table(
    "credit_models",
    metadata,
    Column("version", String(16), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("data_hash", String(64), nullable=False),
    Column("feature_hash", String(64), nullable=False),
    Column("params_hash", String(64), nullable=False),
    Column("artefact", Text, nullable=False),
    Column("metrics_json", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
)

credit_decisions = Table(
    "credit_decisions",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("org_id", ID, nullable=False, index=True),
    Column("product", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("pd", Float),
    Column("score", Integer),
    Column("requested_minor", BigInteger, nullable=False),
    Column("limit_minor", BigInteger, nullable=False),
    Column("granted_minor", BigInteger, nullable=False),
    Column("rate_bps", Integer),
    Column("reasons_json", Text, nullable=False),
    Column("knockouts_json", Text, nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("policy_sha256", String(64), nullable=False),
    Column("model_version", String(16)),
    Column("feature_hash", String(64), nullable=False),
    Column("features_json", Text, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("decided_ts_ms", BigInteger, nullable=False),
    Column("decision_us", BigInteger, nullable=False),
    # the challenger's shadow decision (migration 0008): NULL without an active challenger
    Column("challenger_version", String(16)),
    Column("challenger_pd", Float),
    Column("challenger_outcome", String(16)),
    # who asked (migration 0013): the bank (or overseer) that applied, under which authorisation; NULL when
    # the business applied for itself or the platform asked (certificate financing, the CLI)
    Column("asked_by", ID),
    Column("authorisation_id", UUID),
    CheckConstraint("granted_minor >= 0 AND granted_minor <= limit_minor", name="granted_within_limit"),
)

credit_labels = Table(
    "credit_labels",
    metadata,
    Column("decision_id", UUID, primary_key=True),
    Column("bad", Boolean, nullable=False),
    Column("labelled_ts_ms", BigInteger, nullable=False),
)


# --- consent and four eyes (issue 13, migration 0013) ----------------------------------------------------

credit_authorisations = Table(
    "credit_authorisations",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("org_id", ID, nullable=False),  # the business that grants
    Column("bank_id", ID, nullable=False),  # the bank it names
    Column("purpose_code", String(32), nullable=False),
    Column("purpose", String(500), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("granted_by", ID, nullable=False),
    Column("granted_auth", String(16), nullable=False),
    Column("granted_ts_ms", BigInteger, nullable=False),
    Column("expires_ts_ms", BigInteger, nullable=False),
    Column("revoked_ts_ms", BigInteger),
    Column("revoked_by", ID),
    Column("revoked_auth", String(16)),
    CheckConstraint("scope IN ('decision', 'decision_and_features')", name="scope_known"),
    CheckConstraint("expires_ts_ms > granted_ts_ms", name="expires_after_grant"),
    Index("ix_credit_authorisations_org", "org_id", "granted_ts_ms"),
    Index("ix_credit_authorisations_bank_org", "bank_id", "org_id"),
)

credit_queries = Table(
    "credit_queries",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("org_id", ID, nullable=False),  # the business looked at
    Column("asker_id", ID, nullable=False),  # the bank (or overseer) that looked
    Column("asker_role", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # application | read
    Column("decision_id", UUID, nullable=False),
    Column("authorisation_id", UUID),  # NULL for an overseer
    Column("purpose_code", String(32)),
    Column("purpose", String(500)),
    Column("scope", String(32), nullable=False),  # what was returned
    Column("user_id", ID),  # the person, when a person asked
    Column("auth", String(16), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Index("ix_credit_queries_org_ts", "org_id", "ts_ms"),
    Index("ix_credit_queries_asker_ts", "asker_id", "ts_ms"),
)

credit_manual_decisions = Table(
    "credit_manual_decisions",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("decision_id", UUID, nullable=False),
    Column("bank_id", ID, nullable=False),
    Column("action", String(16), nullable=False),  # approve | decline
    Column("granted_minor", BigInteger, nullable=False),
    Column("rate_bps", Integer),
    Column("note", String(1000), nullable=False),
    Column("status", String(16), nullable=False),  # proposed | effective | rejected
    Column("proposed_by", ID, nullable=False),
    Column("proposed_auth", String(16), nullable=False),
    Column("proposed_ts_ms", BigInteger, nullable=False),
    Column("confirmed_by", ID),
    Column("confirmed_auth", String(16)),
    Column("confirmed_ts_ms", BigInteger),
    Column("rejected_by", ID),
    Column("rejected_auth", String(16)),
    Column("rejected_ts_ms", BigInteger),
    CheckConstraint("action IN ('approve', 'decline')", name="action_known"),
    CheckConstraint("status IN ('proposed', 'effective', 'rejected')", name="status_known"),
    CheckConstraint("granted_minor >= 0", name="granted_nonnegative"),
    # at most one proposal waiting or in effect per decision, enforced by the database
    Index(
        "ux_credit_manual_one_open",
        "decision_id",
        unique=True,
        sqlite_where=text("status IN ('proposed', 'effective')"),
        postgresql_where=text("status IN ('proposed', 'effective')"),
    ),
)
