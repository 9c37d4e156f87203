"""data credit

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credit_firms',
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('founded_on', sa.Date(), nullable=False),
    sa.Column('industry', sa.String(length=64), nullable=False),
    sa.Column('blacklisted', sa.Boolean(), nullable=False),
    sa.Column('court_judgment', sa.Boolean(), nullable=False),
    sa.Column('updated_ts_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', name=op.f('pk_credit_firms'))
    )
    op.create_table('credit_observations',
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('period', sa.Date(), nullable=False),
    sa.Column('item_key', sa.String(length=32), nullable=False),
    sa.Column('available_on', sa.Date(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('import_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'source', 'metric', 'period', 'item_key', name=op.f('pk_credit_observations'))
    )
    op.create_index('ix_credit_observations_org_available', 'credit_observations', ['org_id', 'available_on'], unique=False)
    op.create_table('credit_imports',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('observations', sa.Integer(), nullable=False),
    sa.Column('imported_ts_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_imports'))
    )
    op.create_table('credit_models',
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('data_hash', sa.String(length=64), nullable=False),
    sa.Column('feature_hash', sa.String(length=64), nullable=False),
    sa.Column('params_hash', sa.String(length=64), nullable=False),
    sa.Column('artefact', sa.Text(), nullable=False),
    sa.Column('metrics_json', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_ts_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_credit_models'))
    )
    op.create_table('credit_decisions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('product', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('pd', sa.Float(), nullable=True),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('requested_minor', sa.BigInteger(), nullable=False),
    sa.Column('limit_minor', sa.BigInteger(), nullable=False),
    sa.Column('granted_minor', sa.BigInteger(), nullable=False),
    sa.Column('rate_bps', sa.Integer(), nullable=True),
    sa.Column('reasons_json', sa.Text(), nullable=False),
    sa.Column('knockouts_json', sa.Text(), nullable=False),
    sa.Column('policy_version', sa.String(length=64), nullable=False),
    sa.Column('policy_sha256', sa.String(length=64), nullable=False),
    sa.Column('model_version', sa.String(length=16), nullable=True),
    sa.Column('feature_hash', sa.String(length=64), nullable=False),
    sa.Column('features_json', sa.Text(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('decided_ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('decision_us', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('granted_minor >= 0 AND granted_minor <= limit_minor', name=op.f('ck_credit_decisions_granted_within_limit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_decisions'))
    )
    with op.batch_alter_table('credit_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_credit_decisions_org_id'), ['org_id'], unique=False)
    op.create_table('credit_labels',
    sa.Column('decision_id', sa.String(length=36), nullable=False),
    sa.Column('bad', sa.Boolean(), nullable=False),
    sa.Column('labelled_ts_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('decision_id', name=op.f('pk_credit_labels'))
    )


def downgrade() -> None:
    op.drop_table('credit_labels')
    with op.batch_alter_table('credit_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credit_decisions_org_id'))
    op.drop_table('credit_decisions')
    op.drop_table('credit_models')
    op.drop_table('credit_imports')
    op.drop_index('ix_credit_observations_org_available', table_name='credit_observations')
    op.drop_table('credit_observations')
    op.drop_table('credit_firms')
