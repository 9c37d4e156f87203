"""SQL for the credit context: plain functions over a Connection the calling service opened (one unit of work
per command); nothing here commits on its own. Only this module and `tables.py` import SQLAlchemy here."""

from __future__ import annotations
