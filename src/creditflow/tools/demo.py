"""`creditflow demo`: the story of a precision-parts factory, end to end, printed as it happens.

The core enterprise's ERP exports are imported (one invoice that does not match its receipt is refused
with the reason); two of its users confirm the payable; a construction-machinery maker issues a
1,000,000 CNY certificate on it to the factory (tier 1); the factory accepts, splits, and pays 600,000 to
its special-steel supplier (tier 2), which pays 200,000 to an ore trader (tier 3), each payment citing
the invoice between the two; the factory finances its remaining piece at a bank in milliseconds with
the discount shown; then the tree with tiers, a provenance chain, an inclusion proof checked offline, a
consistency proof; 180 days on, the issuer pays once and clearing writes a valid pain.001 file; the
penetration report; a clean `verify`, and a change made behind the ledger's back in a copy of the
database that `verify` catches.
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

from creditflow.bootstrap import App, build_demo
from creditflow.financing import pain001
from creditflow.kernel.clock import ManualClock, SystemClock
from creditflow.kernel.engine import create_database, drop_database, make_engine
from creditflow.kernel.errors import DomainError
from creditflow.kernel.money import format_minor
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger import reads as ledger_reads
from creditflow.ledger.audit import verify_database
from creditflow.ledger.model.certificates import CHINA_TZ, Piece
from creditflow.ledger.verifier import VerificationFailure, check_consistency_document, check_inclusion_document
from creditflow.tools import store as tamper

YUAN = 100

CAST = [
    ("hcm", "华夏工程机械股份有限公司 Huaxia Construction Machinery", "core_enterprise", "9132030073521"),
    ("jingyi", "精益精密零部件厂 Jingyi Precision Parts", "supplier", "9132030273522"),
    ("tegang", "特钢材料有限公司 Tegang Special Steel", "supplier", "9132030373523"),
    ("kuangye", "矿冶贸易有限公司 Kuangye Ore Trading", "supplier", "9132030473524"),
    ("bank", "江南商业银行 Jiangnan Commercial Bank", "bank", "9132030573526"),
    ("ops", "creditflow platform operations", "operator", "9132030573525"),
]
BICS = {
    "hcm": "ICBKCNBJ",
    "jingyi": "PCBCCNBJ",
    "tegang": "BKCHCNBJ",
    "kuangye": "ABOCCNBJ",
    "bank": "COMMCNSH",
    "ops": "ICBKCNBJ",
}


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
    return create_database(url, name, template=url.rsplit("/", 1)[1])


def _drop_copy(url: str) -> None:
    if url.startswith("sqlite"):
        return
    drop_database(url)


def run_demo(console: Console, db: str | None) -> int:
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="creditflow-demo-"))
    url = db or f"sqlite:///{workdir / 'demo.db'}"
    try:
        return _run(console, url, workdir, started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _erp_files(workdir: Path, uscc: dict[str, str], today: dt.date) -> dict[str, Path]:
    """The core enterprise's ERP exports as they come: English and Chinese headers, thousands
    separators, an invoice file in GBK with amounts in 万元; plus the suppliers' own invoices."""
    core, t1, t2, t3 = uscc["hcm"], uscc["jingyi"], uscc["tegang"], uscc["kuangye"]
    ordered, received, invoiced = (today - dt.timedelta(days=d) for d in (20, 12, 10))
    files = {
        "po": (
            "po_number,order_date,buyer_uscc,seller_uscc,currency,line_no,item,unit,quantity,unit_price,amount\n"
            f'PO-2026-0388,{ordered},{core},{t1},CNY,1,Hydraulic valve block 液压阀块 HVB-32,pcs,100,8849.5575,"884,955.75"\n'
            f'PO-2026-0391,{ordered},{core},{t1},CNY,1,Slewing bearing 回转支承 SB-1200,pcs,20,"8,600.00","172,000.00"\n',
            "utf-8",
        ),
        "receipt": (
            "收货单号,采购订单号,收货日期,购方税号,销方税号,行号,订单行号,物料名称,实收数量\n"
            f"GR-0388,PO-2026-0388,{received:%Y/%m/%d},{core},{t1},1,1,液压阀块 HVB-32,100\n"
            f"GR-0391,PO-2026-0391,{received:%Y/%m/%d},{core},{t1},1,1,回转支承 SB-1200,18\n",
            "utf-8-sig",
        ),
        "invoice": (
            "发票号码,开票日期,购买方纳税人识别号,销售方纳税人识别号,采购订单号,行号,货物或应税劳务、服务名称,"
            "数量,单价(元),金额(万元),税率,税额(万元),价税合计(万元)\n"
            f"26322000000000388001,{invoiced:%Y年%m月%d日},{core},{t1},PO-2026-0388,1,液压阀块,100,8849.5575,"
            "88.495575,13%,11.504425,100\n"
            f'26322000000000391001,{invoiced:%Y年%m月%d日},{core},{t1},PO-2026-0391,1,回转支承,20,"8,600.00",'
            "17.2,13%,2.236,19.436\n",
            "gbk",
        ),
        "supplier_invoices": (
            "invoice_number,invoice_date,buyer_uscc,seller_uscc,currency,line_no,item,quantity,unit_price,net,tax_rate,tax,gross\n"
            f'TG-2026-0077,{invoiced},{t1},{t2},CNY,1,Special steel 42CrMo bar,100,5309.7345,"530,973.45",13%,"69,026.55",'
            '"600,000.00"\n'
            f'KY-2026-0012,{invoiced},{t2},{t3},CNY,1,Chromium ore concentrate,40,4424.7788,"176,991.15",13%,"23,008.85",'
            '"200,000.00"\n',
            "utf-8",
        ),
    }
    paths = {}
    for name, (content, encoding) in files.items():
        path = workdir / f"{name}.csv"
        path.write_bytes(content.encode(encoding))
        paths[name] = path
    return paths


