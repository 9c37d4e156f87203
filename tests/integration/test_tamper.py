"""`creditflow verify` catches every change made behind the ledger's back, on SQLite and PostgreSQL,
and names the first bad entry or row; the `creditflow verify` command exits 0 when clean and 1 with
the message when not."""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, delete, insert, select, text, update
from typer.testing import CliRunner

from conftest import CLI_SECRETS_ENV, PG_URL, START_MS, issue_accepted, make_settings, onboard
from creditflow.bootstrap import App, build
from creditflow.cli.main import cli
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.engine import normalise_url
from creditflow.ledger import merkle
from creditflow.ledger.audit import verify_database
from creditflow.ledger.store import NODE_LEVEL_FACTOR
from creditflow.ledger.tables import (
    certificates,
    ledger_entries,
    log_head,
    merkle_nodes,
    parties,
    party_keys,
    piece_events,
    pieces,
    tree_heads,
)
from creditflow.ledger.verifier import VerificationFailure
from creditflow.trade.tables import payables

CLI_ENV = {"CREDITFLOW_KDF_OPSLIMIT": "1", "CREDITFLOW_KDF_MEMLIMIT_BYTES": "8388608", **CLI_SECRETS_ENV}


@dataclass
class Story:
    """What the scenario created, by role (every kind of row exists at least once)."""

    cert_id: str
    root: str
    kept: str  # split child kept by the factory
    sent: str  # split child transferred on
    to_steel: str  # accepted by steel
    pending: str  # a transfer waiting for acceptance
    revoked_cert: str
    transfer_seq: int
    size: int


def tell_story(app: App) -> Story:
    root = issue_accepted(app, 10_000_000)
    cert_id = app.queries.piece(root).certificate_id
    kept, sent = (str(x) for x in app.ledger.split("factory", root, [6_000_000, 4_000_000]).result["piece_ids"])
    moved = app.ledger.transfer("factory", sent, "steel", 4_000_000)
    to_steel = str(moved.result["piece_id"])
    app.ledger.accept("steel", to_steel)
    pending = str(app.ledger.transfer("steel", to_steel, "ore", 1_000_000).result["piece_id"])
    app.ledger.freeze("operator", kept, "court order")
    app.ledger.unfreeze("operator", kept, "released")
    payable = app.payables.create_payable("xcmg", "steel", 500_000, "PO-revoked")
    issued = app.ledger.issue("xcmg", payable.id, 500_000, dt.date(2026, 8, 1))
    app.ledger.revoke("xcmg", str(issued.result["certificate_id"]))
    app.ledger.rotate_key("factory")
    app.ledger.transfer("factory", kept, "other", 1_000_000)  # signed with the rotated key
    report = app.verify()
    return Story(
        cert_id=cert_id,
        root=root,
        kept=kept,
        sent=sent,
        to_steel=to_steel,
        pending=pending,
        revoked_cert=str(issued.result["certificate_id"]),
        transfer_seq=moved.seq,
        size=report.entries,
    )


# The story is told once per store and module; each test tampers with its own copy of that database
# (a file copy, or PostgreSQL's CREATE DATABASE ... TEMPLATE), which is several times faster than
# migrating and telling it again.


def _pg_admin(sql: str) -> None:
    assert PG_URL is not None
    admin = create_engine(normalise_url(PG_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(sql))
    finally:
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def told(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Story]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('story') / 'story.db'}"
    elif not PG_URL:
        pytest.skip("PostgreSQL variant: set CREDITFLOW_TEST_PG_URL to run it (CI does)")
    else:
        url = f"{PG_URL.rsplit('/', 1)[0]}/cf_story_{uuid.uuid4().hex[:10]}"
        _pg_admin(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
    with build(make_settings(url), clock=ManualClock(START_MS)) as app:
        onboard(app)
        story = tell_story(app)
    try:
        yield url, story
    finally:
        if request.param == "postgresql":
            _pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture
def world(told: tuple[str, Story], tmp_path: Path) -> Iterator[App]:
    """An App on a fresh copy of the told story, its sequencer closed: nothing appends while we tamper."""
    source, _ = told
    if source.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'copy.db'}"
        shutil.copyfile(source.removeprefix("sqlite:///"), tmp_path / "copy.db")
    else:
        name = f"cf_copy_{uuid.uuid4().hex[:10]}"
        _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{source.rsplit("/", 1)[1]}"')
        url = f"{source.rsplit('/', 1)[0]}/{name}"
    app = build(make_settings(url), clock=ManualClock(START_MS), run_migrations=False)
    app.sequencer.close()
    try:
        yield app
    finally:
        app.close()
        if not url.startswith("sqlite"):
            _pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture
