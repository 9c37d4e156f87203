"""SQL storage (SQLAlchemy Core): the log, the Merkle nodes, tree heads and the read models."""
