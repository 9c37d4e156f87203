"""The `creditflow` command (Typer + Rich).

Exit codes: 0 success; 1 verification failed (the first bad entry or row is named); 2 a rule refused
the request (a `DomainError`, its code printed); 3 bad usage or configuration; 4 an ERP file had
rejected documents, or an invoice does not match.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from creditflow.cli.collateral import bench_iot, iot_cli, simulate_iot
from creditflow.cli.credit import bench_credit, credit_cli, simulate_cli
from creditflow.cli.trade import erp_cli
from creditflow.config import Settings
from creditflow.kernel.errors import Conflict, DomainError

# Piped output (CI logs, `make demo | tee`) gets a readable width instead of Rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

cli = typer.Typer(
    name="creditflow",
    help="Supply-chain finance on a verifiable ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
proof_cli = typer.Typer(
    help="Write inclusion and consistency proofs that outsiders check offline.", no_args_is_help=True
)
org_cli = typer.Typer(help="Onboard organisations and manage their API keys.", no_args_is_help=True)
network_cli = typer.Typer(
    help="The supply-chain network: penetration by tier, bank exposure, what-if default.", no_args_is_help=True
)
bench_cli = typer.Typer(help="Benchmarks that print JSON (run by `make bench`).", no_args_is_help=True)
cli.add_typer(proof_cli, name="proof")
cli.add_typer(org_cli, name="org")
cli.add_typer(bench_cli, name="bench")
cli.add_typer(network_cli, name="network")
cli.add_typer(erp_cli, name="erp")
cli.add_typer(credit_cli, name="credit")
cli.add_typer(simulate_cli, name="simulate")
bench_cli.command("credit")(bench_credit)
cli.add_typer(iot_cli, name="iot")
simulate_cli.command("iot")(simulate_iot)
bench_cli.command("iot")(bench_iot)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: $CREDITFLOW_DB_URL or sqlite:///creditflow.db)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def settings_for(db: str | None) -> Settings:
    return Settings(db_url=db) if db else Settings()


def open_app(db: str | None) -> Any:
    from creditflow.bootstrap import build

    return build(settings_for(db))


def fail(error: DomainError) -> None:
    err_console.print(f"[red]error[/red] [bold]{error.code}[/bold]: {error.message}")
    raise typer.Exit(2)


@cli.command()
def init(db: DbOption = None) -> None:
    """Create or upgrade the database schema and the platform's log key."""
    with open_app(db) as app:
        console.print(f"database ready: [bold]{app.engine.url.render_as_string(hide_password=True)}[/bold]")
        console.print(f"log key {app.log_signer.key_id}: {app.log_signer.public_key.hex()}")


@cli.command()
def demo(
    db: Annotated[
        str | None, typer.Option("--db", help="Keep the demo's database at this URL (default: a temporary SQLite file)")
    ] = None,
) -> None:
    """The platform's main job end to end: issue, accept, split, pass up three tiers, prove, verify, catch tampering."""
    from creditflow.tools.demo import run_demo

    raise typer.Exit(run_demo(console, db))


@cli.command()
def verify(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Replay the whole log from nothing and compare it with every stored table. Exit 1 at the first difference."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from creditflow.ledger.verifier import VerificationFailure

    with open_app(db) as app:
        try:
            if as_json:
                report = app.verify()
            else:
                with Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=err_console,
                    transient=True,
                ) as progress:
                    task = progress.add_task("replaying the log", total=None)

                    def tick(done: int, total: int) -> None:
                        if done % 1000 == 0 or done == total:
                            progress.update(task, completed=done, total=total)

                    report = app.verify(progress=tick)
        except VerificationFailure as failure:
            if as_json:
                print(json.dumps({"ok": False, "where": failure.where, "what": failure.what}))
            else:
                err_console.print(f"[red bold]VERIFY FAILED[/red bold] at {failure.where}: {failure.what}")
            raise typer.Exit(1) from failure
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        console.print(
            f"[green bold]verified[/green bold]: {report.entries} entries, {report.tree_heads} signed tree heads, "
            f"{report.certificates} certificates, {report.pieces} pieces; root {report.root_hash[:16]}…; "
            f"{report.entries_per_s:,.0f} entries/s"
        )