def story(told: tuple[str, Story]) -> Story:
    return told[1]


def flip(value: bytes, position: int = 5) -> bytes:
    data = bytearray(value)
    data[position % len(data)] ^= 0x01
    return bytes(data)


def entry_row(conn: Connection, seq: int) -> Any:
    return conn.execute(select(ledger_entries).where(ledger_entries.c.seq == seq)).one()


def rebuild_tree(conn: Connection) -> None:
    """What a careful forger without the log key does after editing entries: recompute every leaf hash
    and every stored Merkle node so that the tree itself is consistent again."""
    rows = conn.execute(select(ledger_entries.c.seq, ledger_entries.c.entry).order_by(ledger_entries.c.seq)).all()
    tree = merkle.MemoryTree()
    for seq, data in rows:
        leaf = merkle.leaf_hash(bytes(data))
        conn.execute(update(ledger_entries).where(ledger_entries.c.seq == seq).values(leaf_hash=leaf))
        tree.append(leaf)
    conn.execute(delete(merkle_nodes))
    n = tree.size
    nodes = [
        {"node_key": level * NODE_LEVEL_FACTOR + index, "hash": tree.node(level, index)}
        for level in range(1, n.bit_length())
        for index in range(n >> level)
    ]
    conn.execute(insert(merkle_nodes), nodes)


def set_entry_seq(data: bytes, old: int, new: int) -> bytes:
    marker = b',"seq":%d,' % old
    assert data.count(marker) == 1
    return data.replace(marker, b',"seq":%d,' % new)


def first_head_at_or_after(conn: Connection, size: int) -> int:
    return int(
        conn.execute(
            select(tree_heads.c.tree_size).where(tree_heads.c.tree_size >= size).order_by(tree_heads.c.tree_size)
        )
        .scalars()
        .first()
    )


# --- one value of one row: (description, change, expected where, words expected in what) -----------

Change = Callable[[Connection, Story], tuple[str, str]]


def _entry_byte(conn: Connection, s: Story) -> tuple[str, str]:
    row = entry_row(conn, s.transfer_seq)
    conn.execute(update(ledger_entries).where(ledger_entries.c.seq == s.transfer_seq).values(entry=flip(row.entry, 40)))
    return f"log entry {s.transfer_seq}", "leaf hash"


def _entry_amount_leaf_recomputed(conn: Connection, s: Story) -> tuple[str, str]:
    row = entry_row(conn, s.transfer_seq)
    forged = bytes(row.entry).replace(b'"amount_minor":4000000', b'"amount_minor":9000000')
    assert forged != bytes(row.entry)
    conn.execute(
        update(ledger_entries)
        .where(ledger_entries.c.seq == s.transfer_seq)
        .values(entry=forged, leaf_hash=merkle.leaf_hash(forged))
    )
    return f"log entry {s.transfer_seq}", "signature"


def _leaf_hash(conn: Connection, s: Story) -> tuple[str, str]:
    row = entry_row(conn, 3)
    conn.execute(update(ledger_entries).where(ledger_entries.c.seq == 3).values(leaf_hash=flip(row.leaf_hash)))
    return "log entry 3", "leaf hash"


