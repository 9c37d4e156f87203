"""What every command module of the CLI shares: the consoles, the --db and --json options, opening the app
through the composition root, and how a refused command ends (exit 2 with its stable code)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from creditflow.config import Settings
from creditflow.kernel.errors import DomainError

# Piped output (CI logs, `make demo | tee`) gets a readable width instead of Rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

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
