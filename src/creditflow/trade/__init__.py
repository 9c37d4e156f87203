"""Trade authenticity: ERP documents, the three-way match, payables and their confirmation by people, credit lines, and the trade rules the ledger runs as prechecks and projections."""
