"""`creditflow bench ledger`: end-to-end ledger operations per second, and the bounds beside them.

An operation is a client-signed transfer or split submitted to the sequencer in-process: signature
verified, rules checked, entry appended, Merkle tree extended, tree head signed, durably committed
(SQLite ``synchronous=FULL`` / PostgreSQL default ``fsync``) before its future resolves. Submitters
pipeline (group commit). Signing happens before the clock starts: it is the client's work.

Bounds, measured in the same run on the same machine:
* ``verify_per_s``: bare Ed25519 verifications per second on one thread (libsodium);
* ``insert_per_s``: bare inserts of entry-sized rows per second into a fresh SQLite file, committed
  in batches of the same size as the sequencer's, with the same durability settings.
``ratio_to_bound`` is ours (SQLite) over the smaller bound.

``publication`` (issue 14): the same SQLite workload with checkpoint publication off and on (two local witnesses,
``creditflow witness serve`` processes on the same machine, cosigning every round), off/on/on/off on fresh
files; ``ratio`` is mean on over mean off. The witnesses compete for the same cores: a lower bound.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from creditflow.bootstrap import App, build, throwaway_secrets
from creditflow.config import Settings
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger import merkle
from creditflow.ledger.entries import SignedOperation, sign_operation
from creditflow.ledger.model.certificates import derive_id
from creditflow.ledger.service import DAY_MS
from creditflow.ledger.signing import Signer, op_message, verify_signature

FAST_KDF = {"kdf_opslimit": 1, "kdf_memlimit_bytes": 8 * 1024 * 1024}


@contextmanager
def _pg_database(url: str) -> Iterator[str]:
    from creditflow.kernel.engine import create_database, drop_database

    scratch = create_database(url, f"cf_bench_{uuid.uuid4().hex[:10]}")
    try:
        yield scratch
    finally:
        drop_database(scratch)


class Workload:
    """Self-custody organisations and pre-signed operations: ``lanes`` independent chains of ops,
    each consuming the previous op's output piece (ids are derived, so they are known in advance)."""

    def __init__(self, app: App, lanes: int):
        self.app = app
        self.lanes = lanes
        self.signers: dict[str, Signer] = {}
        suffix = uuid.uuid4().hex[:4].upper()
        for i, (org, role) in enumerate([("core", "core_enterprise"), ("alpha", "supplier"), ("beta", "supplier")]):
            signer = Signer.generate("k1")
            self.signers[org] = signer
            app.ledger.register_organisation(
                org, org.title(), role, make_uscc(f"9132030088{i}{suffix}00"), public_key=signer.public_key
            )
        self.heads: list[str] = []
        self.amounts: list[int] = []
        for _ in range(lanes):
            self.heads.append(self.new_certificate(self.FACE))
            self.amounts.append(self.FACE)

    FACE = 10_000_000_000

    def new_certificate(self, face: int) -> str:
        """Issue a fresh certificate from core to alpha (both self-signed) and accept it; the root piece id."""
        app = self.app
        now = app.clock.now_ms()
        today = dt.datetime.fromtimestamp(now / 1000, dt.timezone(dt.timedelta(hours=8))).date()
        payable = app.payables.create_payable("core", "alpha", face, "bench")
        issue = self.sign(
            "core",
            {
                "type": "issue",
                "to": "alpha",
                "face_minor": face,
                "currency": "CNY",
                "issue_date": today.isoformat(),
                "maturity_date": (today + dt.timedelta(days=180)).isoformat(),
                "accept_by_ms": now + DAY_MS,
                "payable_id": payable.id,
                "payable_digest": payable.digest,
            },
        )
        piece = str(app.ledger.submit_signed(issue).result["piece_id"])
        app.ledger.submit_signed(self.sign("alpha", {"type": "accept", "piece_id": piece}))
        return piece

    def sign(self, actor: str, fields: dict[str, Any]) -> SignedOperation:
        payload = {"v": 1, "op_id": str(uuid.uuid4()), "actor": actor, **fields}
        return sign_operation(payload, [self.signers[actor]])

    def operations(self, n: int) -> list[SignedOperation]:
        """Alternate part transfers (1 fen to beta, change stays) and splits (1 fen off), round-robin."""
        accept_by = self.app.clock.now_ms() + DAY_MS
        out = []
        for i in range(n):
            lane = i % self.lanes
            piece, amount = self.heads[lane], self.amounts[lane]
            if (i // self.lanes) % 2 == 0:
                signed = self.sign(
                    "alpha",
                    {"type": "transfer", "piece_id": piece, "to": "beta", "amount_minor": 1, "accept_by_ms": accept_by},
                )
                self.heads[lane] = derive_id(signed.op.op_id, "piece/change")
            else:
                signed = self.sign("alpha", {"type": "split", "piece_id": piece, "amounts_minor": [1, amount - 1]})
                self.heads[lane] = derive_id(signed.op.op_id, "piece/1")
            self.amounts[lane] = amount - 1
            out.append(signed)
        return out


def _run_ops(app: App, signed: list[SignedOperation]) -> float:
    """Submit everything pipelined, wait for every acknowledgement; return ops/s."""
    started = time.perf_counter()
    futures = [app.sequencer.submit_async(s) for s in signed]
    for f in futures:
        f.result(timeout=600)
    return len(signed) / (time.perf_counter() - started)


def _store_run(url: str, ops: int, console: Console | None, label: str) -> dict[str, Any]:
    # Ledger mechanics only: the trade rules (invoice per transfer) are measured by `bench financing`.
    settings = Settings(db_url=url, enforce_trade_rules=False, **FAST_KDF, **throwaway_secrets())  # type: ignore[arg-type]
    with build(settings) as app:
        work = Workload(app, lanes=64)
        signed = work.operations(ops)
        if console:
            console.print(f"[dim]{label}: {ops} pre-signed operations, submitting…[/dim]")
        rate = _run_ops(app, signed)
        batches = app.sequencer.batches_committed
        report = app.verify()
        provenance = _provenance_ms(app, work)
    return {
        "ops": ops,
        "ops_per_s": round(rate, 1),
        "batches": batches,
        "verify_entries": report.entries,
        "verify_per_s": round(report.entries_per_s, 1),
        "provenance_10_tiers_ms_p50": provenance,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _witness_processes(workdir: Path, origin: str, log_vkey: str, count: int) -> Iterator[list[dict[str, str]]]:
    """``count`` real witnesses (`creditflow witness serve`, each its own process and state directory) trusting
    the log; yields their CREDITFLOW_WITNESSES entries; kills them on exit."""
    from creditflow.witness.state import StateDir

    processes: list[subprocess.Popen[bytes]] = []
    config = []
    try:
        for i in range(count):
            folder = workdir / f"witness-{i}"
            state = StateDir.init(folder, f"bench.witness/w{i}")
            state.add_log(origin, log_vkey)
            port = _free_port()
            command = [sys.executable, "-m", "creditflow.cli.main", "witness", "serve", "--state", str(folder)]
            processes.append(
                subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            config.append(
                {"name": f"w{i}", "vkey": state.cosigner().verifier.encode(), "url": f"http://127.0.0.1:{port}"}
            )
        deadline = time.monotonic() + 60
        for entry, process in zip(config, processes, strict=True):
            while True:
                try:
                    if httpx.get(entry["url"] + "/", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"witness {entry['name']} did not start")
                time.sleep(0.1)
        yield config
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _publication_off(workdir: Path, tag: str, ops: int, base: dict[str, Any]) -> float:
    with build(Settings(db_url=f"sqlite:///{workdir / f'publish-{tag}.db'}", **base)) as app:
        signed = Workload(app, lanes=64).operations(ops)
        return _run_ops(app, signed)


def _publication_on(workdir: Path, tag: str, ops: int, base: dict[str, Any], interval_s: float) -> dict[str, Any]:
    url = f"sqlite:///{workdir / f'publish-{tag}.db'}"
    with build(Settings(db_url=url, **base)) as first:  # makes the log key the witnesses must trust
        origin, vkey = first.settings.origin, first.checkpoints.vkey
    with _witness_processes(workdir / tag, origin, vkey, 2) as witnesses:
        settings = Settings(db_url=url, witnesses=witnesses, witness_quorum=2, checkpoint_interval_s=interval_s, **base)
        with build(settings) as app:
            signed = Workload(app, lanes=64).operations(ops)
            app.publisher.start()
            try:
                rate = _run_ops(app, signed)
            finally:
                app.publisher.stop()
            app.publisher.publish()  # the tail: so the witnesses end holding the whole log
            metrics = app.publisher.metrics()
    return {
        "ops_per_s": round(rate, 1),
        "rounds": metrics.rounds,
        "published_size": metrics.published_size,
        "published_cosignatures": metrics.published_cosignatures,
        "witness_lag_entries": {w.name: w.lag_entries for w in metrics.witnesses},
        "witness_failures": {w.name: w.failures for w in metrics.witnesses},
    }


def _publication_run(
    workdir: Path, ops: int, console: Console | None, interval_s: float, pairs: int = 2
) -> dict[str, Any]:
    """Ops/s with checkpoint publication off and on (two witness processes cosigning every round), each run on a
    fresh SQLite file, in the order off, on, on, off, ... (ABBA: a machine that speeds up or slows down during the
    run weighs on both sides alike); ``ratio`` is the mean of "on" over the mean of "off"."""
    workdir.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {"enforce_trade_rules": False, **FAST_KDF, **throwaway_secrets()}
    off: list[float] = []
    on: list[dict[str, Any]] = []
    order = [flag for i in range(pairs) for flag in ((False, True) if i % 2 == 0 else (True, False))]
    for k, publishing in enumerate(order):
        if console:
            what = "on, 2 witness processes" if publishing else "off"
            console.print(f"[dim]publication {what}: {ops} operations ({k + 1}/{len(order)})…[/dim]")
        if publishing:
            on.append(_publication_on(workdir, f"on{k}", ops, base, interval_s))
        else:
            off.append(round(_publication_off(workdir, f"off{k}", ops, base), 1))
    off_mean = statistics.fmean(off)
    on_mean = statistics.fmean(r["ops_per_s"] for r in on)
    return {
        "ops": ops,
        "checkpoint_interval_s": interval_s,
        "witnesses": 2,
        "order": ["on" if flag else "off" for flag in order],
        "off_ops_per_s": off,
        "on_ops_per_s": [r["ops_per_s"] for r in on],
        "on_runs": on,
        "ratio": round(on_mean / off_mean, 3),
    }


def _provenance_ms(app: App, work: Workload) -> float:
    """A fresh certificate passed on ten times (ten organisations, each accepting and paying the next), in
    the same database as the throughput run, then the median time of the provenance query for the last
    piece: eleven pieces from tier 11 back to the issue."""
    suffix = uuid.uuid4().hex[:4].upper()
    chain = []
    for i in range(10):
        org = f"tier{i}-{suffix.lower()}"
        signer = Signer.generate("k1")
        work.signers[org] = signer
        app.ledger.register_organisation(
            org, org, "supplier", make_uscc(f"91320300{i}9{suffix}000"), public_key=signer.public_key
        )
        chain.append(org)
    piece, holder = work.new_certificate(1_000_000), "alpha"
    accept_by = app.clock.now_ms() + DAY_MS
    for org in chain:
        signed = work.sign(
            holder,
            {"type": "transfer", "piece_id": piece, "to": org, "amount_minor": 1_000_000, "accept_by_ms": accept_by},
        )
        piece = str(app.ledger.submit_signed(signed).result["piece_id"])
        app.ledger.submit_signed(work.sign(org, {"type": "accept", "piece_id": piece}))
        holder = org
    depth = len(app.queries.provenance(piece))
    assert depth == 11, depth
    times = []
    for _ in range(200):
        t = time.perf_counter()
        app.queries.provenance(piece)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)


def _verify_bound(n: int = 5000) -> float:
    signer = Signer.generate("b")
    payload = {
        "v": 1,
        "type": "split",
        "op_id": str(uuid.uuid4()),
        "actor": "alpha",
        "piece_id": str(uuid.uuid4()),
        "amounts_minor": [1, 2],
    }
    message = op_message(payload)
    sig = signer.sign(message)
    started = time.perf_counter()
    for _ in range(n):
        verify_signature(signer.public_key, message, sig)
    return n / (time.perf_counter() - started)


def _insert_bound(n: int, batch: int, workdir: Path) -> float:
    """Bare sqlite3: entry-sized rows plus their Merkle leaf, committed per batch, WAL + synchronous=FULL."""
    conn = sqlite3.connect(workdir / "bound.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE e (seq INTEGER PRIMARY KEY, op_id TEXT UNIQUE, entry BLOB, leaf BLOB)")
    blob = os.urandom(420)
    started = time.perf_counter()
    for start in range(0, n, batch):
        rows = [(i, str(uuid.uuid4()), blob, os.urandom(32)) for i in range(start, min(n, start + batch))]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO e VALUES (?,?,?,?)", rows)
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - started)
    conn.close()
    return rate


def _proof_at_million(workdir: Path, entries: int = 1_000_000) -> dict[str, Any]:
    """Proof generation + verification against a log of ``entries`` rows. The rows are synthetic (bulk
    loaded, not signed operations: a million real ones would take minutes to create); the proof path
    (one batched node query, the entry read, RFC 9162 verification) is the production one."""
    from creditflow.kernel.engine import make_engine, migrate
    from creditflow.ledger import store
    from creditflow.tools.store import load_synthetic_log

    engine = make_engine(f"sqlite:///{workdir / 'million.db'}")
    migrate(engine)
    frontier = merkle.CompactRange()
    leaves: list[bytes] = []
    chunk = 50_000
    with engine.begin() as conn:
        for start in range(0, entries, chunk):
            rows, nodes = [], []
            for seq in range(start, min(entries, start + chunk)):
                data = b"synthetic entry %d" % seq
                leaf = merkle.leaf_hash(data)
                if seq % 997 == 0:
                    leaves.append(leaf)
                nodes.extend(frontier.append(leaf))
                rows.append(
                    {
                        "seq": seq,
                        "op_id": str(uuid.UUID(int=seq)),
                        "op_type": "x",
                        "actor": "x",
                        "ts_ms": 0,
                        "entry": data,
                        "leaf_hash": leaf,
                    }
                )
            load_synthetic_log(conn, rows, [{"node_key": store.node_key((lv, ix)), "hash": h} for lv, ix, h in nodes])
    root = frontier.root()
    times = []
    with engine.connect() as conn:
        for k, seq in enumerate(range(0, entries, 997)):
            t = time.perf_counter()
            data = store.entry_at(conn, seq)
            path = merkle.inclusion_proof(seq, entries, lambda nodes: store.fetch_nodes(conn, nodes))
            ok = merkle.verify_inclusion(merkle.leaf_hash(bytes(data)), seq, entries, path, root)
            times.append((time.perf_counter() - t) * 1000)
            assert ok and merkle.leaf_hash(bytes(data)) == leaves[k]
    engine.dispose()
    times.sort()
    return {
        "entries": entries,
        "proofs": len(times),
        "ms_p50": round(statistics.median(times), 4),
        "ms_p99": round(times[int(len(times) * 0.99) - 1], 4),
    }


def run_ledger_bench(
    ops: int,
    *,
    pg_url: str | None = None,
    progress: bool = True,
    console: Console | None = None,
    million: bool = True,
    publication_interval_s: float = 0.25,
) -> dict[str, Any]:
    pg_url = pg_url or os.environ.get("CREDITFLOW_TEST_PG_URL")
    out: dict[str, Any] = {"benchmark": "ledger", "ops_requested": ops, "cpu_count": os.cpu_count()}
    con = console if progress else None
    with tempfile.TemporaryDirectory(prefix="creditflow-bench-") as tmp:
        workdir = Path(tmp)
        out["bound"] = {
            "verify_per_s": round(_verify_bound(), 1),
            "insert_per_s": round(_insert_bound(ops, Settings().sequencer_batch_max, workdir), 1),
        }
        out["sqlite"] = _store_run(f"sqlite:///{workdir / 'bench.db'}", ops, con, "sqlite")
        if pg_url:
            with _pg_database(pg_url) as url:
                out["postgresql"] = _store_run(url, ops, con, "postgresql")
        else:
            out["postgresql"] = {"skipped": "no PostgreSQL URL (--pg or CREDITFLOW_TEST_PG_URL)"}
        if con:
            con.print("[dim]api: starting the HTTP server in its own process…[/dim]")
        from creditflow.tools.bench.api import run_api_bench

        out["api"] = run_api_bench(ops, workdir)
        smaller = min(out["bound"]["verify_per_s"], out["bound"]["insert_per_s"])
        out["ratio_to_bound"] = round(out["sqlite"]["ops_per_s"] / smaller, 3)
        out["publication"] = _publication_run(workdir, ops, con, publication_interval_s)
        if million:
            if con:
                con.print("[dim]building a 1,000,000-entry log for the proof benchmark…[/dim]")
            out["inclusion_proof_1m"] = _proof_at_million(workdir)
    out["targets"] = {
        "sqlite_ops_per_s": 5000,
        "postgresql_ops_per_s": 3000,
        "api_ops_per_s": 1000,
        "inclusion_proof_ms": 1.0,
        "verify_per_s": 5000,
        "provenance_10_tiers_ms": 5.0,
    }
    return out
