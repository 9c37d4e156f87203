"""Web sign-in sessions (creditflow.services.sessions). Only the SHA-256 of a session token is stored,
so a copy of the database does not sign anybody in."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary, String, Table

from creditflow.adapters.sql.tables import ID, metadata

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
