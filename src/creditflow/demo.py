"""`creditflow demo`: the story of a precision-parts factory, end to end, printed as it happens.

A construction-machinery maker issues a 1,000,000 CNY certificate against its payable to the factory
(tier 1); the factory accepts, splits, and pays 600,000 to its special-steel supplier (tier 2), which
pays 200,000 to an ore trader (tier 3). Then: the tree with tiers, a provenance chain, the issuer's
liability, an inclusion proof checked offline, a consistency proof, a clean `verify`, and a change made
behind the ledger's back in a copy of the database that `verify` catches.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.tree import Tree
from sqlalchemy import create_engine, text, update

from creditflow.adapters.sql.engine import normalise_url
from creditflow.adapters.sql.tables import ledger_entries, pieces
from creditflow.bootstrap import App, build
from creditflow.config import Settings
from creditflow.domain.certificates import CHINA_TZ, Piece
from creditflow.domain.money import format_minor
from creditflow.domain.uscc import make_uscc
from creditflow.ledger import merkle
from creditflow.ledger.verifier import VerificationFailure, check_consistency_document, check_inclusion_document
from creditflow.services.audit import verify_database

YUAN = 100

CAST = [
    ("hcm", "华夏工程机械股份有限公司 Huaxia Construction Machinery", "core_enterprise", "9132030073521"),
    ("jingyi", "精益精密零部件厂 Jingyi Precision Parts", "supplier", "9132030273522"),
    ("tegang", "特钢材料有限公司 Tegang Special Steel", "supplier", "9132030373523"),
    ("kuangye", "矿冶贸易有限公司 Kuangye Ore Trading", "supplier", "9132030473524"),
    ("ops", "creditflow platform operations", "operator", "9132030573525"),
]


def _step(console: Console, n: int, text_: str) -> None:
    console.print(f"\n[bold cyan]{n}.[/bold cyan] [bold]{text_}[/bold]")


def _tree(console: Console, app: App, certificate_id: str, names: dict[str, str]) -> None:
    cert = app.queries.certificate(certificate_id)
    all_pieces = app.queries.tree(certificate_id)
    children: dict[str | None, list[Piece]] = {}
    for p in all_pieces:
        children.setdefault(p.parent_id, []).append(p)
    root = Tree(
        f"[bold]certificate {cert.id[:8]}[/bold] issued by {names[cert.issuer]}: "
        f"{format_minor(cert.face_minor)}, matures {cert.maturity_date}"
    )

    def add(node: Tree, piece: Piece) -> None:
        style = "green" if piece.live else "dim"
        label = (
            f"[{style}]tier {piece.tier} · {names.get(piece.holder, piece.holder)} · "
            f"{format_minor(piece.amount_minor)} · {piece.state.value}[/{style}] [dim]{piece.id[:8]}[/dim]"
        )
        branch = node.add(label)
        for child in children.get(piece.id, []):
            add(branch, child)

    for top in children.get(None, []):
        add(root, top)
    console.print(root)


def _copy_database(app: App, url: str, workdir: Path) -> str:
    """A copy of the demo database to tamper with (the real one stays clean)."""
    if app.engine.dialect.name == "sqlite":
        source = Path(app.engine.url.database or "")
        app.close()
        target = workdir / "tampered-copy.db"
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"
    app.close()
    name = f"creditflow_tampered_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    source_db = admin.url.database
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source_db}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def _drop_copy(url: str) -> None:
    if url.startswith("sqlite"):
        return
    name = url.rsplit("/", 1)[1]
    admin = create_engine(normalise_url(url.rsplit("/", 1)[0] + "/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_demo(console: Console, db: str | None) -> int:
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="creditflow-demo-"))
    url = db or f"sqlite:///{workdir / 'demo.db'}"
    try:
        return _run(console, url, workdir, started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(console: Console, url: str, workdir: Path, started: float) -> int:
    console.print(
        Panel.fit("[bold]creditflow demo[/bold]: a 1,000,000 CNY certificate flows up three tiers", style="cyan")
    )
    app = build(Settings(db_url=url))
    names = {org: name for org, name, _, _ in CAST}
    console.print(f"database: {app.engine.url.render_as_string(hide_password=True)}")
    console.print(f"log key {app.log_signer.key_id}: {app.log_signer.public_key.hex()}")

    _step(console, 1, "Onboard the parties (USCC check characters verified, one Ed25519 key each, held encrypted)")
    suffix = uuid.uuid4().hex[:4]
    ids = {org: f"{org}-{suffix}" for org, *_ in CAST}  # unique per run, so --db can be reused
    names = {ids[org]: name for org, name, _, _ in CAST}
    for org, name, role, prefix in CAST:
        uscc = make_uscc(prefix + suffix.upper())
        receipt = app.ledger.register_organisation(ids[org], name, role, uscc)
        console.print(f"  {role:16} {name}  USCC {uscc}  → log entry {receipt.seq}")
    core, t1, t2, t3, _ops = (ids[o] for o in ("hcm", "jingyi", "tegang", "kuangye", "ops"))

    _step(console, 2, "The core enterprise records its payable and issues a certificate on it")
    payable = app.ledger.create_payable(core, t1, 1_000_000 * YUAN, "PO-2026-0388 hydraulic valve blocks")
    today = dt.datetime.now(CHINA_TZ).date()
    issued = app.ledger.issue(core, payable.id, 1_000_000 * YUAN, today + dt.timedelta(days=180))
    cert_id, root = str(issued.result["certificate_id"]), str(issued.result["piece_id"])
    console.print(
        f"  payable {payable.id} ({format_minor(payable.amount_minor)}), digest {payable.digest[:16]}… on the log"
    )
    console.print(f"  certificate {cert_id[:8]} issued to {names[t1]}: pending acceptance (entry {issued.seq})")

    _step(console, 3, "Tier 1 accepts, splits 600,000 / 400,000 and pays its steel supplier")
    app.ledger.accept(t1, root)
    split = app.ledger.split(t1, root, [600_000 * YUAN, 400_000 * YUAN])
    to_steel, kept = (str(x) for x in split.result["piece_ids"])
    sent = app.ledger.transfer(t1, to_steel, t2, 600_000 * YUAN)
    steel_piece = str(sent.result["piece_id"])
    app.ledger.accept(t2, steel_piece)
    console.print(f"  {names[t2]} accepted {format_minor(600_000 * YUAN)} (tier 2)")

    _step(console, 4, "Tier 2 pays 200,000 to the ore trader (a part transfer: the rest comes back as change)")
    paid = app.ledger.transfer(t2, steel_piece, t3, 200_000 * YUAN)
    ore_piece = str(paid.result["piece_id"])
    app.ledger.accept(t3, ore_piece)
    transfer_seq = paid.seq
    console.print(
        f"  {names[t3]} accepted {format_minor(200_000 * YUAN)} (tier 3); change {format_minor(400_000 * YUAN)} stays with {names[t2]}"
    )

    _step(console, 5, "A rule refuses a double spend, and nothing changes")
    try:
        app.ledger.transfer(t1, to_steel, t3, 1 * YUAN)
    except Exception as exc:  # a DomainError; shown as the API would
        console.print(f"  refused: [yellow]{getattr(exc, 'code', type(exc).__name__)}[/yellow]: {exc}")

    _step(console, 6, "The certificate's tree, with the tier of every holder")
    _tree(console, app, cert_id, names)

    _step(console, 7, "Provenance of the ore trader's piece: its chain back to the issue")
    for hop in app.queries.provenance(ore_piece):
        console.print(
            f"  tier {hop.tier}  {names[hop.holder]:50} {format_minor(hop.amount_minor):>22}  {hop.state.value}"
        )

    _step(console, 8, "The issuer's liability and the value in circulation by tier")
    liability = app.queries.liability(core)
    console.print(
        f"  outstanding {format_minor(liability.outstanding_minor)}; pending {format_minor(liability.pending_minor)}"
    )
    table = Table("tier", "value", "pieces", "holders")
    for row in app.queries.circulation_by_tier(core):
        table.add_row(str(row.tier), format_minor(row.amount_minor), str(row.pieces), str(row.holders))
    console.print(table)
    _ = kept

    _step(console, 9, "An inclusion proof for the tier-2 → tier-3 transfer, checked offline with the verifier alone")
    proof = app.proofs.inclusion(transfer_seq)
    proof_file = workdir / "inclusion-proof.json"
    proof_file.write_text(json.dumps(proof, indent=2, ensure_ascii=False), encoding="utf-8")
    trusted = {app.log_signer.key_id: app.log_signer.public_key}
    summary = check_inclusion_document(json.loads(proof_file.read_text(encoding="utf-8")), trusted)
    console.print(
        f"  entry {summary['leaf_index']} is in the signed tree of {summary['tree_size']} entries "
        f"(root {summary['root_hash'][:16]}…, {len(proof['audit_path'])} hashes): [green]valid[/green]"
    )
    console.print(
        f"  it records: {summary['operation']['type']} of {format_minor(summary['operation']['amount_minor'])} to {names[summary['operation']['to']]}"
    )
    consistency = check_consistency_document(app.proofs.consistency(issued.seq + 1), trusted)
    console.print(
        f"  consistency {consistency['old_tree_size']} → {consistency['new_tree_size']}: the log only grew [green]valid[/green]"
    )

    _step(console, 10, "`creditflow verify`: replay the log from nothing, compare with every table")
    report = app.verify()
    console.print(
        f"  [green bold]verified[/green bold]: {report.entries} entries, {report.pieces} pieces, root {report.root_hash[:16]}…"
    )

    _step(console, 11, "Someone changes the ore trader's amount behind the ledger's back, in a copy of the database")
    log_keys = app.log_keys
    copy_url = _copy_database(app, url, workdir)
    try:
        from creditflow.adapters.sql.engine import make_engine

        tampered = make_engine(copy_url)
        with tampered.begin() as conn:
            conn.execute(update(pieces).where(pieces.c.id == ore_piece).values(amount_minor=900_000 * YUAN))
        try:
            verify_database(tampered, log_keys)
            console.print("  [red]tampering NOT detected[/red]")
            return 1
        except VerificationFailure as failure:
            console.print(f"  [red bold]VERIFY FAILED[/red bold] at {failure.where}: {failure.what}")
        with tampered.begin() as conn:
            conn.execute(update(pieces).where(pieces.c.id == ore_piece).values(amount_minor=200_000 * YUAN))
            stored = conn.execute(ledger_entries.select().where(ledger_entries.c.seq == transfer_seq)).one()
            forged = bytes(stored.entry).replace(b'"amount_minor":20000000', b'"amount_minor":90000000')
            # A careful forger also recomputes the leaf hash; the holder's signature still gives it away.
            conn.execute(
                ledger_entries.update()
                .where(ledger_entries.c.seq == transfer_seq)
                .values(entry=forged, leaf_hash=merkle.leaf_hash(forged))
            )
        try:
            verify_database(tampered, log_keys)
            console.print("  [red]tampering NOT detected[/red]")
            return 1
        except VerificationFailure as failure:
            console.print(
                f"  a forged log entry (amount changed, leaf hash recomputed): [red bold]VERIFY FAILED[/red bold] at {failure.where}: {failure.what}"
            )
        tampered.dispose()
    finally:
        _drop_copy(copy_url)

    console.print(
        f"\n[bold green]done[/bold green] in {time.perf_counter() - started:.1f} s. "
        + (
            f"The untampered database is kept at {url}: run `creditflow verify --db {url}`."
            if "demo.db" not in url
            else ""
        )
    )
    return 0