def _op_id_column(conn: Connection, s: Story) -> tuple[str, str]:
    conn.execute(
        update(ledger_entries)
        .where(ledger_entries.c.seq == s.transfer_seq)
        .values(op_id="00000000-0000-4000-8000-000000000000")
    )
    return f"log entry {s.transfer_seq}", "columns disagree"


def _actor_column(conn: Connection, s: Story) -> tuple[str, str]:
    conn.execute(update(ledger_entries).where(ledger_entries.c.seq == s.transfer_seq).values(actor="steel"))
    return f"log entry {s.transfer_seq}", "columns disagree"


def _ts_column(conn: Connection, s: Story) -> tuple[str, str]:
    row = entry_row(conn, s.transfer_seq)
    conn.execute(update(ledger_entries).where(ledger_entries.c.seq == s.transfer_seq).values(ts_ms=row.ts_ms + 1))
    return f"log entry {s.transfer_seq}", "columns disagree"


def _merkle_node(conn: Connection, s: Story) -> tuple[str, str]:
    key = 2 * NODE_LEVEL_FACTOR + 1
    old = conn.execute(select(merkle_nodes.c.hash).where(merkle_nodes.c.node_key == key)).scalar_one()
    conn.execute(update(merkle_nodes).where(merkle_nodes.c.node_key == key).values(hash=flip(old)))
    return "merkle_nodes row level=2 index=1", "recomputed tree"


def _tree_head(column: str) -> Change:
    def change(conn: Connection, s: Story) -> tuple[str, str]:
        size = first_head_at_or_after(conn, s.transfer_seq + 1)
        old = conn.execute(select(tree_heads.c[column]).where(tree_heads.c.tree_size == size)).scalar_one()
        new = old + 1 if isinstance(old, int) else flip(old)
        conn.execute(update(tree_heads).where(tree_heads.c.tree_size == size).values({column: new}))
        return f"tree_heads row tree_size={size}", "signature"

    return change


def _piece(column: str, value: Callable[[Any], Any]) -> Change:
    def change(conn: Connection, s: Story) -> tuple[str, str]:
        row = conn.execute(select(pieces).where(pieces.c.id == s.to_steel)).one()
        new = value(row)
        conn.execute(update(pieces).where(pieces.c.id == s.to_steel).values({column: new}))
        return f"pieces row id={s.to_steel}", f"column {column}"

    return change


def _certificate(column: str, value: Any) -> Change:
    def change(conn: Connection, s: Story) -> tuple[str, str]:
        conn.execute(update(certificates).where(certificates.c.id == s.cert_id).values({column: value}))
        return f"certificates row id={s.cert_id}", f"column {column}"

    return change


def _party_name(conn: Connection, s: Story) -> tuple[str, str]:
    conn.execute(update(parties).where(parties.c.org_id == "steel").values(name="Steal"))
    return "parties row org_id=steel", "column name"


def _party_key(conn: Connection, s: Story) -> tuple[str, str]:
    where = (party_keys.c.org_id == "factory") & (party_keys.c.key_id == "k1")
    old = conn.execute(select(party_keys.c.public_key).where(where)).scalar_one()
    conn.execute(update(party_keys).where(where).values(public_key=flip(old, 31)))
    return "party_keys row (org_id, key_id)=('factory', 'k1')", "column public_key"


def _key_revocation(conn: Connection, s: Story) -> tuple[str, str]:
    where = (party_keys.c.org_id == "factory") & (party_keys.c.key_id == "k1")
    conn.execute(update(party_keys).where(where).values(revoked_at_seq=None))
    return "party_keys row (org_id, key_id)=('factory', 'k1')", "column revoked_at_seq"


def _piece_event(conn: Connection, s: Story) -> tuple[str, str]:
    seq = conn.execute(select(piece_events.c.seq).where(piece_events.c.piece_id == s.to_steel)).scalars().first()
    conn.execute(
        update(piece_events)
        .where(piece_events.c.piece_id == s.to_steel, piece_events.c.seq == seq)
        .values(event="rejected")
    )
    return f"piece_events row (piece_id, seq)={(s.to_steel, seq)}", "column event"


