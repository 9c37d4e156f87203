"""The `creditflow` command (Typer + Rich): this module assembles it from one module per context
(`ledger`, `identity`, `financing`, `trade`, `credit`, `collateral`, `witness`; shared options in `common`) and keeps
the commands that span them: `demo`, `serve` and `bench`.

Exit codes: 0 success; 1 verification failed (the first bad entry or row is named); 2 a rule refused
the request (a `DomainError`, its code printed); 3 bad usage or configuration (among them: no
CREDITFLOW_KEY_PASSPHRASE or log key secret, refused before anything is written); 4 an ERP file had
rejected documents, or an invoice does not match.

`creditflow --dev COMMAND` (and `creditflow serve --dev`) runs with the public development passphrases where
none are set: for throwaway data only. `creditflow demo` needs neither: its database has its own.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from creditflow.cli import financing, identity, ledger, tlog
from creditflow.cli.collateral import bench_iot, iot_cli, simulate_iot
from creditflow.cli.common import MODE, DbOption, JsonOption, console, err_console, open_app
from creditflow.cli.credit import bench_credit, credit_cli, simulate_cli
from creditflow.cli.monitor import monitor
from creditflow.cli.trade import erp_cli
from creditflow.cli.witness import witness_cli
from creditflow.kernel.errors import DomainError

cli = typer.Typer(
    name="creditflow",
    help="Supply-chain finance on a verifiable ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_cli = typer.Typer(help="Benchmarks that print JSON (run by `make bench`).", no_args_is_help=True)
cli.add_typer(ledger.proof_cli, name="proof")
cli.add_typer(identity.org_cli, name="org")
cli.add_typer(identity.users_cli, name="users")
cli.add_typer(bench_cli, name="bench")
cli.add_typer(financing.network_cli, name="network")
cli.add_typer(erp_cli, name="erp")
cli.add_typer(credit_cli, name="credit")
cli.add_typer(simulate_cli, name="simulate")
bench_cli.command("credit")(bench_credit)
cli.add_typer(iot_cli, name="iot")
simulate_cli.command("iot")(simulate_iot)
bench_cli.command("iot")(bench_iot)
cli.add_typer(ledger.keys_cli, name="keys")
cli.add_typer(tlog.log_cli, name="log")
cli.add_typer(witness_cli, name="witness")
# the ledger's own commands sit at the top level
cli.command()(ledger.init)

DevOption = Annotated[
    bool,
    typer.Option(
        "--dev",
        help="Development mode: where CREDITFLOW_KEY_PASSPHRASE or the log key secret is not set, use the public "
        "development passphrases (with a warning). Never on real data.",
    ),
]


@cli.callback()
def _root(dev: DevOption = False) -> None:
    """Supply-chain finance on a verifiable ledger."""
    MODE.dev = dev


@cli.command()
def demo(
    db: Annotated[
        str | None, typer.Option("--db", help="Keep the demo's database at this URL (default: a temporary SQLite file)")
    ] = None,
) -> None:
    """The platform's main job end to end: issue, accept, split, pass up three tiers, prove, verify, catch tampering.

    Needs no passphrase: the demo's database gets throwaway random ones, stored in it (never put real data there)."""
    from creditflow.ledger.custody import StartupRefused
    from creditflow.tools.demo import run_demo

    try:
        code = run_demo(console, db)
    except StartupRefused as exc:
        err_console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc}")
        raise typer.Exit(3) from None
    raise typer.Exit(code)


cli.command()(ledger.verify)
cli.command("verify-proof")(ledger.verify_proof)
cli.command("log-key")(ledger.log_key)
cli.command()(ledger.expire)
cli.command()(monitor)


@cli.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    dev: DevOption = False,
) -> None:
    """Run the HTTP API and the checkpoint publisher (to CREDITFLOW_WITNESSES). Refuses to start without CREDITFLOW_KEY_PASSPHRASE and CREDITFLOW_LOG_KEY_PASSPHRASE (or
    CREDITFLOW_LOG_KEY_FILE), unless the database is a demo's or --dev is given."""
    import uvicorn

    from creditflow.http.app import create_app

    app = open_app(db, dev=dev)  # prints how the database was opened (demo, development passphrases) as warnings
    try:
        app.publisher.start()  # checkpoints to the witnesses, in its own thread (never started by `build`)
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


@bench_cli.command("monitor")
def bench_monitor(
    entries: Annotated[int, typer.Option("--entries", help="entries in the log (M)")] = 20000,
    new: Annotated[int, typer.Option("--new", help="entries appended before the daily round (N)")] = 100,
    as_json: JsonOption = False,
) -> None:
    """`creditflow monitor`'s daily round after N new entries on a log of M, beside a full `creditflow verify`."""
    from creditflow.tools.bench.monitor import run_monitor_bench

    print(json.dumps(run_monitor_bench(entries, new), indent=None if as_json else 2))


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
    from creditflow.ledger.custody import StartupRefused

    try:
        cli()
    except DomainError as exc:  # pragma: no cover - commands handle their own
        err_console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        sys.exit(2)
    except StartupRefused as exc:  # e.g. `bench financing --db URL` without the passphrases
        err_console.print(f"[red]error[/red] {exc.code}: {exc}")
        sys.exit(3)


if __name__ == "__main__":
    main()
