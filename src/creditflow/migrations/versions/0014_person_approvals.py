"""trust between parties (issue 13): people approve payables, and every approval says how they signed in

``payables.created_by``: the person who entered the payable (its maker, who may not approve it); NULL for
a payable entered with an organisation-wide key or made by a three-way match (no person maker).
``payable_approvals.auth`` and ``credential``: how the approver proved who they were (``session`` or
``personal_token``) and which credential (``key:<api key id>`` or ``session:<reference>``). Approvals
recorded before cannot say: they keep ``auth = 'unrecorded'`` and no credential. ``ordinal``: the
approval's place (1, 2, ...) among the payable's approvals (0 for those recorded before).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payables') as batch:
        batch.add_column(sa.Column('created_by', sa.String(length=64), nullable=True))
    with op.batch_alter_table('payable_approvals') as batch:
        batch.add_column(sa.Column('auth', sa.String(length=16), nullable=False, server_default='unrecorded'))
        batch.add_column(sa.Column('credential', sa.String(length=80), nullable=True))
        batch.add_column(sa.Column('ordinal', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('payable_approvals') as batch:
        batch.drop_column('ordinal')
        batch.drop_column('credential')
        batch.drop_column('auth')
    with op.batch_alter_table('payables') as batch:
        batch.drop_column('created_by')