def _write_doc(doc: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        err_console.print(f"wrote {out}")


@proof_cli.command("inclusion")
def proof_inclusion(
    index: Annotated[int, typer.Option("--index", help="Log entry (leaf) index")],
    tree_size: Annotated[int | None, typer.Option("--tree-size", help="Tree size (default: the latest)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the proof here (default: stdout)")] = None,
    db: DbOption = None,
) -> None:
    """Prove that log entry INDEX is in the tree the signed tree head commits to."""
    with open_app(db) as app:
        try:
            _write_doc(app.proofs.inclusion(index, tree_size), out)
        except DomainError as exc:
            fail(exc)


@proof_cli.command("consistency")
def proof_consistency(
    old: Annotated[int, typer.Option("--old", help="Older tree size")],
    new: Annotated[int | None, typer.Option("--new", help="Newer tree size (default: the latest)")] = None,
    out: Annotated[Path | None, typer.Option("--out")] = None,
    db: DbOption = None,
) -> None:
    """Prove that the newer tree is the older tree with entries appended, nothing rewritten."""
    with open_app(db) as app:
        try:
            _write_doc(app.proofs.consistency(old, new), out)
        except DomainError as exc:
            fail(exc)


@cli.command("verify-proof")
def verify_proof(
    file: Annotated[Path, typer.Argument(help="A proof file written by `creditflow proof ...`", exists=True)],
    log_key: Annotated[
        str | None,
        typer.Option("--log-key", help="The log's public key (hex) you trust; default: the key inside the file"),
    ] = None,
) -> None:
    """Check a proof offline: no database, no network."""
    from creditflow.ledger.verifier import VerificationFailure, check_proof_document, pinned_key

    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]cannot read {file}[/red]: {exc}")
        raise typer.Exit(3) from exc
    trusted = None
    if log_key:
        try:
            trusted = pinned_key(doc, log_key)
        except ValueError as exc:
            err_console.print("[red]--log-key must be hex[/red]")
            raise typer.Exit(3) from exc
    else:
        err_console.print("[yellow]note[/yellow]: trusting the log key inside the file; pass --log-key to pin it")
    try:
        summary = check_proof_document(doc, trusted)
    except VerificationFailure as failure:
        err_console.print(f"[red bold]PROOF INVALID[/red bold] at {failure.where}: {failure.what}")
        raise typer.Exit(1) from failure
    console.print(f"[green bold]proof valid[/green bold]: {json.dumps(summary, ensure_ascii=False)}")


def _minor(value: int) -> str:
    from creditflow.kernel.money import format_minor

    return format_minor(value)