def _payable(conn: Connection, s: Story) -> tuple[str, str]:
    payable_id = conn.execute(select(certificates.c.payable_id).where(certificates.c.id == s.cert_id)).scalar_one()
    conn.execute(update(payables).where(payables.c.id == payable_id).values(issued_minor=0))
    return f"payables row id={payable_id}", "issued_minor"


ONE_VALUE: dict[str, Change] = {
    "ledger_entries.entry byte": _entry_byte,
    "ledger_entries.entry amount, leaf hash recomputed": _entry_amount_leaf_recomputed,
    "ledger_entries.leaf_hash": _leaf_hash,
    "ledger_entries.op_id": _op_id_column,
    "ledger_entries.actor": _actor_column,
    "ledger_entries.ts_ms": _ts_column,
    "merkle_nodes.hash": _merkle_node,
    "tree_heads.root_hash": _tree_head("root_hash"),
    "tree_heads.signature": _tree_head("signature"),
    "tree_heads.ts_ms": _tree_head("ts_ms"),
    "pieces.amount_minor": _piece("amount_minor", lambda r: r.amount_minor + 1),
    "pieces.holder": _piece("holder", lambda r: "ore"),
    "pieces.state": _piece("state", lambda r: "active"),
    "pieces.frozen": _piece("frozen", lambda r: not r.frozen),
    "pieces.parent_id": _piece("parent_id", lambda r: None),
    "pieces.tier": _piece("tier", lambda r: r.tier + 1),
    "certificates.face_minor": _certificate("face_minor", 10_000_001),
    "certificates.state": _certificate("state", "void"),
    "certificates.maturity_date": _certificate("maturity_date", dt.date(2027, 9, 1)),
    "parties.name": _party_name,
    "party_keys.public_key": _party_key,
    "party_keys.revoked_at_seq": _key_revocation,
    "piece_events.event": _piece_event,
    "payables.issued_minor": _payable,
}


def expect_failure(app: App) -> VerificationFailure:
    with pytest.raises(VerificationFailure) as failure:
        app.verify()
    return failure.value


@pytest.mark.parametrize("name", list(ONE_VALUE))
def test_one_changed_value_is_named(world: App, story: Story, name: str) -> None:
    with world.engine.begin() as conn:
        where, words = ONE_VALUE[name](conn, story)
    failure = expect_failure(world)
    assert failure.where == where, str(failure)
    assert words in failure.what, str(failure)


# --- structural changes ----------------------------------------------------------------------------


def test_deleted_last_entry(world: App, story: Story) -> None:
    last = story.size - 1
    with world.engine.begin() as conn:
        conn.execute(delete(ledger_entries).where(ledger_entries.c.seq == last))
    failure = expect_failure(world)
    # The replay itself cannot see a missing tail; the first thing that names it is the signed tree
    # head covering it (or, when the last leaf completed a subtree, that stored node).
    assert failure.where in (
        f"tree_heads row tree_size={story.size}",
        *(f"merkle_nodes row level={lvl} index={last >> lvl}" for lvl in range(1, 8)),
    ), str(failure)
    assert str(story.size) in failure.what or "beyond the end" in failure.what


def test_deleted_middle_entry(world: App, story: Story) -> None:
    gone = story.transfer_seq
    with world.engine.begin() as conn:
        conn.execute(delete(ledger_entries).where(ledger_entries.c.seq == gone))
    failure = expect_failure(world)
    assert failure.where == f"log entry {gone + 1}"
    assert f"expected entry {gone}" in failure.what


def test_two_entries_swapped(world: App, story: Story) -> None:
    i, j = story.transfer_seq, story.transfer_seq + 1
    with world.engine.begin() as conn:
        a, b = entry_row(conn, i), entry_row(conn, j)
        conn.execute(delete(ledger_entries).where(ledger_entries.c.seq.in_([i, j])))
        cols = ("op_id", "op_type", "actor", "ts_ms", "entry", "leaf_hash")
        conn.execute(insert(ledger_entries), [{"seq": i, **{c: getattr(b, c) for c in cols}}])
        conn.execute(insert(ledger_entries), [{"seq": j, **{c: getattr(a, c) for c in cols}}])
    failure = expect_failure(world)
    assert failure.where == f"log entry {i}"


