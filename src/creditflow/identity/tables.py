"""Web sign-in sessions (creditflow.identity.sessions). Only the SHA-256 of a session token is stored,
so a copy of the database does not sign anybody in."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
)

from creditflow.kernel.tables import ID, metadata

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_sha256", LargeBinary(32), primary_key=True),
    Column("user_id", ID, nullable=False, index=True),
    Column("org_id", ID, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    Column("expires_ts_ms", BigInteger, nullable=False, index=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("org_id", ID, nullable=False, index=True),
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False),
    # a personal token: the key acts as this user (creditflow.identity.roles); NULL: organisation-wide
    Column("user_id", ID, nullable=True, index=True),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("org_id", ID, nullable=False),
    Column("key", String(200), nullable=False),
    Column("request_sha256", LargeBinary(32), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    # the response carried a secret (shown once): ``response`` holds only a note of how to get a new one
    Column("secret_withheld", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("org_id", "key"),
)

users = Table(
    "users",
    metadata,
    Column("user_id", ID, primary_key=True),
    Column("org_id", ID, nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    # sign-in to the web pages (creditflow.identity.sessions): an Argon2id hash, never the password
    Column("password_hash", String(255), nullable=True),
    Column("failed_sign_ins", Integer, nullable=False, server_default="0"),
    Column("locked_until_ms", BigInteger, nullable=True),
    # the user's roles within its organisation, space-separated and sorted (creditflow.identity.roles)
    Column("roles", String(100), nullable=False, server_default=""),
)

# Messages to an organisation's admins (an account change, a lock-out, a credit look-up, ...): what the
# platform tells the people who answer for the organisation, listed by GET /v1/notifications.
notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(32), primary_key=True),
    Column("org_id", ID, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("data_json", Text, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    Index("ix_notifications_org_created", "org_id", "created_ts_ms"),
)
