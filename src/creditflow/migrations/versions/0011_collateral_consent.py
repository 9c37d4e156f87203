"""iot: collateral loans and pledges need the borrower's consent; per-bank price books

- ``iot_loans`` gains ``status`` (proposed | accepted | refused), the canonical ``terms`` both parties sign,
  their digest, the lender's and the borrower's key id and signature, and ``decided_ts_ms``. Loans booked
  before this revision were never consented to: they become ``proposed`` (they stop restricting the
  borrower's financing until the borrower accepts them).
- ``iot_pledge_proposals``: a pledge the lender proposed, signed by it, accepted (signed) or refused by the
  asset's owner. Existing ``iot_pledges`` rows become such proposals (the terms and both signatures are made
  when the owner accepts), so until then they value nothing and show the asset to no bank.
- ``iot_bank_prices``: each bank's own price book (it values only that bank's loans); ``iot_prices`` stays
  the operator's feed. Prices that banks set in the shared table before are moved into their books.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('iot_loans') as batch:
        batch.add_column(sa.Column('status', sa.String(length=10), nullable=False, server_default='proposed'))
        batch.add_column(sa.Column('terms', sa.Text(), nullable=True))
        batch.add_column(sa.Column('terms_digest', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('lender_key_id', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('lender_sig', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('borrower_key_id', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('borrower_sig', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('decided_ts_ms', sa.BigInteger(), nullable=True))
        batch.create_check_constraint('loan_status_known', "status IN ('proposed', 'accepted', 'refused')")
        batch.create_index('ix_iot_loans_status', ['status'])
    with op.batch_alter_table('iot_loans') as batch:
        batch.alter_column('status', existing_type=sa.String(length=10), server_default=None)

    op.create_table(
        'iot_pledge_proposals',
        sa.Column('id', sa.String(length=36), primary_key=True),
        sa.Column('loan_id', sa.String(length=64), nullable=False),
        sa.Column('asset_id', sa.String(length=64), nullable=False),
        sa.Column('haircut_bps', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('created_ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('decided_ts_ms', sa.BigInteger(), nullable=True),
        sa.Column('terms', sa.Text(), nullable=True),
        sa.Column('terms_digest', sa.String(length=64), nullable=True),
        sa.Column('lender_key_id', sa.String(length=64), nullable=True),
        sa.Column('lender_sig', sa.String(length=128), nullable=True),
        sa.Column('owner_key_id', sa.String(length=64), nullable=True),
        sa.Column('owner_sig', sa.String(length=128), nullable=True),
        sa.CheckConstraint('haircut_bps >= 0 AND haircut_bps < 10000', name='proposal_haircut_range'),
        sa.CheckConstraint("status IN ('proposed', 'accepted', 'refused')", name='proposal_status_known'),
    )
    op.create_index('ix_iot_pledge_proposals_loan', 'iot_pledge_proposals', ['loan_id', 'asset_id'])
    op.create_index(
        'uq_iot_pledge_proposals_open',
        'iot_pledge_proposals',
        ['loan_id', 'asset_id'],
        unique=True,
        sqlite_where=sa.text("status = 'proposed'"),
        postgresql_where=sa.text("status = 'proposed'"),
    )
    # Pledges taken before consent existed become proposals to the asset's owner (their terms and signatures
    # are made when the owner accepts); until then they value nothing and show the asset to no bank.
    conn = op.get_bind()
    pledges = conn.execute(sa.text('SELECT asset_id, loan_id, haircut_bps, created_ts_ms FROM iot_pledges')).all()
    for asset_id, loan_id, haircut_bps, created_ts_ms in pledges:
        conn.execute(
            sa.text(
                "INSERT INTO iot_pledge_proposals (id, loan_id, asset_id, haircut_bps, status, created_ts_ms) "
                "VALUES (:id, :loan_id, :asset_id, :haircut_bps, 'proposed', :created_ts_ms)"
            ),
            {
                'id': str(uuid.uuid4()),
                'loan_id': loan_id,
                'asset_id': asset_id,
                'haircut_bps': haircut_bps,
                'created_ts_ms': created_ts_ms,
            },
        )
    op.execute('DELETE FROM iot_pledges')
    # a loan nobody consented to counts no collateral and stops no financing
    op.execute("UPDATE iot_loans SET band = 'NORMAL', ltv_bps = NULL, value_minor = 0")

    op.create_table(
        'iot_bank_prices',
        sa.Column('bank', sa.String(length=64), nullable=False),
        sa.Column('commodity', sa.String(length=32), nullable=False),
        sa.Column('ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('price_minor_per_kg', sa.BigInteger(), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('bank', 'commodity', 'ts_ms'),
        sa.CheckConstraint('price_minor_per_kg >= 0', name='bank_price_nonnegative'),
    )
    # A bank's price was recorded with the bank as its source: it moves into that bank's book.
    op.execute(
        "INSERT INTO iot_bank_prices (bank, commodity, ts_ms, price_minor_per_kg, source) "
        "SELECT p.source, p.commodity, p.ts_ms, p.price_minor_per_kg, p.source FROM iot_prices p "
        "JOIN parties o ON o.org_id = p.source WHERE o.role = 'bank'"
    )
    op.execute(
        "DELETE FROM iot_prices WHERE source IN (SELECT org_id FROM parties WHERE role = 'bank')"
    )


def downgrade() -> None:
    # Bank prices go back into the one shared table (where a feed price has the same time, the feed's stays).
    op.execute(
        "INSERT INTO iot_prices (commodity, ts_ms, price_minor_per_kg, source) "
        "SELECT b.commodity, b.ts_ms, MIN(b.price_minor_per_kg), MIN(b.bank) FROM iot_bank_prices b "
        "WHERE NOT EXISTS (SELECT 1 FROM iot_prices p WHERE p.commodity = b.commodity AND p.ts_ms = b.ts_ms) "
        "GROUP BY b.commodity, b.ts_ms"
    )
    op.drop_table('iot_bank_prices')
    # Pledges (accepted ones) stay in iot_pledges; proposals and refused loans go.
    op.drop_index('uq_iot_pledge_proposals_open', table_name='iot_pledge_proposals')
    op.drop_index('ix_iot_pledge_proposals_loan', table_name='iot_pledge_proposals')
    op.drop_table('iot_pledge_proposals')
    op.execute("DELETE FROM iot_loans WHERE status = 'refused'")
    with op.batch_alter_table('iot_loans') as batch:
        batch.drop_index('ix_iot_loans_status')
        batch.drop_constraint('loan_status_known', type_='check')
        for column in (
            'decided_ts_ms', 'borrower_sig', 'borrower_key_id', 'lender_sig', 'lender_key_id', 'terms_digest', 'terms',
            'status',
        ):
            batch.drop_column(column)
