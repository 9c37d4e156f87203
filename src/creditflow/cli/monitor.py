"""`creditflow monitor`: an auditor's daily check of a creditflow log over its tlog-tiles API (or a mirror on disk).

The work is `creditflow.ledger.monitor` (standard library only); this module brings HTTP (httpx), the options,
the progress bar and the exit codes: 0 all good; 1 network, access or state-directory trouble (nothing proven,
the old state kept); 2 a fork, a shrink, or data that does not match what the log signed; 3 an entry breaks
the ledger's rules. (Like every command, a malformed command line also exits 2, with a usage message.)
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from creditflow.cli.common import console, err_console
from creditflow.ledger.monitor import (
    EXIT_ERROR,
    EXIT_OK,
    Fetch,
    FetchError,
    MonitorError,
    RoundResult,
    StateDir,
    make_policy,
    run_round,
)

TOKEN_ENV = "CREDITFLOW_MONITOR_TOKEN"


class _Source:
    """``fetch(path)`` for a base URL (paths under ``BASE/log/``) or a directory written by `log export-tiles`."""

    def __init__(self, url: str, token: str | None, timeout: float):
        self.url = url
        self.token = token
        self._client: httpx.Client | None = None
        self._dir: Path | None = None
        if url.startswith(("http://", "https://")):
            self._client = httpx.Client(base_url=url.rstrip("/") + "/log/", timeout=timeout, follow_redirects=False)
        else:
            self._dir = Path(url.removeprefix("file://"))
            if not self._dir.is_dir():
                raise MonitorError(f"{url} is neither an http(s) URL nor a directory")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def fetch(self, path: str) -> bytes:
        return self._get(path, None)

    def fetch_entries(self, path: str) -> bytes:
        return self._get(path, self.token)

    def _get(self, path: str, token: str | None) -> bytes:
        if self._dir is not None:
            try:
                return (self._dir / path).read_bytes()
            except OSError as exc:
                raise FetchError(path, exc.strerror or str(exc)) from None
        assert self._client is not None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self._client.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise FetchError(path, f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            code = ""
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                code = f" ({response.json().get('code', '')})"
            raise FetchError(path, f"HTTP {response.status_code}{code}", response.status_code)
        return response.content


def monitor(
    url: Annotated[
        str, typer.Option("--url", help="The log's base URL (tiles under BASE/log/), or a mirror directory")
    ],
    state: Annotated[Path, typer.Option("--state", help="The monitor's state directory (created on the first run)")],
    log_vkey: Annotated[
        str | None,
        typer.Option("--log-vkey", help="The log's note verifier key (`creditflow log-key --vkey`); first run only"),
    ] = None,
    witness: Annotated[
        list[str] | None, typer.Option("--witness", help="A trusted witness's cosigner vkey (repeatable)")
    ] = None,
    quorum: Annotated[int | None, typer.Option("--quorum", help="How many trusted witnesses must cosign")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            show_envvar=True,
            help="An operator's or auditor's API key: entry bundles, to replay the new entries (never printed)",
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit (the default)")] = True,
    every: Annotated[
        float | None, typer.Option("--every", help="Run a round every SECONDS; stop at the first alert", min=1)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print each round's summary as JSON")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per HTTP request")] = 30.0,
) -> None:
    """Check that the log only grew since the last run: verify the new checkpoint, prove it consistent with the
    last one from the tiles and, with --token, replay only the new entries under the ledger's rules."""
    del once  # --once is the default; --every overrides it
    try:
        state_dir = _prepared(state, log_vkey, witness, quorum)
        source = _Source(url, token, timeout)
    except MonitorError as exc:
        err_console.print(f"[red]error[/red]: {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    try:
        code = _loop(state_dir, source, every, as_json)
    finally:
        source.close()
    raise typer.Exit(code)


def _prepared(state: Path, log_vkey: str | None, witness: list[str] | None, quorum: int | None) -> StateDir:
    """The state directory with its policy: written on the first run, checked (and witnesses updated) later."""
    state_dir = StateDir(state)
    if not state_dir.exists:
        if not log_vkey:
            raise MonitorError(f"{state} holds no monitor state yet: the first run needs --log-vkey")
        witnesses = witness or []
        state_dir.init(make_policy(log_vkey, witnesses, quorum if quorum is not None else len(witnesses)))
        return state_dir
    policy = state_dir.policy()
    if log_vkey and log_vkey.strip() != policy.log_key.encode():
        raise MonitorError(f"{state} watches another log ({policy.log_key.name}); use another --state")
    if witness is not None or quorum is not None:
        witnesses = witness if witness is not None else [w.encode() for w in policy.witnesses]
        wanted = quorum if quorum is not None else min(policy.quorum, len(witnesses))
        state_dir.init(make_policy(policy.log_key.encode(), witnesses, wanted))
    return state_dir


def _loop(state_dir: StateDir, source: _Source, every: float | None, as_json: bool) -> int:
    while True:
        code = _one(state_dir, source, as_json)
        if every is None or code not in (EXIT_OK, EXIT_ERROR):
            return code
        time.sleep(every)


def _one(state_dir: StateDir, source: _Source, as_json: bool) -> int:
    fetch_entries: Fetch | None = source.fetch_entries if source.token else None
    try:
        with state_dir.locked():
            if as_json:
                result = run_round(state_dir, source.fetch, fetch_entries=fetch_entries, url=source.url)
            else:
                result = _with_progress(state_dir, source, fetch_entries)
    except FetchError as exc:
        if exc.status in (401, 403) and exc.path.startswith("tile/entries/"):
            what = "the token was refused for entry bundles (it must be an operator's or auditor's API key)"
        else:
            what = f"cannot fetch {exc}"
        err_console.print(f"[red]error[/red]: {what}; nothing proven, the state is unchanged", soft_wrap=True)
        if as_json:
            print(json.dumps({"ok": False, "error": what}))
        return EXIT_ERROR
    except (MonitorError, OSError, sqlite3.Error) as exc:
        err_console.print(f"[red]error[/red]: {exc}", soft_wrap=True)
        return EXIT_ERROR
    _report(result, state_dir, as_json)
    return result.exit_code


def _with_progress(state_dir: StateDir, source: _Source, fetch_entries: Fetch | None) -> RoundResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("replaying new entries", total=None)

        def tick(done: int, total: int) -> None:
            if done % 500 == 0 or done == total:
                bar.update(task, completed=done, total=total)

        return run_round(state_dir, source.fetch, fetch_entries=fetch_entries, url=source.url, progress=tick)


def _report(result: RoundResult, state_dir: StateDir, as_json: bool) -> None:
    if result.alert is not None:
        where = state_dir.path / "alerts.jsonl"
        err_console.print(
            f"[red bold]ALERT {result.alert.kind.upper()}[/red bold]: {result.alert.message} (recorded in {where})",
            soft_wrap=True,
            highlight=False,
        )
    for note in result.notes:
        err_console.print(f"[yellow]note[/yellow]: {note}", soft_wrap=True)
    if as_json:
        print(json.dumps(result.to_json()))
    elif result.alert is None:
        old = "nothing" if result.old_size is None else f"{result.old_size}"
        replayed = f", {result.entries_replayed} new entries replayed" if result.entry_access else ""
        console.print(
            f"[green bold]log consistent[/green bold]: size {old} -> {result.new_size}{replayed}; "
            f"{result.tiles_fetched} tiles, {result.bundles_fetched} bundles fetched in {result.seconds:.2f} s",
            soft_wrap=True,
        )
