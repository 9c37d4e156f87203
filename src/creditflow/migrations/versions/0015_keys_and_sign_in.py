"""keys and sessions (issue 13, point 6): API keys expire and are revoked with a time; password resets;
sign-in throttling counted in the database

``api_keys.expires_ts_ms``: NULL for the keys that existed before (they keep working until revoked or
rotated; new keys always expire). ``api_keys.revoked_ts_ms``, ``api_keys.last_used_ts_ms``.
``users.reset_sha256``/``reset_expires_ts_ms``: an admin's one-time reset token (its SHA-256).
``sign_in_throttle``: failure counters per (scope, subject). ``users.failed_sign_ins`` and
``users.locked_until_ms`` (the old per-user lock-out, which anyone could trigger) are no longer used.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('expires_ts_ms', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('revoked_ts_ms', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('last_used_ts_ms', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('reset_sha256', sa.LargeBinary(length=32), nullable=True))
        batch.add_column(sa.Column('reset_expires_ts_ms', sa.BigInteger(), nullable=True))
    op.create_table(
        'sign_in_throttle',
        sa.Column('scope', sa.String(length=16), nullable=False),
        sa.Column('subject', sa.String(length=400), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_failure_ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('blocked_until_ts_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('scope', 'subject', name=op.f('pk_sign_in_throttle')),
    )


def downgrade() -> None:
    op.drop_table('sign_in_throttle')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('reset_expires_ts_ms')
        batch.drop_column('reset_sha256')
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('last_used_ts_ms')
        batch.drop_column('revoked_ts_ms')
        batch.drop_column('expires_ts_ms')