def _run(console: Console, url: str, workdir: Path, started: float) -> int:
    console.print(
        Panel.fit(
            "[bold]creditflow demo[/bold]: a 1,000,000 CNY certificate flows up three tiers and turns into cash",
            style="cyan",
        )
    )
    clock = ManualClock(SystemClock().now_ms())
    # its own throwaway passphrases, random per demo database and stored in it: no environment needed
    app = build_demo(url, clock=clock)
    # A kept database (--db) may hold entries from an earlier run's fast-forward: time never goes back.
    with app.engine.connect().execution_options(read_only=True) as conn:
        clock.set(max(clock.now_ms(), ledger_reads.log_head(conn)[1]))
    console.print(f"database: {app.engine.url.render_as_string(hide_password=True)}")
    console.print(f"log key {app.log_signer.key_id}: {app.log_signer.public_key.hex()}")
    today = dt.datetime.fromtimestamp(clock.now_ms() / 1000, CHINA_TZ).date()

    _step(console, 1, "Onboard the parties (USCC check characters verified, one Ed25519 key each, held encrypted)")
    suffix = uuid.uuid4().hex[:4].upper()
    ids = {org: f"{org}-{suffix.lower()}" for org, *_ in CAST}  # unique per run, so --db can be reused
    names = {ids[org]: name for org, name, _, _ in CAST}
    uscc = {}
    for org, name, role, prefix in CAST:
        uscc[org] = make_uscc(prefix + suffix)
        receipt = app.ledger.register_organisation(ids[org], name, role, uscc[org])
        app.clearing.set_account(ids[org], name[:140], f"62220{abs(hash(org)) % 10**12:012d}", BICS[org])
        console.print(f"  {role:16} {name}  USCC {uscc[org]}  → log entry {receipt.seq}")
    core, t1, t2, t3, bank = (ids[o] for o in ("hcm", "jingyi", "tegang", "kuangye", "bank"))
    # People, not keys: the operator names the core enterprise's first admin, who adds its approvers
    admin = app.people.add(core, f"admin-{suffix}", "Li Na (IT admin)", ["admin"])
    as_admin = app.access.authenticate(app.access.create_key(core, "demo: Li Na's token", user_id=admin.user_id))
    people = {}
    for uid, name, roles in (
        (f"maker-{suffix}", "Wang Fang (AP clerk)", ["maker", "approver"]),
        (f"checker-{suffix}", "Zhao Lei (treasury)", ["approver"]),
    ):
        app.people.create(as_admin, uid, name, roles)
        people[uid] = app.access.authenticate(app.access.create_key(core, f"demo: {name}'s token", user_id=uid))
    console.print(f"  users of {names[core]}: admin {admin.user_id}; approvers " + ", ".join(people))
    app.confirmation.set_credit_line(core, 5_000_000 * YUAN)
    app.financing.set_rating(core, "AA")
    console.print(f"  credit line of {names[core]}: {format_minor(5_000_000 * YUAN)}; rating AA")

    _step(console, 2, "The core enterprise's ERP exports are imported (UTF-8 and GBK, 万元 amounts, Chinese headers)")
    files = _erp_files(workdir, uscc, today)
    for kind, path in (("po", files["po"]), ("receipt", files["receipt"]), ("invoice", files["invoice"])):
        report = app.trade.import_file(core, kind, path.read_bytes(), path.name)
        console.print(
            f"  {path.name:14} {report.outcome}: {len(report.imported)} imported, {len(report.rejected)} rejected"
        )
    report = app.trade.import_file(t1, "invoice", files["supplier_invoices"].read_bytes(), "supplier_invoices.csv")
    console.print(
        f"  supplier invoices imported by {names[t1]}: {len(report.imported)} imported, {len(report.rejected)} rejected"
        + "".join(f"\n    refused {r.number}: {e.message}" for r in report.rejected for e in r.errors[:1])
    )
    report2 = app.trade.import_file(t2, "invoice", files["supplier_invoices"].read_bytes(), "supplier_invoices.csv")
    console.print(
        f"  the same file imported by {names[t2]}: {len(report2.imported)} imported, {len(report2.skipped)} already there"
    )

    _step(console, 3, "Three-way match: purchase order ↔ goods receipt ↔ invoice")
    inv_ok = app.trade.find_document("invoice", uscc["jingyi"], "26322000000000388001")
    inv_bad = app.trade.find_document("invoice", uscc["jingyi"], "26322000000000391001")
    try:
        app.confirmation.payable_from_invoice(core, inv_bad.id)
    except DomainError as exc:
        console.print(f"  invoice 26322000000000391001 [red]refused[/red] ({exc.code}):")
        for line in exc.details.get("lines", []):
            console.print(f"    line {line['line_no']}: {line['explanation']}")
    payable = app.confirmation.payable_from_invoice(core, inv_ok.id)
    console.print(
        f"  invoice 26322000000000388001 [green]matches[/green]: payable {payable.id} of {format_minor(payable.amount_minor)}"
        f" ({payable.status}); its digest commits to the order's, receipt's and invoice's hashes, never the documents"
    )

    _step(console, 4, "Maker-checker: two different approvers of the core enterprise confirm the payable (确权)")
    erp_key = app.access.authenticate(app.access.create_key(core, "demo: the ERP's organisation-wide key"))
    try:
        app.confirmation.approve(payable.id, erp_key)
    except DomainError as exc:
        console.print(f"  the organisation-wide key (not a person): [yellow]{exc.code}[/yellow]")
    console.print(f"  {app.confirmation.approve(payable.id, people[f'maker-{suffix}'])}")
    try:
        app.confirmation.approve(payable.id, people[f"maker-{suffix}"])
    except DomainError as exc:
        console.print(f"  the same person again: [yellow]{exc.code}[/yellow]")
    console.print(f"  {app.confirmation.approve(payable.id, people[f'checker-{suffix}'])}")

    _step(console, 5, "Issue on the confirmed payable, within the credit line; tier 1 accepts and splits")
    issued = app.ledger.issue(core, payable.id, 1_000_000 * YUAN, today + dt.timedelta(days=180))
    cert_id, root = str(issued.result["certificate_id"]), str(issued.result["piece_id"])
    app.ledger.accept(t1, root)
    split = app.ledger.split(t1, root, [600_000 * YUAN, 400_000 * YUAN])
    to_steel, kept = (str(x) for x in split.result["piece_ids"])
    console.print(
        f"  certificate {cert_id[:8]}: {format_minor(1_000_000 * YUAN)}, matures {today + dt.timedelta(days=180)}"
    )

    _step(console, 6, "Up the chain, each payment citing the trade invoice between the two parties")
    steel_invoice = app.trade.find_document("invoice", uscc["tegang"], "TG-2026-0077")
    ore_invoice = app.trade.find_document("invoice", uscc["kuangye"], "KY-2026-0012")
    try:
        app.ledger.transfer(t1, to_steel, t2, 600_000 * YUAN)
    except DomainError as exc:
        console.print(f"  without an invoice: [yellow]{exc.code}[/yellow]")
    sent = app.ledger.transfer(t1, to_steel, t2, 600_000 * YUAN, trade_ref=steel_invoice.digest)
    steel_piece = str(sent.result["piece_id"])
    app.ledger.accept(t2, steel_piece)
    paid = app.ledger.transfer(t2, steel_piece, t3, 200_000 * YUAN, trade_ref=ore_invoice.digest)
    ore_piece = str(paid.result["piece_id"])
    app.ledger.accept(t3, ore_piece)
    transfer_seq = paid.seq
    console.print(
        f"  {names[t2]} holds {format_minor(400_000 * YUAN)} (tier 2), {names[t3]} {format_minor(200_000 * YUAN)} (tier 3)"
    )
    try:
        app.ledger.transfer(t1, to_steel, t2, 1 * YUAN, trade_ref=steel_invoice.digest)
    except DomainError as exc:
        console.print(f"  a double spend of the same piece: [yellow]{exc.code}[/yellow], nothing changed")

    _step(console, 7, "The factory turns its remaining piece into cash at a bank")
    product = app.financing.create_product(
        bank, "e-certificate discounting", {"AA": {30: 300, 90: 330, 180: 350, 365: 390}}, fee_bps=5
    )
    app.financing.set_limit(bank, core, 3_000_000 * YUAN)
    outcome = app.financing.request(t1, kept, bank, product.id)
    q = outcome.decision.quote
    assert outcome.approved and q is not None, outcome.reasons
    console.print(
        f"  [green]approved[/green] in {outcome.decision_ms:.1f} ms (the article's platform: up to 24 hours)\n"
        f"  face {format_minor(q.face_minor)} · {q.annual_rate_bps / 100:.2f} % a year · {q.days} days ACT/360\n"
        f"  interest {format_minor(q.interest_minor)} · fees {format_minor(q.fees_minor)} · "
        f"[bold]cash {format_minor(q.disbursement_minor)}[/bold]; the piece passes to {names[bank]}, signed by both"
    )

    _step(console, 8, "The certificate's tree, with the tier of every holder")
    _tree(console, app, cert_id, names)

    _step(console, 9, "Provenance of the ore trader's piece: its chain back to the issue")
    for hop in app.queries.provenance(ore_piece):
        console.print(
            f"  tier {hop.tier}  {names[hop.holder]:50} {format_minor(hop.amount_minor):>22}  {hop.state.value}"
        )
    liability = app.queries.liability(core)
    console.print(f"  the issuer owes {format_minor(liability.outstanding_minor)} in total")

    _step(console, 10, "An inclusion proof for the tier-2 → tier-3 transfer, checked offline with the verifier alone")
    proof = app.proofs.inclusion(transfer_seq)
    proof_file = workdir / "inclusion-proof.json"
    proof_file.write_text(json.dumps(proof, indent=2, ensure_ascii=False), encoding="utf-8")
    trusted = {app.log_signer.key_id: app.log_signer.public_key}
    summary = check_inclusion_document(json.loads(proof_file.read_text(encoding="utf-8")), trusted)
    console.print(
        f"  entry {summary['leaf_index']} is in the signed tree of {summary['tree_size']} entries "
        f"(root {summary['root_hash'][:16]}…, {len(proof['audit_path'])} hashes): [green]valid[/green]"
    )
    consistency = check_consistency_document(app.proofs.consistency(issued.seq + 1), trusted)
    console.print(
        f"  consistency {consistency['old_tree_size']} → {consistency['new_tree_size']}: the log only grew [green]valid[/green]"
    )

    _step(console, 11, "180 days later: the core enterprise pays once; clearing pays every holder (ISO 20022 pain.001)")
    clock.advance(180 * 86_400_000)
    app.clearing.record_payment(core, cert_id, 1_000_000 * YUAN, "HCM treasury batch 2026-0915")
    cleared = app.clearing.clear(cert_id)
    pain001.validate(cleared.payment_file)
    (workdir / "pain001.xml").write_bytes(cleared.payment_file)
    for t in cleared.transfers:
        console.print(f"  pay {names[t['holder']]:50} {format_minor(t['amount_minor']):>22}")
    console.print(
        f"  {len(cleared.transfers)} transfers, total {format_minor(cleared.total_minor)} = face value; "
        f"file {cleared.message_id} [green]valid against pain.001.001.09.xsd[/green]; every piece cleared"
    )

    _step(console, 12, "How far the credit reached (penetration report)")
    penetration = app.network.penetration(core)
    table = Table("tier", "value reached", "suppliers", "financed", "share", "median days to cash")
    for row in penetration["tiers"]:
        days = row["median_days_to_cash"]
        table.add_row(
            str(row["tier"]),
            format_minor(row["value_reached_minor"]),
            str(row["suppliers_reached"]),
            format_minor(row["financed_minor"]),
            f"{row['financed_share']:.0%}",
            "-" if days is None else f"{days:.0f}",
        )
    console.print(table)

    _step(console, 13, "Data credit: an online seller with no core enterprise behind it applies for a loan (脱核链贷)")
    from creditflow.cli.credit import run_credit_demo

    run_credit_demo(console, app)

    _step(console, 14, "IoT-monitored collateral: a steel warehouse, an excavator and a tea garden, watched live")
    from creditflow.tools.simulate.iot import run_iot_demo

    run_iot_demo(console, app)

    _step(console, 15, "`creditflow verify`: replay the log from nothing, compare with every table")
    verified = app.verify()
    console.print(
        f"  [green bold]verified[/green bold]: {verified.entries} entries, {verified.pieces} pieces, root {verified.root_hash[:16]}…"
    )

    _step(console, 16, "Someone changes the ore trader's amount behind the ledger's back, in a copy of the database")
    log_keys = app.log_keys
    copy_url = _copy_database(app, url, workdir)
    try:
        tampered = make_engine(copy_url)
        with tampered.begin() as conn:
            tamper.set_piece_amount(conn, ore_piece, 900_000 * YUAN)
        try:
            verify_database(tampered, log_keys)
            console.print("  [red]tampering NOT detected[/red]")
            return 1
        except VerificationFailure as failure:
            console.print(f"  [red bold]VERIFY FAILED[/red bold] at {failure.where}: {failure.what}")
        with tampered.begin() as conn:
            tamper.set_piece_amount(conn, ore_piece, 200_000 * YUAN)
            # A careful forger also recomputes the leaf hash; the holder's signature still gives it away.
            tamper.forge_entry(conn, transfer_seq, b'"amount_minor":20000000', b'"amount_minor":90000000')
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

    kept_note = (
        "" if "demo.db" in url else f" The untampered database is kept at {url}: run `creditflow verify --db {url}`."
    )
    console.print(f"\n[bold green]done[/bold green] in {time.perf_counter() - started:.1f} s.{kept_note}")
    return 0