def test_swap_with_rewritten_numbers_and_rebuilt_tree_is_caught_by_the_signed_heads(world: App, story: Story) -> None:
    """Sequence numbers and times are not covered by the organisations' signatures; a forger can
    renumber two independent entries and rebuild every hash. Only the log key's tree heads stop it."""
    with world.engine.begin() as conn:
        # freeze (seq f) and unfreeze (seq f+1) of the kept piece cannot be swapped (unfreeze would fail),
        # so swap the freeze/unfreeze pair's neighbours: the steel->ore transfer and the freeze.
        freeze_seq = conn.execute(select(ledger_entries.c.seq).where(ledger_entries.c.op_type == "freeze")).scalar_one()
        i, j = freeze_seq - 1, freeze_seq  # transfer steel->ore, freeze of the kept piece
        a, b = entry_row(conn, i), entry_row(conn, j)
        assert (a.op_type, b.op_type) == ("transfer", "freeze") and a.ts_ms == b.ts_ms
        conn.execute(delete(ledger_entries).where(ledger_entries.c.seq.in_([i, j])))
        for seq, row, old in ((i, b, j), (j, a, i)):
            data = set_entry_seq(bytes(row.entry), old, seq)
            values = {c: getattr(row, c) for c in ("op_id", "op_type", "actor", "ts_ms")}
            conn.execute(insert(ledger_entries), [{"seq": seq, **values, "entry": data, "leaf_hash": b"\0" * 32}])
        rebuild_tree(conn)
        first_head = first_head_at_or_after(conn, i + 1)
    # The read model still records who did what when (created_seq, event seq): it would also disagree,
    # but the tree heads are checked first.
    failure = expect_failure(world)
    assert failure.where == f"tree_heads row tree_size={first_head}", str(failure)
    assert "root hash differs" in failure.what


def test_rewritten_timestamp_with_rebuilt_tree_is_caught_by_the_signed_heads(world: App, story: Story) -> None:
    """The last entry's time moved forward (so no later entry goes back in time), the leaf and the
    tree recomputed: only the tree head signed over the old root can tell."""
    last = story.size - 1
    with world.engine.begin() as conn:
        row = entry_row(conn, last)
        marker = b',"ts_ms":%d,' % row.ts_ms
        forged = bytes(row.entry).replace(marker, b',"ts_ms":%d,' % (row.ts_ms + 1))
        assert forged != bytes(row.entry)
        conn.execute(
            update(ledger_entries).where(ledger_entries.c.seq == last).values(entry=forged, ts_ms=row.ts_ms + 1)
        )
        rebuild_tree(conn)
    failure = expect_failure(world)
    assert failure.where == f"tree_heads row tree_size={story.size}", str(failure)
    assert "root hash differs" in failure.what


def test_replayed_entry_appended(world: App, story: Story) -> None:
    """A copy of an old signed operation appended at the end, renumbered, with its leaf hash and the
    log head adjusted: verify names the new entry."""
    n = story.size
    with world.engine.begin() as conn:
        row = entry_row(conn, story.transfer_seq)
        data = set_entry_seq(bytes(row.entry), story.transfer_seq, n)
        values = {c: getattr(row, c) for c in ("op_type", "actor", "ts_ms")}
        # op_id is unique in the table, so the copy needs another op_id column: the replay reads the entry.
        conn.execute(
            insert(ledger_entries),
            [
                {
                    "seq": n,
                    **values,
                    "op_id": "00000000-0000-4000-8000-00000000000a",
                    "entry": data,
                    "leaf_hash": merkle.leaf_hash(data),
                }
            ],
        )
        conn.execute(update(log_head).values(tree_size=n + 1))
    failure = expect_failure(world)
    assert failure.where == f"log entry {n}"


