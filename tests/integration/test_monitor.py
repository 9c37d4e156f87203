"""`creditflow monitor` against the real app behind a uvicorn server on a free port, on SQLite and PostgreSQL.

The server is wrapped in an ASGI recorder that counts every path the monitor asks for (the cost is counted in
requests, never timed) and can tamper with a response body. A fork is a second database holding the same log
key (the platform signing another history); a shrink is the same twin, shorter."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from conftest import CLI_SECRETS_ENV, PG_URL, START_MS, _pg_database, make_settings, onboard
from creditflow.bootstrap import App, build, resolve_secrets
from creditflow.cli.main import cli
from creditflow.http.app import create_app
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.engine import make_engine, migrate
from creditflow.ledger import merkle
from creditflow.ledger.custody import LogKeyCustody
from creditflow.ledger.entries import entry_bytes, parse_entry
from creditflow.ledger.monitor import RULE_VIOLATION, StateDir, run_round
from creditflow.ledger.replay_state import ReplayState, encode_snapshot
from creditflow.ledger.verifier import replay
from monitor_log import MemoryLog, log_entries, more_entries, varied_log

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class Recorder:
    """ASGI middleware: records request paths; ``tamper[path]`` rewrites that response's body."""

    def __init__(self, app: ASGI):
        self.app = app
        self.paths: list[str] = []
        self.tamper: dict[str, Callable[[bytes], bytes]] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.paths.append(scope["path"])
        change = self.tamper.get(scope["path"])
        if change is None:
            await self.app(scope, receive, send)
            return
        start: Message = {}
        body = bytearray()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                new = change(bytes(body))
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(new)).encode())]})
                await send({"type": "http.response.body", "body": new})

        await self.app(scope, receive, capture)

    def bundles(self) -> list[str]:
        return [p for p in self.paths if p.startswith("/log/tile/entries/")]

    def hash_tiles(self) -> list[str]:
        return [p for p in self.paths if p.startswith("/log/tile/") and not p.startswith("/log/tile/entries/")]


@contextmanager
def served(app: App) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(create_app(app))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        recorder, log_config=None, log_level="warning", access_log=False, lifespan="off", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="monitor-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "the server thread died while starting"
            assert time.monotonic() < deadline, "the server did not start in 20 s"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def run_monitor(*args: str, token: str | None = None) -> Result:
    env = {**CLI_SECRETS_ENV, "CREDITFLOW_MONITOR_TOKEN": token} if token else dict(CLI_SECRETS_ENV)
    if not token:
        env["CREDITFLOW_MONITOR_TOKEN"] = ""
    return CliRunner().invoke(cli, ["monitor", *args], env=env)


def summary(result: Result) -> dict[str, Any]:
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def alerts(state: Path) -> list[dict[str, Any]]:
    path = state / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def full_snapshot(app: App) -> bytes:
    """What a full replay of the whole log reaches, as a snapshot: the monitor's must be byte-identical."""
    entries = list(log_entries(app))
    result = replay(entries, app.log_keys)
    result.state.keep_events = False
    frontier = merkle.CompactRange.from_fetch(result.tree.size, result.tree.fetch)
    return encode_snapshot(ReplayState(result.state, frontier, result.op_ids, result.last_ts_ms))


def test_daily_rounds_replay_only_the_new_entries(app: App, tmp_path: Path) -> None:
    varied_log(app)
    more_entries(app, 240)  # past one full tile of 256
    token = app.access.create_key("auditor")
    state = tmp_path / "state"
    with served(app) as (url, seen):
        first = run_monitor(
            "--url", url, "--state", str(state), "--log-vkey", app.checkpoints.vkey, "--json", token=token
        )
        assert first.exit_code == 0, first.output
        size = app.tiles.checkpoint()[0]
        assert size > 256
        one = summary(first)
        assert (one["old_size"], one["new_size"], one["entries_replayed"]) == (None, size, size)
        assert one["bundles_fetched"] == 2 == len(seen.bundles())  # the first run reads the whole log, once
        assert token not in first.output

        more_entries(app, 20)
        seen.paths.clear()
        second = run_monitor("--url", url, "--state", str(state), "--json", token=token)
        assert second.exit_code == 0, second.output
        two = summary(second)
        assert (two["old_size"], two["new_size"], two["entries_replayed"]) == (size, size + 20, 20)
        # only the bundle holding the 20 new entries; the full first bundle is never fetched again
        assert seen.bundles() == [f"/log/tile/entries/001.p/{size + 20 - 256}"]
        assert two["bundles_fetched"] == 1 and two["tiles_fetched"] == len(seen.hash_tiles()) <= 4
        assert two["replayed_to"] == size + 20

        seen.paths.clear()
        third = run_monitor("--url", url, "--state", str(state), "--json", token=token)
        assert summary(third)["entries_replayed"] == 0 and seen.bundles() == [] and seen.hash_tiles() == []
    # the rows the rounds committed, exported, are byte for byte the canonical snapshot of a full replay
    assert encode_snapshot(StateDir(state).snapshot()) == full_snapshot(app)  # type: ignore[arg-type]
    assert alerts(state) == []


