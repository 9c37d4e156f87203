"""Every context's tables on the one shared MetaData: what Alembic compares and whole-schema checks read.

Importing this module registers them all (each context's `tables.py` adds its own to
`creditflow.kernel.tables.metadata`); nothing at run time needs it but the migrations.
"""

from __future__ import annotations

from creditflow.collateral import tables as collateral_tables
from creditflow.credit import tables as credit_tables
from creditflow.financing import tables as financing_tables
from creditflow.identity import tables as identity_tables
from creditflow.kernel.tables import metadata
from creditflow.ledger import tables as ledger_tables
from creditflow.trade import tables as trade_tables

CONTEXT_TABLES = (ledger_tables, trade_tables, financing_tables, collateral_tables, credit_tables, identity_tables)

__all__ = ["CONTEXT_TABLES", "metadata"]