def test_extra_piece_row(world: App, story: Story) -> None:
    with world.engine.begin() as conn:
        row = conn.execute(select(pieces).where(pieces.c.id == story.to_steel)).one()
        forged_id = "ffffffff-ffff-4fff-8fff-ffffffffffff"
        conn.execute(insert(pieces), [{**row._mapping, "id": forged_id, "holder": "ore", "state": "active"}])
    failure = expect_failure(world)
    assert failure.where == f"pieces row id={forged_id}"
    assert "never created" in failure.what


def test_deleted_piece_row(world: App, story: Story) -> None:
    with world.engine.begin() as conn:
        conn.execute(delete(pieces).where(pieces.c.id == story.pending))
    failure = expect_failure(world)
    assert failure.where == f"pieces row id={story.pending}"
    assert "missing" in failure.what


def test_deleted_piece_event_row(world: App, story: Story) -> None:
    with world.engine.begin() as conn:
        seq = conn.execute(select(piece_events.c.seq).where(piece_events.c.piece_id == story.kept)).scalars().first()
        conn.execute(delete(piece_events).where(piece_events.c.piece_id == story.kept, piece_events.c.seq == seq))
    failure = expect_failure(world)
    assert failure.where == f"piece_events row (piece_id, seq)={(story.kept, seq)}"


@pytest.mark.parametrize("delta", [-1, 1])
def test_log_head_tree_size_changed(world: App, story: Story, delta: int) -> None:
    with world.engine.begin() as conn:
        conn.execute(update(log_head).values(tree_size=story.size + delta))
    failure = expect_failure(world)
    assert failure.where == "log_head"
    assert str(story.size + delta) in failure.what


@pytest.mark.parametrize("delta_ms", [-1, 400 * 86_400_000])
def test_log_head_last_ts_changed(world: App, story: Story, delta_ms: int) -> None:
    """The sequencer never stamps an entry earlier than log_head.last_ts_ms; pushed into the future it
    would stamp every later entry with that time (certificates would look matured and refuse to move).
    (Found by this test; fixed in df0d013.)"""
    with world.engine.begin() as conn:
        last_entry_ts = conn.execute(
            select(ledger_entries.c.ts_ms).where(ledger_entries.c.seq == story.size - 1)
        ).scalar_one()
        assert conn.execute(select(log_head.c.last_ts_ms)).scalar_one() == last_entry_ts  # as the sequencer left it
        conn.execute(update(log_head).values(last_ts_ms=last_entry_ts + delta_ms))
    failure = expect_failure(world)
    assert failure.where == "log_head"
    assert "last_ts_ms" in failure.what


def test_deleted_merkle_node(world: App, story: Story) -> None:
    with world.engine.begin() as conn:
        conn.execute(delete(merkle_nodes).where(merkle_nodes.c.node_key == 1 * NODE_LEVEL_FACTOR + 0))
    failure = expect_failure(world)
    assert failure.where == "merkle_nodes"


def test_deleted_latest_tree_head(world: App, story: Story) -> None:
    with world.engine.begin() as conn:
        conn.execute(delete(tree_heads).where(tree_heads.c.tree_size == story.size))
    failure = expect_failure(world)
    assert failure.where == "tree_heads"
    assert f"all {story.size} entries" in failure.what


def test_untouched_story_verifies(world: App, story: Story) -> None:
    """The control for every test above: the same story, not tampered, is green."""
    report = verify_database(world.engine, world.log_keys)
    assert report.entries == story.size
    assert report.tree_size == story.size


# --- the command -----------------------------------------------------------------------------------


