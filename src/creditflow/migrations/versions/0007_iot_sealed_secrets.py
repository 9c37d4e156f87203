"""iot: device and webhook secrets sealed at rest

Adds ``secret_sealed`` to ``iot_devices`` and ``iot_webhooks`` and lets the clear ``secret`` be NULL. Sealing
needs the custody passphrase, which a migration does not have: the application seals any clear secret at
start-up (`creditflow.collateral.secrets.IotSecrets.seal_clear_secrets`) and never writes one again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('iot_devices', 'iot_webhooks'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('secret_sealed', sa.LargeBinary(), nullable=True))
            batch.alter_column('secret', existing_type=sa.LargeBinary(length=32), nullable=True)


def downgrade() -> None:
    # A sealed secret cannot be put back in clear without the passphrase: refuse rather than lose devices.
    conn = op.get_bind()
    for table in ('iot_devices', 'iot_webhooks'):
        if conn.execute(sa.text(f'SELECT 1 FROM {table} WHERE secret IS NULL LIMIT 1')).first() is not None:
            raise RuntimeError(f'{table} holds sealed secrets, which only the passphrase opens; delete those rows first')
    for table in ('iot_devices', 'iot_webhooks'):
        with op.batch_alter_table(table) as batch:
            batch.alter_column('secret', existing_type=sa.LargeBinary(length=32), nullable=False)
            batch.drop_column('secret_sealed')
