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
    # when it stops working (401 api_key_expired); when it was revoked; when it was last seen (to within a
    # minute, written only when a process looks the key up in the database)
    Column("expires_ts_ms", BigInteger, nullable=True),
    Column("revoked_ts_ms", BigInteger, nullable=True),
    Column("last_used_ts_ms", BigInteger, nullable=True),
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
    # an admin's password reset (creditflow.identity.sessions): the SHA-256 of a one-time token and its expiry
    Column("reset_sha256", LargeBinary(32), nullable=True),
    Column("reset_expires_ts_ms", BigInteger, nullable=True),
)

# Sign-in throttling (creditflow.identity.throttle): one counter per (scope, subject), counted by one
# INSERT .. ON CONFLICT DO UPDATE (atomic: concurrent failures count exactly). Scopes: ``user_address``
# (subject "user\naddress"), ``user`` (counts distinct failing addresses), ``address`` (across users).
sign_in_throttle = Table(
    "sign_in_throttle",
    metadata,
    Column("scope", String(16), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("last_failure_ts_ms", BigInteger, nullable=False),
    Column("blocked_until_ts_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("scope", "subject"),
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
