"""The ledger's commands: init, verify, proofs (written and checked), the log key, the expiry sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from creditflow.cli.common import DbOption, JsonOption, console, err_console, fail, open_app
from creditflow.kernel.errors import DomainError

proof_cli = typer.Typer(
    help="Write inclusion and consistency proofs that outsiders check offline.", no_args_is_help=True
)


def init(db: DbOption = None) -> None:
    """Create or upgrade the database schema and the platform's log key."""
    with open_app(db) as app:
        console.print(f"database ready: [bold]{app.engine.url.render_as_string(hide_password=True)}[/bold]")
        console.print(f"log key {app.log_signer.key_id}: {app.log_signer.public_key.hex()}")


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


def log_key(
    db: DbOption = None,
    vkey: Annotated[
        bool,
        typer.Option(
            "--vkey",
            help="Print the C2SP note verifier key (origin+hexid+base64(0x01||key)) alone on its line: what a "
            "witness, a monitor or Go's sumdb/note is configured with.",
        ),
    ] = False,
) -> None:
    """Print the log's public key: give it to anyone who verifies proofs (with --vkey: checkpoints)."""
    with open_app(db) as app:
        if vkey:
            print(app.checkpoints.vkey)
        else:
            print(json.dumps({app.log_signer.key_id: app.log_signer.public_key.hex()}))


def expire(db: DbOption = None) -> None:
    """Return pieces not accepted before their deadline to their senders."""
    with open_app(db) as app:
        receipts = app.ledger.expire_due()
    console.print(f"returned {len(receipts)} expired piece(s) to their senders")


keys_cli = typer.Typer(
    help="The log key's own secret: seal it apart from organisations' keys, write a log key file.",
    no_args_is_help=True,
)


@keys_cli.command("seal-log-key")
def seal_log_key_command(db: DbOption = None) -> None:
    """Seal a database's log key apart from organisations' keys, once (databases made before this existed hold it
    among them): needs CREDITFLOW_KEY_PASSPHRASE to open it and CREDITFLOW_LOG_KEY_PASSPHRASE or
    CREDITFLOW_LOG_KEY_FILE to seal it; afterwards the organisations' passphrase no longer opens it."""
    from creditflow.bootstrap import seal_log_key
    from creditflow.cli.common import EXIT_CONFIG, MODE, settings_for
    from creditflow.ledger.custody import StartupRefused

    try:
        signer, moved = seal_log_key(settings_for(db, dev=MODE.dev))
    except StartupRefused as exc:
        err_console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    what = "is now sealed apart" if moved else "was already sealed apart, and the log key secret opens it"
    console.print(f"log key {signer.key_id} ({signer.public_key.hex()}) {what}")


@keys_cli.command("log-key-file")
def log_key_file_command(path: Annotated[Path, typer.Argument(help="where to write it (must not exist)")]) -> None:
    """Write a new log key file (32 random bytes, hex, mode 0600) for CREDITFLOW_LOG_KEY_FILE."""
    from creditflow.cli.common import EXIT_CONFIG
    from creditflow.ledger.custody import write_log_key_file

    try:
        write_log_key_file(path)
    except FileExistsError:
        err_console.print(f"[red]error[/red]: {path} exists; a log key file is never overwritten")
        raise typer.Exit(EXIT_CONFIG) from None
    console.print(
        f"wrote {path}: set CREDITFLOW_LOG_KEY_FILE={path} (keep a copy offline: without it the log key is lost)"
    )
