"""credit consent (issue 13): authorisations, the query log, four eyes on manual decisions

``credit_authorisations``: a business grants a named bank the right to ask about it, with a purpose, an
expiry and a scope (``decision`` or ``decision_and_features``); revoked rows stay (who, when, how).
``credit_queries``: every look-up by a party other than the business (an application, a read of a
decision), with the authorisation, purpose and what was returned.
``credit_manual_decisions``: a bank's manual decision on a referred application or the override of an
automatic decline: proposed by one person, confirmed by a second (four eyes); at most one proposed or
effective per decision (a partial unique index).
``credit_decisions.asked_by`` / ``authorisation_id``: who applied, under which authorisation (NULL for
decisions before, and for a business applying for itself or the platform asking).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_OPEN = "status IN ('proposed', 'effective')"


def upgrade() -> None:
    with op.batch_alter_table('credit_decisions') as batch:
        batch.add_column(sa.Column('asked_by', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('authorisation_id', sa.String(length=36), nullable=True))
    op.create_table(
        'credit_authorisations',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('bank_id', sa.String(length=64), nullable=False),
        sa.Column('purpose_code', sa.String(length=32), nullable=False),
        sa.Column('purpose', sa.String(length=500), nullable=False),
        sa.Column('scope', sa.String(length=32), nullable=False),
        sa.Column('granted_by', sa.String(length=64), nullable=False),
        sa.Column('granted_auth', sa.String(length=16), nullable=False),
        sa.Column('granted_ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('expires_ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('revoked_ts_ms', sa.BigInteger(), nullable=True),
        sa.Column('revoked_by', sa.String(length=64), nullable=True),
        sa.Column('revoked_auth', sa.String(length=16), nullable=True),
        sa.CheckConstraint(
            "scope IN ('decision', 'decision_and_features')", name=op.f('ck_credit_authorisations_scope_known')
        ),
        sa.CheckConstraint(
            'expires_ts_ms > granted_ts_ms', name=op.f('ck_credit_authorisations_expires_after_grant')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_authorisations')),
    )
    op.create_index('ix_credit_authorisations_org', 'credit_authorisations', ['org_id', 'granted_ts_ms'])
    op.create_index('ix_credit_authorisations_bank_org', 'credit_authorisations', ['bank_id', 'org_id'])
    op.create_table(
        'credit_queries',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('asker_id', sa.String(length=64), nullable=False),
        sa.Column('asker_role', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('decision_id', sa.String(length=36), nullable=False),
        sa.Column('authorisation_id', sa.String(length=36), nullable=True),
        sa.Column('purpose_code', sa.String(length=32), nullable=True),
        sa.Column('purpose', sa.String(length=500), nullable=True),
        sa.Column('scope', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.String(length=64), nullable=True),
        sa.Column('auth', sa.String(length=16), nullable=False),
        sa.Column('ts_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_queries')),
    )
    op.create_index('ix_credit_queries_org_ts', 'credit_queries', ['org_id', 'ts_ms'])
    op.create_index('ix_credit_queries_asker_ts', 'credit_queries', ['asker_id', 'ts_ms'])
    op.create_table(
        'credit_manual_decisions',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('decision_id', sa.String(length=36), nullable=False),
        sa.Column('bank_id', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('granted_minor', sa.BigInteger(), nullable=False),
        sa.Column('rate_bps', sa.Integer(), nullable=True),
        sa.Column('note', sa.String(length=1000), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('proposed_by', sa.String(length=64), nullable=False),
        sa.Column('proposed_auth', sa.String(length=16), nullable=False),
        sa.Column('proposed_ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('confirmed_by', sa.String(length=64), nullable=True),
        sa.Column('confirmed_auth', sa.String(length=16), nullable=True),
        sa.Column('confirmed_ts_ms', sa.BigInteger(), nullable=True),
        sa.Column('rejected_by', sa.String(length=64), nullable=True),
        sa.Column('rejected_auth', sa.String(length=16), nullable=True),
        sa.Column('rejected_ts_ms', sa.BigInteger(), nullable=True),
        sa.CheckConstraint("action IN ('approve', 'decline')", name=op.f('ck_credit_manual_decisions_action_known')),
        sa.CheckConstraint(
            "status IN ('proposed', 'effective', 'rejected')", name=op.f('ck_credit_manual_decisions_status_known')
        ),
        sa.CheckConstraint('granted_minor >= 0', name=op.f('ck_credit_manual_decisions_granted_nonnegative')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_manual_decisions')),
    )
    op.create_index(
        'ux_credit_manual_one_open',
        'credit_manual_decisions',
        ['decision_id'],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )


def downgrade() -> None:
    op.drop_index('ux_credit_manual_one_open', table_name='credit_manual_decisions')
    op.drop_table('credit_manual_decisions')
    op.drop_index('ix_credit_queries_asker_ts', table_name='credit_queries')
    op.drop_index('ix_credit_queries_org_ts', table_name='credit_queries')
    op.drop_table('credit_queries')
    op.drop_index('ix_credit_authorisations_bank_org', table_name='credit_authorisations')
    op.drop_index('ix_credit_authorisations_org', table_name='credit_authorisations')
    op.drop_table('credit_authorisations')
    with op.batch_alter_table('credit_decisions') as batch:
        batch.drop_column('authorisation_id')
        batch.drop_column('asked_by')