@network_cli.command("penetration")
def network_penetration(
    core: Annotated[str, typer.Argument(help="the core enterprise's org id")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """How far a core enterprise's credit reaches: value, suppliers, financed share, days to cash, by tier."""
    from rich.table import Table

    with open_app(db) as app:
        report = app.network.penetration(core)
    if as_json:
        print(json.dumps(report))
        return
    table = Table("tier", "value reached", "suppliers", "financed", "share", "median days to cash")
    for row in report["tiers"]:
        days = row["median_days_to_cash"]
        table.add_row(
            str(row["tier"]),
            _minor(row["value_reached_minor"]),
            str(row["suppliers_reached"]),
            _minor(row["financed_minor"]),
            f"{row['financed_share']:.0%}",
            "-" if days is None else f"{days:.0f}",
        )
    console.print(f"{core}: {report['certificates']} certificates, {_minor(report['issued_minor'])} issued")
    console.print(table)


@network_cli.command("exposure")
def network_exposure(db: DbOption = None, as_json: JsonOption = False) -> None:
    """What each bank holds of each core enterprise's live certificates."""
    from rich.table import Table

    with open_app(db) as app:
        rows = app.network.exposure()
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("bank", "core enterprise", "exposure")
    for r in rows:
        table.add_row(r["bank"], r["core"], _minor(r["exposure_minor"]))
    console.print(table)


@network_cli.command("what-if-default")
def network_what_if(
    core: Annotated[str, typer.Argument(help="the core enterprise's org id")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """If the core enterprise paid nothing: each holder's loss, before and after recourse."""
    from rich.table import Table

    with open_app(db) as app:
        report = app.network.what_if_default(core)
    if as_json:
        print(json.dumps(report))
        return
    table = Table("holder", "role", "direct loss", "after recourse")
    for h in report["holders"]:
        table.add_row(h["org_id"], h["role"], _minor(h["direct_loss_minor"]), _minor(h["loss_after_recourse_minor"]))
    console.print(f"{core} defaults: {_minor(report['total_at_risk_minor'])} at risk")
    console.print(table)


@cli.command("log-key")
def log_key(db: DbOption = None) -> None:
    """Print the log's public key: give it to anyone who verifies proofs."""
    with open_app(db) as app:
        print(json.dumps({app.log_signer.key_id: app.log_signer.public_key.hex()}))


@cli.command()
def expire(db: DbOption = None) -> None:
    """Return pieces not accepted before their deadline to their senders."""
    with open_app(db) as app:
        receipts = app.ledger.expire_due()
    console.print(f"returned {len(receipts)} expired piece(s) to their senders")


@org_cli.command("create")
def org_create(
    org_id: Annotated[str, typer.Option("--id", help="Short identifier, e.g. acme")],
    name: Annotated[str, typer.Option("--name")],
    role: Annotated[str, typer.Option("--role", help="core_enterprise, supplier, bank, auditor or operator")],
    uscc: Annotated[str, typer.Option("--uscc", help="统一社会信用代码 (18 characters, checked)")],
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="hex Ed25519 key for self custody; omit for platform custody")
    ] = None,
    db: DbOption = None,
) -> None:
    """Register an organisation on the ledger and print its first API key (shown once)."""
    with open_app(db) as app:
        try:
            key = bytes.fromhex(public_key) if public_key else None
            receipt = app.ledger.register_organisation(org_id, name, role, uscc, public_key=key)
            token = app.access.create_key(org_id, "created by creditflow org create")
        except ValueError as exc:
            err_console.print(f"[red]--public-key must be hex[/red]: {exc}")
            raise typer.Exit(3) from exc
        except DomainError as exc:
            fail(exc)
    console.print(f"registered [bold]{org_id}[/bold] at log entry {receipt.seq}")
    console.print(f"API key (shown once): [bold]{token}[/bold]")


@org_cli.command("list")
def org_list(db: DbOption = None) -> None:
    """List registered organisations."""
    from rich.table import Table

    with open_app(db) as app:
        table = Table("org_id", "name", "role", "USCC", "registered at entry")
        for p in app.queries.parties():
            table.add_row(p.org_id, p.name, p.role.value, p.uscc, str(p.created_seq))
    console.print(table)


@org_cli.command("api-key")
def org_api_key(org_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Create another API key for an organisation."""
    with open_app(db) as app:
        try:
            print(app.access.create_key(org_id, "created by creditflow org api-key"))
        except DomainError as exc:
            fail(exc)


@org_cli.command("user")
def org_user(
    org_id: Annotated[str, typer.Argument(help="the user's organisation")],
    user_id: Annotated[str, typer.Argument(help="sign-in name, e.g. li.wei")],
    name: Annotated[str | None, typer.Option("--name", help="full name (for a new user)")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input, not a prompt")
    ] = False,
    db: DbOption = None,
) -> None:
    """Add a user to an organisation (or reset an existing user's password) for the web pages.

    The password is asked for twice (or read from stdin) and stored as an Argon2id hash only."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with open_app(db) as app:
        try:
            app.sessions.check_password_policy(password)
            try:
                org = app.confirmation.user_org(user_id)
            except DomainError:
                app.confirmation.add_user(org_id, user_id, name or user_id)
                org = org_id
            if org != org_id:
                raise Conflict(f"user {user_id!r} belongs to {org!r}", code="user_exists", field="user_id")
            app.sessions.set_password(user_id, password)
        except DomainError as exc:
            fail(exc)
    console.print(f"user [bold]{user_id}[/bold] of {org_id} may sign in at /ui/sign-in")


@cli.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from creditflow.http.app import create_app

    app = open_app(db)
    if app.settings.uses_dev_passphrase:
        err_console.print(
            "[yellow]warning[/yellow]: CREDITFLOW_KEY_PASSPHRASE is not set; keys use the development passphrase"
        )
    try:
        uvicorn.run(create_app(app), host=host or app.settings.host, port=port or app.settings.port, log_level="info")
    finally:
        app.close()


@bench_cli.command("ledger")
def bench_ledger(
    ops: Annotated[int, typer.Option("--ops", help="operations per store")] = 20000,
    as_json: JsonOption = False,
    pg: Annotated[
        str | None, typer.Option("--pg", help="PostgreSQL URL (default: $CREDITFLOW_TEST_PG_URL; skipped if unset)")
    ] = None,
) -> None:
    """Ledger throughput on SQLite and PostgreSQL against machine bounds measured in the same run."""
    from creditflow.tools.bench.ledger import run_ledger_bench

    result = run_ledger_bench(ops, pg_url=pg, progress=not as_json, console=err_console)
    print(json.dumps(result, indent=None if as_json else 2))


@bench_cli.command("financing")
def bench_financing(
    requests: Annotated[int, typer.Option("--requests", help="financing requests to time")] = 300,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Financing request to approved-and-recorded disbursement: p50/p99 latency, beside a bare append."""
    from creditflow.tools.bench.financing import run_financing_bench

    result = run_financing_bench(requests, db_url=db)
    print(json.dumps(result, indent=None if as_json else 2))


def main() -> None:
    try:
        cli()
    except DomainError as exc:  # pragma: no cover - commands handle their own
        err_console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        sys.exit(2)


if __name__ == "__main__":
    main()