def run_cli(args: list[str], tmp_path: Path) -> Any:
    env = {**CLI_ENV, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml")}
    return CliRunner().invoke(cli, args, env=env)


def db_url(app: App) -> str:
    return app.engine.url.render_as_string(hide_password=False)


def test_cli_verify_exit_codes(world: App, story: Story, tmp_path: Path) -> None:
    url = db_url(world)
    world.close()  # the command opens the database itself

    clean = run_cli(["verify", "--db", url], tmp_path)
    assert clean.exit_code == 0, clean.output
    assert "verified" in clean.stdout and f"{story.size} entries" in clean.stdout

    as_json = run_cli(["verify", "--db", url, "--json"], tmp_path)
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["entries"] == story.size

    with world.engine.begin() as conn:  # dispose() leaves the engine usable: it opens a new pool
        conn.execute(update(pieces).where(pieces.c.id == story.to_steel).values(amount_minor=9_000_000))
    world.engine.dispose()

    bad = run_cli(["verify", "--db", url], tmp_path)
    assert bad.exit_code == 1, bad.output
    assert f"VERIFY FAILED at pieces row id={story.to_steel}" in bad.stderr
    assert "amount_minor" in bad.stderr

    bad_json = run_cli(["verify", "--db", url, "--json"], tmp_path)
    assert bad_json.exit_code == 1, bad_json.output
    doc = json.loads(bad_json.stdout)
    assert doc["ok"] is False and doc["where"] == f"pieces row id={story.to_steel}"


def test_cli_verify_subprocess(sqlite_app: App, tmp_path: Path) -> None:
    """The installed `creditflow` script, as an operator runs it: real exit codes through `main()`."""
    onboard(sqlite_app)
    piece = issue_accepted(sqlite_app, 1_000_000)
    url = db_url(sqlite_app)
    sqlite_app.close()
    exe = Path(sys.executable).with_name("creditflow")
    env = {**os.environ, **CLI_ENV, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml")}

    clean = subprocess.run([exe, "verify", "--db", url], env=env, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert "verified" in clean.stdout

    with sqlite_app.engine.begin() as conn:
        conn.execute(update(pieces).where(pieces.c.id == piece).values(holder="steel"))
    sqlite_app.engine.dispose()
    bad = subprocess.run([exe, "verify", "--db", url], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert f"VERIFY FAILED at pieces row id={piece}" in bad.stderr
    assert "holder" in bad.stderr


LEAKS = {
    "ledger_entries.leaf_hash": (
        lambda conn: conn.execute(update(ledger_entries).where(ledger_entries.c.seq == 3).values(leaf_hash=b"\0" * 32)),
        "log entry 3",
    ),
    "merkle_nodes.hash": (
        lambda conn: conn.execute(
            update(merkle_nodes).where(merkle_nodes.c.node_key == NODE_LEVEL_FACTOR).values(hash=b"\0" * 32)
        ),
        "merkle_nodes row level=1 index=0",
    ),
    "tree_heads.signature": (
        lambda conn: conn.execute(update(tree_heads).where(tree_heads.c.tree_size == 2).values(signature=b"\0" * 64)),
        "tree_heads row tree_size=2",
    ),
    "payables.issued_minor": (
        lambda conn: conn.execute(update(payables).values(issued_minor=0)),
        "payables row id=",
    ),
}


@pytest.mark.parametrize(
    "broken",
    ["ledger_entries.leaf_hash", "merkle_nodes.hash", "tree_heads.signature", "payables.issued_minor"],
)
def test_failed_verify_closes_its_cursors(pg_url: str, clock: Any, broken: str) -> None:
    """A check failing half-way through a table must close its PostgreSQL server-side cursor; otherwise
    psycopg warns on garbage collection, an error in whichever test happens to run then. (Found by this
    test: the streamed tables were fixed in df0d013; tree_heads and payables, which had become server-side
    cursors too because `Connection.execution_options` changes the connection in place, after it.)"""
    with build(make_settings(pg_url), clock=clock) as app:
        onboard(app)
        issue_accepted(app, 1_000)  # a payable drawn on
        app.sequencer.close()
        change, expected_where = LEAKS[broken]
        with app.engine.begin() as conn:
            change(conn)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            try:
                app.verify()
            except VerificationFailure as exc:
                where = exc.where
            else:
                pytest.fail("verify passed on a tampered database")
            gc.collect()
        assert where.startswith(expected_where)
        leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert not leaked, leaked
