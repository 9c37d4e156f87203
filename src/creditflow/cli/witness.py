"""`creditflow witness init|add-log|serve`: run a standalone C2SP witness (creditflow.witness).

None of these opens the platform's database or needs its passphrases: a witness belongs to somebody else (a bank,
an auditor) and holds only its own state directory. Errors end with exit 3 and one line saying what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from creditflow.cli.common import EXIT_CONFIG, console, err_console

witness_cli = typer.Typer(
    help="A standalone C2SP witness (c2sp.org/tlog-witness): cosigns checkpoints that extend what it has seen.",
    no_args_is_help=True,
)

StateOption = Annotated[Path, typer.Option("--state", help="The witness's state directory (its key and what it saw)")]


def _refuse(message: str) -> None:
    err_console.print(f"[red]error[/red]: {message}", soft_wrap=True)
    raise typer.Exit(EXIT_CONFIG)


@witness_cli.command("init")
def init(
    name: Annotated[str, typer.Option("--name", help="The cosigner's name, a schema-less URL (witness.example/w1)")],
    state: StateOption,
) -> None:
    """Create the state directory and a new cosigner key; print its vkey (cosignature/v1, type 0x04)."""
    from creditflow.witness.state import StateDir, StateError

    try:
        directory = StateDir.init(state, name)
        vkey = directory.cosigner().verifier.encode()
    except (StateError, OSError) as exc:
        _refuse(str(exc))
        return
    err_console.print(f"witness [bold]{name}[/bold] ready in {state}; give this vkey to the logs you witness:")
    console.print(vkey, soft_wrap=True, highlight=False)


@witness_cli.command("add-log")
def add_log(
    state: StateOption,
    origin: Annotated[str, typer.Option("--origin", help="The log's origin line (its checkpoints' first line)")],
    vkey: Annotated[str, typer.Option("--vkey", help="The log's note key: `creditflow log-key --vkey` prints it")],
) -> None:
    """Trust a log: its origin and its Ed25519 (0x01) note key, which must be named after the origin."""
    from creditflow.witness.state import StateDir, StateError

    try:
        key = StateDir(state).add_log(origin, vkey)
    except (StateError, OSError) as exc:
        _refuse(str(exc))
        return
    console.print(f"witnessing {origin} (key id {key.key_id.hex()})", highlight=False)


@witness_cli.command("serve")
def serve(
    state: StateOption,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
) -> None:
    """Serve POST /add-checkpoint until interrupted."""
    import uvicorn

    from creditflow.witness.core import Witness
    from creditflow.witness.server import create_witness_app
    from creditflow.witness.state import StateDir, StateError

    try:
        directory = StateDir(state)
        witness = Witness(directory)
        logs = directory.logs()
    except (StateError, OSError) as exc:
        _refuse(str(exc))
        return
    if not logs:
        err_console.print("[yellow]warning[/yellow]: no log is known yet: add one with `creditflow witness add-log`")
    err_console.print(f"witness {witness.cosigner.name} on http://{host}:{port} for {len(logs)} log(s)")
    err_console.print(f"vkey {witness.vkey}", soft_wrap=True, highlight=False)
    try:
        uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="warning", access_log=False)
    except OSError as exc:  # pragma: no cover - uvicorn reports a busy port itself and exits
        _refuse(f"cannot listen on {host}:{port}: {exc}")
