"""Alembic environment: always online, with the engine handed over by `creditflow.kernel.engine`."""

from __future__ import annotations

from alembic import context

from creditflow.migrations.schema import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
