"""web sign-in: user passwords (Argon2id hashes) and sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('password_hash', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('failed_sign_ins', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('locked_until_ms', sa.BigInteger(), nullable=True))
    op.create_table('web_sessions',
    sa.Column('token_sha256', sa.LargeBinary(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('expires_ts_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('token_sha256', name=op.f('pk_web_sessions'))
    )
    op.create_index(op.f('ix_web_sessions_user_id'), 'web_sessions', ['user_id'], unique=False)
    op.create_index(op.f('ix_web_sessions_expires_ts_ms'), 'web_sessions', ['expires_ts_ms'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_web_sessions_expires_ts_ms'), table_name='web_sessions')
    op.drop_index(op.f('ix_web_sessions_user_id'), table_name='web_sessions')
    op.drop_table('web_sessions')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('locked_until_ms')
        batch.drop_column('failed_sign_ins')
        batch.drop_column('password_hash')
