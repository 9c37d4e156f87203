"""data credit: the challenger's shadow decision on every credit decision

Adds ``challenger_version``, ``challenger_pd`` and ``challenger_outcome`` to ``credit_decisions``: the
WoE scorecard, stored beside the champion, decides each application too (same policy, not binding), so
`creditflow credit monitor` can compare the two on the same applicants and, once labelled, outcomes.
Decisions made before, or without an active challenger, leave them NULL.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credit_decisions') as batch:
        batch.add_column(sa.Column('challenger_version', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('challenger_pd', sa.Float(), nullable=True))
        batch.add_column(sa.Column('challenger_outcome', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('credit_decisions') as batch:
        batch.drop_column('challenger_outcome')
        batch.drop_column('challenger_pd')
        batch.drop_column('challenger_version')
