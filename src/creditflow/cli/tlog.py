"""`creditflow log ...`: the log as C2SP tlog-tiles files.

`creditflow log export-tiles DIR` writes the checkpoint and every tile of the current tree under the same
paths as `/log/` serves them, so any static web server or object store mirrors the log and any tlog-tiles
client (Go's sumdb/tlog, a witness, `creditflow monitor`) reads it from there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from creditflow.cli.common import EXIT_CONFIG, DbOption, console, err_console, fail, open_app
from creditflow.kernel.errors import DomainError

log_cli = typer.Typer(help="The log as C2SP checkpoints and tiles (c2sp.org/tlog-tiles).", no_args_is_help=True)

EXIT_MISMATCH = 1  # what DIR holds is not what the log says: verification failed


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (a web server serving DIR) sees the old file or the new
    one, never half of one: a temporary file in the same directory, flushed, then renamed over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _refuse(message: str, code: int) -> NoReturn:
    err_console.print(f"[red]error[/red]: {message}", soft_wrap=True)
    raise typer.Exit(code)


def _check_same_log(directory: Path, origin: str, vkey: str, size: int) -> None:
    """Refuse a DIR whose checkpoint is another log's (origin or key) or a larger tree than this log's."""
    from creditflow.ledger.note import NoteError, open_checkpoint, parse_checkpoint, parse_note, parse_vkey

    existing = directory / "checkpoint"
    if not existing.exists():
        return
    data = existing.read_bytes()
    try:
        held = parse_checkpoint(parse_note(data).text)
    except NoteError as exc:
        _refuse(f"{existing} is not a checkpoint ({exc}): DIR holds something else; choose another", EXIT_CONFIG)
    if held.origin != origin:
        _refuse(
            f"{directory} holds the log {held.origin!r}, not this one ({origin!r}): export into another directory",
            EXIT_CONFIG,
        )
    try:
        open_checkpoint(data, parse_vkey(vkey))
    except NoteError:
        _refuse(
            f"{directory} holds a checkpoint of {origin!r} that this log's key did not sign: another log with the "
            "same origin; export into another directory",
            EXIT_CONFIG,
        )
    if held.size > size:
        _refuse(
            f"{directory} holds a checkpoint of size {held.size}, larger than this log ({size}): a different history",
            EXIT_MISMATCH,
        )


def _write_all(
    directory: Path, items: list[tuple[str, Callable[[], bytes]]], advance: Callable[[], None]
) -> tuple[int, int]:
    """Write each (path, read) whose file is absent; check an existing one byte for byte (tiles are
    immutable, so a differing file is corruption or another log's). Returns (written, already there)."""
    written = kept = 0
    for rel, read in items:
        data = read()
        target = directory / rel
        if target.exists():
            if target.read_bytes() != data:
                _refuse(
                    f"{target} differs from the log's {rel}: a tile never changes, so DIR is corrupt or "
                    "another log's; remove the file (or export into another directory)",
                    EXIT_MISMATCH,
                )
            kept += 1
        else:
            _atomic_write(target, data)
            written += 1
        advance()
    return written, kept


def _self_check(directory: Path, size: int, root: bytes, bundles: bool) -> None:
    """Read DIR back as a client would: every tile checked against the checkpoint's root, every bundle's
    entries against the level-0 tiles. What was written (or kept) is what a mirror will serve."""
    from creditflow.ledger import tiles

    reader = tiles.TileHashReader(size, root, lambda rel: (directory / rel).read_bytes())
    try:
        reader.leaf_hashes(0, size)  # every level-0 tile, hence every tile above it, checked
        if bundles:
            for ref in tiles.bundles_for_size(size):
                reader.check_bundle(ref, (directory / ref.path).read_bytes())
    except (tiles.TileError, OSError) as exc:
        _refuse(f"the exported tiles do not check against the checkpoint: {exc}", EXIT_MISMATCH)


@log_cli.command("export-tiles")
def export_tiles(
    directory: Annotated[Path, typer.Argument(help="where to write checkpoint and tile/... (created if absent)")],
    db: DbOption = None,
    entries: Annotated[
        bool,
        typer.Option(
            "--entries", help="Also write the entry bundles (tile/entries/...). They name parties and amounts."
        ),
    ] = False,
) -> None:
    """Write the checkpoint and every tile of the current tree into DIR, with the paths `/log/` serves, so a
    static web server or an object store mirrors the log. Safe to re-run: files are written atomically, tiles
    already there are checked, the checkpoint is written last. Refuses a DIR that holds another log."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from creditflow.ledger import tiles

    if entries:
        err_console.print(
            "[yellow]warning[/yellow]: entry bundles name parties and amounts: serve this directory only to the "
            "operator and the auditor, never publicly",
            soft_wrap=True,
        )
    with open_app(db) as app:
        server = app.tiles
        try:
            _size, note = server.checkpoint()
            checkpoint = server.checkpoint_body(note)
            size = checkpoint.size
            _check_same_log(directory, server.origin, app.checkpoints.vkey, size)
            items: list[tuple[str, Callable[[], bytes]]] = [
                (ref.path, partial(server.tile, ref, size)) for ref in tiles.tiles_for_size(size)
            ]
            if entries:
                items += [(ref.path, partial(server.bundle, ref, size)) for ref in tiles.bundles_for_size(size)]
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            ) as progress:
                task = progress.add_task("writing tiles", total=len(items))
                written, kept = _write_all(directory, items, lambda: progress.advance(task))
        except DomainError as exc:
            fail(exc)
    _self_check(directory, size, checkpoint.root_hash, entries)
    _atomic_write(directory / "checkpoint", note.encode())
    console.print(
        f"exported [bold]{checkpoint.origin}[/bold] at size {size}: {written} file(s) written, {kept} already there "
        f"and unchanged; checkpoint written last",
        soft_wrap=True,
    )
