"""trust between parties (issue 13): user roles, personal tokens, notifications to admins

``users.roles``: a user's roles within its organisation (admin, maker, approver, viewer; space-separated,
sorted). Users that existed before could do everything their organisation could, so they keep it: they
become ``admin approver maker`` (an organisation should review them; `creditflow users` lists them).
``api_keys.user_id``: a personal token acts as that user (NULL: an organisation-wide key, as before).
``notifications``: what the platform tells an organisation's admins.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('roles', sa.String(length=100), nullable=False, server_default=''))
    op.execute("UPDATE users SET roles = 'admin approver maker'")
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('user_id', sa.String(length=64), nullable=True))
        batch.create_index('ix_api_keys_user_id', ['user_id'], unique=False)
    op.create_table(
        'notifications',
        sa.Column('notification_id', sa.String(length=32), nullable=False),
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=64), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('data_json', sa.Text(), nullable=False),
        sa.Column('created_ts_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('notification_id'),
    )
    op.create_index('ix_notifications_org_created', 'notifications', ['org_id', 'created_ts_ms'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_notifications_org_created', table_name='notifications')
    op.drop_table('notifications')
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_index('ix_api_keys_user_id')
        batch.drop_column('user_id')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('roles')
