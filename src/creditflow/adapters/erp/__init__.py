"""ERP importers: purchase orders, goods receipts and invoices from CSV and JSON exports.

`parse_file` is the entry point (see `creditflow.adapters.erp.parsing` for the accepted columns, cells
and encodings); `creditflow.services.trade.TradeService` stores what it reads.
"""

from __future__ import annotations

from creditflow.adapters.erp.parsing import ColumnResolver, ParsedFile, decode_text, parse_file, parse_kind

__all__ = ["ColumnResolver", "ParsedFile", "decode_text", "parse_file", "parse_kind"]
