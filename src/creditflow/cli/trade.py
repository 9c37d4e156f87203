"""``creditflow erp``: import trade documents from ERP files and run the three-way match.

Exit codes
    ``import``: 0 every document imported (or was already, identically); 4 some documents were refused
    (the others imported); 3 a file-level error (unreadable file, missing columns, over a limit: nothing
    imported); 2 a rule refused the request (unknown organisation).
    ``match``: 0 the invoice is eligible for confirmation; 4 it does not match (each mismatch explained);
    2 no such invoice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from creditflow.kernel.errors import DomainError
from creditflow.kernel.money import format_minor
from creditflow.trade.documents import DocKind
from creditflow.trade.match import MatchResult, MatchStatus

if TYPE_CHECKING:
    from creditflow.bootstrap import App
    from creditflow.trade.service import TradeService

EXIT_OK = 0
EXIT_REFUSED = 2
EXIT_FILE_ERROR = 3
EXIT_REJECTED = 4

erp_cli = typer.Typer(
    help="Trade documents from ERP systems: import purchase orders, receipts and invoices; three-way match.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: $CREDITFLOW_DB_URL or sqlite:///creditflow.db)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 140, highlight=False)


def _open(db: str | None) -> App:
    from creditflow.cli.common import open_app

    app: App = open_app(db)  # refuses (exit 3) without the passphrases; see creditflow.cli.common
    return app


def _service(app: App) -> TradeService:
    from creditflow.trade.service import TradeService

    return TradeService(app.engine, app.settings, app.clock)


def _refused(error: DomainError) -> typer.Exit:
    _console(stderr=True).print(f"[red]error[/red] [bold]{error.code}[/bold]: {error.message}")
    return typer.Exit(EXIT_REFUSED)


def import_exit_code(outcome: str) -> int:
    return {"ok": EXIT_OK, "file_error": EXIT_FILE_ERROR}.get(outcome, EXIT_REJECTED)


@erp_cli.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV or JSON export (UTF-8 or GBK)", dir_okay=False)],
    kind: Annotated[DocKind, typer.Option("--kind", help="po, receipt or invoice", case_sensitive=False)],
    as_org: Annotated[str, typer.Option("--as", help="The importing organisation (buyer or seller of each document)")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import FILE; documents with any bad row are refused whole and listed with every reason."""
    out, err = _console(), _console(stderr=True)
    try:
        data = file.read_bytes()
    except OSError as exc:
        err.print(f"[red]cannot read {file}[/red]: {exc.strerror or exc}")
        raise typer.Exit(EXIT_FILE_ERROR) from exc
    with _open(db) as app:
        try:
            report = _service(app).import_file(as_org, kind, data, file.name)
        except DomainError as exc:
            raise _refused(exc) from exc
    code = import_exit_code(report.outcome)
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        raise typer.Exit(code)
    if report.file_errors:
        for error in report.file_errors:
            err.print(f"[red bold]file refused[/red bold] ({error.code}, {error.field}): {error.message}")
        err.print("nothing was imported")
        raise typer.Exit(code)
    out.print(
        f"{file.name}: {report.rows} row(s) read as {report.format} ({report.encoding}); "
        f"[green]{len(report.imported)} imported[/green], {len(report.skipped)} already imported (unchanged), "
        f"[{'red' if report.rejected else 'green'}]{len(report.rejected)} rejected[/]"
    )
    if report.ignored_columns:
        out.print(f"ignored columns: {', '.join(report.ignored_columns)}")
    if report.rejected:
        table = Table(
            "document",
            "row",
            "field",
            "reason",
            title="rejected documents (each refused whole: none of its rows imported)",
        )
        for doc in report.rejected:
            for error in doc.errors:
                table.add_row(doc.number or "(no number)", str(error.row), error.field, error.message)
        out.print(table)
    raise typer.Exit(code)


def _match_table(result: MatchResult) -> Table:
    table = Table("line", "status", "explanation")
    for line in result.lines:
        colour = "green" if line.status is MatchStatus.MATCHED else "red"
        table.add_row(str(line.line_no) if line.line_no else "-", f"[{colour}]{line.status.value}[/]", line.explanation)
    return table


@erp_cli.command("match")
def match_command(
    invoice_number: Annotated[str, typer.Argument(help="The invoice number (发票号码)")],
    seller: Annotated[str, typer.Option("--seller", help="The seller's USCC (invoice numbers are per seller)")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Three-way match of an invoice with its purchase order and goods receipts."""
    out = _console()
    with _open(db) as app:
        service = _service(app)
        try:
            stored = service.find_document(DocKind.INVOICE, seller, invoice_number)
            result = service.match_invoice(stored.id)
        except DomainError as exc:
            raise _refused(exc) from exc
    code = EXIT_OK if result.ok else EXIT_REJECTED
    if as_json:
        print(json.dumps({"invoice_id": stored.id, **result.to_json()}, ensure_ascii=False))
        raise typer.Exit(code)
    if result.ok:
        out.print(
            f"[green bold]eligible[/green bold]: invoice {result.invoice_number} matches purchase order "
            f"{result.po_number}; payable {format_minor(result.eligible_minor, result.currency)} may be confirmed"
        )
    else:
        out.print(
            f"[red bold]not eligible[/red bold]: invoice {result.invoice_number} "
            f"({format_minor(result.gross_minor, result.currency)}) has {result.mismatches} mismatch(es) with "
            f"purchase order {result.po_number or '(none)'}"
        )
    out.print(_match_table(result))
    raise typer.Exit(code)