def test_without_entry_access_it_proves_consistency_only_and_says_so(app: App, tmp_path: Path) -> None:
    onboard(app)
    state = tmp_path / "state"
    with served(app) as (url, seen):
        first = run_monitor("--url", url, "--state", str(state), "--log-vkey", app.checkpoints.vkey)
        assert first.exit_code == 0, first.output
        assert "no entry access: consistency only" in first.stderr
        more_entries(app, 10)
        second = run_monitor("--url", url, "--state", str(state), "--json")
        assert second.exit_code == 0 and summary(second)["entry_access"] is False
        assert "consistency only" in second.stderr
        assert seen.bundles() == [] and not (state / "replay.sqlite").exists()

        supplier = app.access.create_key("factory")  # not an overseer: bundles are refused
        before = (state / "checkpoint").read_bytes()
        more_entries(app, 2)
        refused = run_monitor("--url", url, "--state", str(state), token=supplier)
        assert refused.exit_code == 1 and "token was refused" in refused.stderr
        assert supplier not in refused.output
        assert (state / "checkpoint").read_bytes() == before, "nothing proven: the old state is kept"


def _twin(app: App, url: str) -> App:
    """Another database on the same backend holding the same log key: the platform signing a second history."""
    settings = make_settings(url)
    engine = make_engine(url)
    try:
        migrate(engine)
        custody = LogKeyCustody(
            engine, resolve_secrets(settings).log_secret, settings.kdf_opslimit, settings.kdf_memlimit_bytes
        )
        with engine.begin() as conn:
            custody.store(conn, app.log_signer, START_MS)
    finally:
        engine.dispose()
    twin = build(settings, clock=ManualClock(START_MS))
    assert twin.checkpoints.vkey == app.checkpoints.vkey
    return twin


@pytest.fixture
def twin_url(store_url: str, tmp_path: Path) -> Iterator[str]:
    if store_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'twin.db'}"
    else:
        assert PG_URL is not None
        yield from _pg_database()


def test_a_fork_and_a_shrink_signed_by_the_log_are_alerts(app: App, twin_url: str, tmp_path: Path) -> None:
    onboard(app)
    more_entries(app, 20)
    size = app.tiles.checkpoint()[0]
    state = tmp_path / "state"
    with served(app) as (url, _seen):
        ok = run_monitor("--url", url, "--state", str(state), "--log-vkey", app.checkpoints.vkey)
        assert ok.exit_code == 0, ok.output
    verified = (state / "checkpoint").read_text()
    with _twin(app, twin_url) as twin:
        onboard(twin)
        more_entries(twin, 10)
        assert twin.tiles.checkpoint()[0] < size
        with served(twin) as (other, _):
            shrink = run_monitor("--url", other, "--state", str(state))
            assert shrink.exit_code == 2 and "ALERT SHRINK" in shrink.stderr
            more_entries(twin, size - twin.tiles.checkpoint()[0])
            assert twin.tiles.checkpoint()[0] == size
            same_size = run_monitor("--url", other, "--state", str(state))
            assert same_size.exit_code == 2 and "ALERT FORK" in same_size.stderr
            more_entries(twin, 40)
            grown = run_monitor("--url", other, "--state", str(state), "--json")
            assert grown.exit_code == 2 and "does not extend" in grown.stderr
            assert summary(grown)["alert"]["kind"] == "fork"
    kinds = [a["kind"] for a in alerts(state)]
    assert kinds == ["shrink", "fork", "fork"]
    # the evidence: two checkpoints of one size, both verifying under the log's key
    evidence = alerts(state)[1]
    assert evidence["old_checkpoint"] == verified and evidence["new_checkpoint"] != verified
    assert (state / "checkpoint").read_text() == verified, "the last verified checkpoint is kept"


