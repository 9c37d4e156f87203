"""secrets: the log key sealed apart, demo databases marked, no clear secret in idempotent responses

* ``log_key_custody``: the transparency log's signing key, sealed under its own secret (CREDITFLOW_LOG_KEY_PASSPHRASE
  or CREDITFLOW_LOG_KEY_FILE), apart from organisations' keys in ``custody_keys``. A migration has neither
  passphrase, so a log key already held among organisations' keys stays where it is until
  `creditflow keys seal-log-key` moves it (docs/adr/0015-secrets-apart.md).
* ``demo_database``: one row in a database made by `creditflow demo`, with the throwaway passphrases it opens with.
* ``idempotency_keys.secret_withheld``: the response carried a secret shown once, and ``response`` holds only a
  note of how to get a new one; a replay answers 409 ``idempotent_secret_not_replayable``. Responses stored
  before, with an API key or a device secret in clear, are scrubbed here.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 10:00:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# top-level fields of the responses that carried a secret before this revision: POST /v1/api-keys and
# /v1/organisations ("api_key"), /v1/iot/devices and /v1/iot/devices/{id}/rotate ("secret")
SECRET_FIELDS = ('api_key', 'secret', 'token')
NOTE = json.dumps(
    {
        'withheld': 'secret',
        'how_to_get_a_new_one': 'create a new API key (POST /v1/api-keys) or rotate the device secret '
        '(POST /v1/iot/devices/{device_id}/rotate)',
    }
)


def _carries_secret(response: str) -> bool:
    try:
        body = json.loads(response)
    except ValueError:
        return False
    return isinstance(body, dict) and any(isinstance(body.get(f), str) and body.get(f) for f in SECRET_FIELDS)


def upgrade() -> None:
    op.create_table(
        'log_key_custody',
        sa.Column('key_id', sa.String(length=64), primary_key=True),
        sa.Column('sealed_seed', sa.LargeBinary(), nullable=False),
        sa.Column('kek_kind', sa.String(length=16), nullable=False),
        sa.Column('salt', sa.LargeBinary(length=16), nullable=True),
        sa.Column('opslimit', sa.Integer(), nullable=False),
        sa.Column('memlimit', sa.BigInteger(), nullable=False),
        sa.Column('created_ts_ms', sa.BigInteger(), nullable=False),
        sa.CheckConstraint("kek_kind IN ('passphrase', 'file')", name='ck_log_key_custody_kind'),
    )
    op.create_table(
        'demo_database',
        sa.Column('id', sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column('key_passphrase', sa.String(length=128), nullable=False),
        sa.Column('log_key_passphrase', sa.String(length=128), nullable=False),
        sa.Column('created_ts_ms', sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table('idempotency_keys') as batch:
        batch.add_column(sa.Column('secret_withheld', sa.Boolean(), nullable=False, server_default=sa.false()))
    keys = sa.table(
        'idempotency_keys',
        sa.column('org_id', sa.String()),
        sa.column('key', sa.String()),
        sa.column('status_code', sa.Integer()),
        sa.column('response', sa.Text()),
        sa.column('secret_withheld', sa.Boolean()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(keys.c.org_id, keys.c.key, keys.c.response).where(
            keys.c.status_code >= 200, keys.c.status_code < 300
        )
    ).all()
    for org_id, key, response in rows:
        if _carries_secret(response):
            conn.execute(
                sa.update(keys)
                .where(keys.c.org_id == org_id, keys.c.key == key)
                .values(response=NOTE, secret_withheld=True)
            )


def downgrade() -> None:
    conn = op.get_bind()
    # A log key sealed apart opens only with its own secret, which a migration does not have: refuse rather than
    # lose the key that signs the log.
    if conn.execute(sa.text('SELECT 1 FROM log_key_custody LIMIT 1')).first() is not None:
        raise RuntimeError('log_key_custody holds the log key, sealed apart; it cannot be moved back without its secret')
    # A withheld response would replay as a success without its secret: forget those keys instead.
    conn.execute(sa.text('DELETE FROM idempotency_keys WHERE secret_withheld'))
    with op.batch_alter_table('idempotency_keys') as batch:
        batch.drop_column('secret_withheld')
    op.drop_table('demo_database')
    op.drop_table('log_key_custody')
