"""C2SP checkpoints and witnesses (issue 14): the published checkpoints with the cosignatures collected,
and what each witness holds

``log_checkpoints``: one row per published checkpoint (a C2SP signed note: the log's Ed25519 note
signature plus the witnesses' cosignatures collected for it), newest served at ``/log/checkpoint``.
``witness_status``: per configured witness, the tree size it is known to hold (the base of the next
consistency proof), when it last cosigned and the last error, for the lag metrics.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'log_checkpoints',
        sa.Column('tree_size', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('cosignatures', sa.SmallInteger(), nullable=False),
        sa.Column('published_ts_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('tree_size', name=op.f('pk_log_checkpoints')),
    )
    op.create_table(
        'witness_status',
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('tree_size', sa.BigInteger(), nullable=False),
        sa.Column('last_cosigned_ts_ms', sa.BigInteger(), nullable=True),
        sa.Column('last_error', sa.String(length=400), nullable=True),
        sa.Column('updated_ts_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_witness_status')),
    )


def downgrade() -> None:
    op.drop_table('witness_status')
    op.drop_table('log_checkpoints')
