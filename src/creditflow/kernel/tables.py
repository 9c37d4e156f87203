"""The one SQL MetaData every context's tables register on, its naming convention, and the id column types.

Each context's `tables.py` adds its tables here; `creditflow.migrations.schema` imports them all for
Alembic and for whole-schema checks. Only store, table and engine modules import SQLAlchemy.
"""

from __future__ import annotations

from sqlalchemy import MetaData, String

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(64)
UUID = String(36)
