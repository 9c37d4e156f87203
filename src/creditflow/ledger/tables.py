"""The ledger's tables. Alembic migrations in `creditflow/migrations` create exactly these (with every
other context's tables, all registered on `creditflow.kernel.tables.metadata`).

`ledger_entries`, `merkle_nodes` and `tree_heads` are the source of truth; `parties`, `party_keys`,
`certificates`, `pieces` and `piece_events` are a read model that `creditflow verify` re-derives from
the log and compares; `custody_*` hold the sealed organisation keys; `log_key_custody` the log's own signing
key, sealed apart from them (its own passphrase or key file); `demo_database` marks a database made by
`creditflow demo`, with the throwaway passphrases it opens with (docs/SECURITY.md ("Secrets")).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

from creditflow.kernel.tables import ID, UUID, metadata

# --- the log ---------------------------------------------------------------------------------------
log_head = Table(
    "log_head",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("last_ts_ms", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("op_id", UUID, nullable=False, unique=True),
    Column("op_type", String(32), nullable=False),
    Column("actor", ID, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("entry", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
)

merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    # level * 2**48 + index: one integer key so that a proof's nodes come back in one IN query.
    Column("node_key", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

tree_heads = Table(
    "tree_heads",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("key_id", ID, nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    # A published C2SP checkpoint: the signed note as served (log signature + the cosignatures collected).
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("note", Text, nullable=False),
    Column("cosignatures", SmallInteger, nullable=False),
    Column("published_ts_ms", BigInteger, nullable=False),
)

witness_status = Table(
    "witness_status",
    metadata,
    # What each configured witness holds: the base of the next consistency proof sent to it.
    Column("name", String(200), primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("last_cosigned_ts_ms", BigInteger, nullable=True),
    Column("last_error", String(400), nullable=True),
    Column("updated_ts_ms", BigInteger, nullable=False),
)

# --- read model ------------------------------------------------------------------------------------
parties = Table(
    "parties",
    metadata,
    Column("org_id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("uscc", String(18), nullable=False, unique=True),
    Column("created_seq", BigInteger, nullable=False),
)

party_keys = Table(
    "party_keys",
    metadata,
    Column("org_id", ID, nullable=False),
    Column("key_id", ID, nullable=False),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("valid_from_seq", BigInteger, nullable=False),
    Column("revoked_at_seq", BigInteger),
    PrimaryKeyConstraint("org_id", "key_id"),
)

log_key_custody = Table(
    "log_key_custody",
    metadata,
    Column("key_id", ID, primary_key=True),
    Column("sealed_seed", LargeBinary, nullable=False),
    # "passphrase": the KEK is Argon2id(log_key_passphrase, salt, opslimit, memlimit); "file": a keyed hash of
    # the key file's contents (salt NULL, costs 0)
    Column("kek_kind", String(16), nullable=False),
    Column("salt", LargeBinary(16), nullable=True),
    Column("opslimit", Integer, nullable=False),
    Column("memlimit", BigInteger, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    CheckConstraint("kek_kind IN ('passphrase', 'file')", name="ck_log_key_custody_kind"),
)

demo_database = Table(
    "demo_database",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("key_passphrase", String(128), nullable=False),
    Column("log_key_passphrase", String(128), nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("issuer", ID, nullable=False, index=True),
    Column("face_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("maturity_date", Date, nullable=False),
    Column("payable_id", ID, nullable=False, index=True),
    Column("payable_digest", String(64), nullable=False),
    Column("root_piece_id", UUID, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_seq", BigInteger, nullable=False),
    CheckConstraint("face_minor > 0", name="face_positive"),
)

pieces = Table(
    "pieces",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("certificate_id", UUID, nullable=False, index=True),
    Column("parent_id", UUID),
    Column("holder", ID, nullable=False),
    Column("sender", ID),
    Column("amount_minor", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("frozen", Boolean, nullable=False),
    Column("tier", Integer, nullable=False),
    Column("accept_by_ms", BigInteger),
    Column("created_seq", BigInteger, nullable=False),
    Column("closed_seq", BigInteger),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    Index("ix_pieces_holder_created", "holder", "created_seq"),
    # Only pending pieces are looked up by deadline (the expiry sweep): a partial index stays small.
    Index(
        "ix_pieces_pending_accept_by",
        "accept_by_ms",
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
)

piece_events = Table(
    "piece_events",
    metadata,
    Column("piece_id", UUID, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("event", String(16), nullable=False),
    Column("actor", ID, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("piece_id", "seq"),
)

# --- off-ledger service data -------------------------------------------------------------------------

custody_meta = Table(
    "custody_meta",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("salt", LargeBinary(16), nullable=False),
    Column("opslimit", Integer, nullable=False),
    Column("memlimit", BigInteger, nullable=False),
    Column("check_box", LargeBinary, nullable=False),
)

custody_keys = Table(
    "custody_keys",
    metadata,
    Column("org_id", ID, nullable=False),
    Column("key_id", ID, nullable=False),
    Column("sealed_seed", LargeBinary, nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    Column("retired", Boolean, nullable=False),
    PrimaryKeyConstraint("org_id", "key_id"),
)

# The key of the salts of piece commitments (`creditflow.ledger.commitments`): one random key per
# database. It needs no sealing: it only hides from holders what the database holds in clear anyway.
piece_commitment_key = Table(
    "piece_commitment_key",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("key", LargeBinary(32), nullable=False),
    Column("created_ts_ms", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)