def test_a_tampered_entry_bundle_is_detected(app: App, tmp_path: Path) -> None:
    onboard(app)
    token = app.access.create_key("operator")
    state = tmp_path / "state"
    with served(app) as (url, seen):
        first = run_monitor("--url", url, "--state", str(state), "--log-vkey", app.checkpoints.vkey, token=token)
        assert first.exit_code == 0, first.output
        old = app.tiles.checkpoint()[0]
        more_entries(app, 6)
        new = app.tiles.checkpoint()[0]
        seen.tamper[f"/log/tile/entries/000.p/{new}"] = lambda data: data.replace(
            b'"amount_minor":1,', b'"amount_minor":2,'
        )
        bad = run_monitor("--url", url, "--state", str(state), "--json", token=token)
    assert bad.exit_code == 2, bad.output
    assert "ALERT BAD_ENTRIES" in bad.stderr and f"entry {old + 2} " in bad.stderr
    assert [a["kind"] for a in alerts(state)] == ["bad_entries"]
    assert StateDir(state).snapshot().size == old  # type: ignore[union-attr]


def test_an_entry_that_breaks_the_rules_is_a_rule_violation(app: App, tmp_path: Path) -> None:
    """The platform signs a tree holding a replayed operation (every hash right, the history wrong): only the
    replay sees it. Served from memory with the log's real key and real entries, so the tree itself verifies."""
    onboard(app)
    more_entries(app, 10)
    entries = [data for _seq, data in log_entries(app)]
    forged_log = MemoryLog(app.settings.origin, app.log_signer, entries)
    state = StateDir(tmp_path / "state")
    from creditflow.ledger.monitor import make_policy

    state.init(make_policy(app.checkpoints.vkey, [], 0))
    assert run_round(state, forged_log.fetch, fetch_entries=forged_log.fetch).alert is None
    again = parse_entry(entries[-2])
    forged_log.entries.append(entry_bytes(again.signed, len(entries), parse_entry(entries[-1]).ts_ms))
    forged_log.sign()
    result = run_round(state, forged_log.fetch, fetch_entries=forged_log.fetch)
    assert result.alert is not None and result.alert.kind == RULE_VIOLATION and result.exit_code == 3
    assert "appears twice" in result.alert.message and f"log entry {len(entries)}" in result.alert.message
    assert state.checkpoint()[1].size == len(entries) + 1  # type: ignore[index]  # the tree is consistent
    assert state.snapshot().size == len(entries)  # type: ignore[union-attr]  # the replay stops before it


def test_a_mirror_directory_and_a_dead_server(app: App, tmp_path: Path) -> None:
    """`log export-tiles DIR --entries` is a source too; an unreachable server exits 1 and changes nothing."""
    onboard(app)
    mirror = tmp_path / "mirror"
    env = {"CREDITFLOW_KDF_OPSLIMIT": "1", "CREDITFLOW_KDF_MEMLIMIT_BYTES": "8388608", **CLI_SECRETS_ENV}
    export = CliRunner().invoke(
        cli, ["log", "export-tiles", str(mirror), "--entries", "--db", app.settings.db_url], env=env
    )
    assert export.exit_code == 0, export.output
    state = tmp_path / "state"
    first = run_monitor(
        "--url", str(mirror), "--state", str(state), "--log-vkey", app.checkpoints.vkey, "--json", token="unused"
    )
    assert first.exit_code == 0, first.output
    assert summary(first)["entries_replayed"] == app.tiles.checkpoint()[0]
    before = sorted((p.name, p.read_bytes()) for p in state.iterdir() if p.is_file())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    down = run_monitor("--url", dead, "--state", str(state), "--json")
    assert down.exit_code == 1 and "nothing proven" in down.stderr
    assert summary(down)["ok"] is False
    assert sorted((p.name, p.read_bytes()) for p in state.iterdir() if p.is_file()) == before
