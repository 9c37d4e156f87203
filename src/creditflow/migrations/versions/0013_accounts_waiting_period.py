"""trust between parties (issue 13): account changes wait, held payouts, piece commitments

``settlement_account_changes``: a requested change of an organisation's settlement account, in effect at
``effective_ts_ms`` (``financing.account_change_wait_s`` after the request) unless an admin cancels it.
``clearing_runs.payment_file`` may be NULL: a clearing run whose every payout was held has no file.
``held_payouts``: a holder's payout clearing could not pay (no account, or one that breaks the ISO 20022
rules), until a release pays it; ``payout_releases``: the files of those releases.
``piece_commitment_key``: the one random key of the salts of piece commitments (what a holder sees of an
upstream piece); made here, so every process of a database uses the same.

Rows saved before the account rules are kept as they are: clearing holds the payout of a row that breaks
them, with the code ``invalid_settlement_account``, and pays everyone else.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'settlement_account_changes',
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('account_name', sa.String(length=140), nullable=False),
        sa.Column('account_number', sa.String(length=34), nullable=False),
        sa.Column('bic', sa.String(length=11), nullable=False),
        sa.Column('requested_ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('effective_ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('requested_by', sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint('org_id', name=op.f('pk_settlement_account_changes')),
    )
    with op.batch_alter_table('clearing_runs') as batch:
        batch.alter_column('payment_file', existing_type=sa.LargeBinary(), nullable=True)
    op.create_table(
        'held_payouts',
        sa.Column('piece_id', sa.String(length=36), nullable=False),
        sa.Column('certificate_id', sa.String(length=36), nullable=False),
        sa.Column('holder', sa.String(length=64), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('held_ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('released_message_id', sa.String(length=35), nullable=True),
        sa.Column('released_ts_ms', sa.BigInteger(), nullable=True),
        sa.CheckConstraint('amount_minor > 0', name=op.f('ck_held_payouts_held_positive')),
        sa.PrimaryKeyConstraint('piece_id', name=op.f('pk_held_payouts')),
    )
    op.create_index(op.f('ix_held_payouts_certificate_id'), 'held_payouts', ['certificate_id'], unique=False)
    op.create_index(op.f('ix_held_payouts_holder'), 'held_payouts', ['holder'], unique=False)
    op.create_table(
        'payout_releases',
        sa.Column('message_id', sa.String(length=35), nullable=False),
        sa.Column('certificate_id', sa.String(length=36), nullable=False),
        sa.Column('payment_file', sa.LargeBinary(), nullable=False),
        sa.Column('total_minor', sa.BigInteger(), nullable=False),
        sa.Column('transfers', sa.Integer(), nullable=False),
        sa.Column('created_ts_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('message_id', name=op.f('pk_payout_releases')),
    )
    op.create_index(op.f('ix_payout_releases_certificate_id'), 'payout_releases', ['certificate_id'], unique=False)
    key_table = op.create_table(
        'piece_commitment_key',
        sa.Column('id', sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column('key', sa.LargeBinary(length=32), nullable=False),
        sa.Column('created_ts_ms', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('id = 1', name=op.f('ck_piece_commitment_key_single_row')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_piece_commitment_key')),
    )
    op.bulk_insert(key_table, [{'id': 1, 'key': secrets.token_bytes(32), 'created_ts_ms': int(time.time() * 1000)}])


def downgrade() -> None:
    op.drop_table('piece_commitment_key')
    op.drop_index(op.f('ix_payout_releases_certificate_id'), table_name='payout_releases')
    op.drop_table('payout_releases')
    op.drop_index(op.f('ix_held_payouts_holder'), table_name='held_payouts')
    op.drop_index(op.f('ix_held_payouts_certificate_id'), table_name='held_payouts')
    op.drop_table('held_payouts')
    # a run that paid no one had no file: it gets an empty one, which the old schema can hold
    op.execute(sa.text("UPDATE clearing_runs SET payment_file = :empty WHERE payment_file IS NULL").bindparams(
        sa.bindparam('empty', b'', type_=sa.LargeBinary())
    ))
    with op.batch_alter_table('clearing_runs') as batch:
        batch.alter_column('payment_file', existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table('settlement_account_changes')
