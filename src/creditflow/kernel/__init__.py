"""What every context shares and nothing of ours is imported by: money (fen), USCC, errors with stable codes, the clock, CJ1 canonical bytes, the SQL engines and the one shared MetaData."""
