"""The monitor's round (`creditflow.ledger.monitor.run_round`) against a log served from memory: what it proves,
what it alerts on, what it costs and what it keeps. Entries here are opaque bytes, so entry replay is covered
by tests/integration/test_monitor.py on a real log; here the rules only see that they are not entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from creditflow.ledger import tiles
from creditflow.ledger.monitor import (
    BAD_CHECKPOINT,
    BAD_ENTRIES,
    BAD_TILES,
    EXIT_FORK,
    EXIT_RULES,
    FORK,
    RULE_VIOLATION,
    SHRINK,
    FetchError,
    MonitorError,
    StateDir,
    make_policy,
    run_round,
)
from creditflow.ledger.note import COSIGNATURE_V1, NoteSigner
from creditflow.ledger.signing import Signer
from monitor_log import MemoryLog

ORIGIN = "creditflow.example/log"


def entries(n: int, tag: bytes = b"e") -> list[bytes]:
    return [tag + b" entry %d" % i for i in range(n)]


def fresh(tmp_path: Path, log: MemoryLog, witnesses: tuple[str, ...] = (), quorum: int = 0) -> StateDir:
    state = StateDir(tmp_path / "state")
    state.init(make_policy(log.vkey, list(witnesses), quorum))
    return state


def alerts(state: StateDir) -> list[dict[str, object]]:
    path = state.path / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog(ORIGIN, Signer(b"\x01" * 32, "log-1"), entries(1000))


def test_first_run_keeps_the_checkpoint_and_later_growth_is_proven_from_few_tiles(
    tmp_path: Path, log: MemoryLog
) -> None:
    log.sign(700)
    state = fresh(tmp_path, log)
    first = run_round(state, log.fetch)
    assert first.alert is None and first.old_size is None and first.new_size == 700
    assert "consistency only" in first.notes[0]
    assert state.checkpoint() is not None and state.checkpoint()[1].size == 700  # type: ignore[index]

    log.paths.clear()
    log.sign(1000)
    second = run_round(state, log.fetch)
    assert second.alert is None and (second.old_size, second.new_size) == (700, 1000)
    # the right edge of the new tree (its partial tiles) and the tiles holding the proof's nodes: a handful,
    # whatever the log's size
    assert second.tiles_fetched == len(log.hash_tiles()) <= 6
    assert log.bundles() == []
    assert state.checkpoint()[1].size == 1000  # type: ignore[index]
    assert not list(state.path.glob(".*.tmp")), "no temporary file is left behind"
    assert alerts(state) == []


def test_same_size_other_root_is_a_fork_with_both_signed_checkpoints_as_evidence(
    tmp_path: Path, log: MemoryLog
) -> None:
    state = fresh(tmp_path, log)
    run_round(state, log.fetch, url="https://log.example")
    before = (state.path / "checkpoint").read_bytes()
    log.entries[500] = b"rewritten"
    log.sign()
    result = run_round(state, log.fetch, url="https://log.example")
    assert result.alert is not None and result.alert.kind == FORK and result.exit_code == EXIT_FORK
    (row,) = alerts(state)
    assert row["kind"] == FORK and row["url"] == "https://log.example"
    assert row["old_checkpoint"] == before.decode() and row["new_checkpoint"] == log.checkpoint
    assert (state.path / "checkpoint").read_bytes() == before, "the verified checkpoint is kept"


def test_a_larger_tree_that_rewrote_history_is_a_fork(tmp_path: Path, log: MemoryLog) -> None:
    log.sign(600)
    state = fresh(tmp_path, log)
    run_round(state, log.fetch)
    log.entries[10] = b"rewritten"
    log.sign(1000)
    result = run_round(state, log.fetch)
    assert result.alert is not None and result.alert.kind == FORK
    assert "does not extend" in result.alert.message
    assert state.checkpoint()[1].size == 600  # type: ignore[index]


def test_a_smaller_tree_is_a_shrink(tmp_path: Path, log: MemoryLog) -> None:
    state = fresh(tmp_path, log)
    run_round(state, log.fetch)
    log.sign(999)
    result = run_round(state, log.fetch)
    assert result.alert is not None and result.alert.kind == SHRINK and result.exit_code == EXIT_FORK
    assert [a["kind"] for a in alerts(state)] == [SHRINK]
    assert state.checkpoint()[1].size == 1000  # type: ignore[index]


@pytest.mark.parametrize("which", ["partial", "full"])
def test_a_tile_that_does_not_match_the_signed_root_is_caught(tmp_path: Path, log: MemoryLog, which: str) -> None:
    log.sign(300)
    state = fresh(tmp_path, log)
    run_round(state, log.fetch)
    log.sign(1000)
    path = tiles.tile_path(0, 3, 1000 - 768) if which == "partial" else tiles.tile_path(0, 1)
    log.tamper[path] = lambda data: bytes([data[0] ^ 1]) + data[1:]
    result = run_round(state, log.fetch)
    assert result.alert is not None and result.alert.kind == BAD_TILES, result
    assert state.checkpoint()[1].size == 300  # type: ignore[index]


def test_a_checkpoint_not_signed_by_the_trusted_key_is_refused(tmp_path: Path, log: MemoryLog) -> None:
    state = fresh(tmp_path, log)
    impostor = MemoryLog(ORIGIN, Signer(b"\x02" * 32, "log-1"), entries(1000))
    result = run_round(state, impostor.fetch)
    assert result.alert is not None and result.alert.kind == BAD_CHECKPOINT
    assert "not signed by the trusted log key" in result.alert.message
    assert state.checkpoint() is None


def test_the_witness_quorum_is_the_policy(tmp_path: Path) -> None:
    w1 = NoteSigner("w1.example", Signer(b"\x05" * 32, "w"), COSIGNATURE_V1)
    w2 = NoteSigner("w2.example", Signer(b"\x06" * 32, "w"), COSIGNATURE_V1)
    log = MemoryLog(ORIGIN, Signer(b"\x01" * 32, "log-1"), entries(10), witnesses=(w1,))
    keys = (w1.verifier.encode(), w2.verifier.encode())
    strict = fresh(tmp_path / "a", log, keys, quorum=2)
    result = run_round(strict, log.fetch)
    assert result.alert is not None and result.alert.kind == BAD_CHECKPOINT and "policy needs 2" in result.alert.message
    lenient = fresh(tmp_path / "b", log, keys, quorum=1)
    assert run_round(lenient, log.fetch).alert is None
    with pytest.raises(MonitorError, match="quorum"):
        make_policy(log.vkey, list(keys), 3)
    with pytest.raises(MonitorError, match="cosignature/v1"):
        make_policy(log.vkey, [log.vkey], 1)


def test_a_network_error_proves_nothing_and_keeps_the_state(tmp_path: Path, log: MemoryLog) -> None:
    log.sign(500)
    state = fresh(tmp_path, log)
    run_round(state, log.fetch)
    before = sorted((p.name, p.read_bytes()) for p in state.path.iterdir() if p.is_file())
    log.sign(1000)

    def flaky(path: str) -> bytes:
        if path.startswith("tile/1/"):
            raise FetchError(path, "connection reset")
        return log.fetch(path)

    with pytest.raises(FetchError):
        run_round(state, flaky)
    assert sorted((p.name, p.read_bytes()) for p in state.path.iterdir() if p.is_file()) == before


def test_entries_that_are_not_the_signed_leaves_or_not_entries_at_all_are_reported(
    tmp_path: Path, log: MemoryLog
) -> None:
    state = fresh(tmp_path, log)
    log.tamper[tiles.entries_path(0)] = lambda data: data.replace(b"e entry 0", b"e entry X", 1)
    result = run_round(state, log.fetch, fetch_entries=log.fetch)  # checked before it is replayed
    assert result.alert is not None and result.alert.kind == BAD_ENTRIES and "entry 0 " in result.alert.message
    log.tamper.clear()
    other = fresh(tmp_path / "b", log)
    result = run_round(other, log.fetch, fetch_entries=log.fetch)
    assert result.alert is not None and result.alert.kind == RULE_VIOLATION and result.exit_code == EXIT_RULES
    assert "log entry 0" in result.alert.message
    assert other.checkpoint() is not None, "the tree was verified: its checkpoint is kept, the replay is not"
    assert other.snapshot().size == 0  # type: ignore[union-attr]  # nothing of the replay was committed


def test_the_monitor_round_and_the_incremental_replay_need_only_the_standard_library() -> None:
    """``python -S`` (no site-packages: no PyNaCl, no httpx) imports the round and runs on the pure Ed25519."""
    import os
    import subprocess
    import sys

    import creditflow

    src = str(Path(creditflow.__file__).resolve().parent.parent)
    probe = (
        "import sys\n"
        "import creditflow.ledger.monitor, creditflow.ledger.replay_store, creditflow.ledger.verifier\n"
        "outside = sorted(m for m in {n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names)"
        " if m not in ('creditflow', '__main__'))\n"
        "print(outside)\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def mirror(log: MemoryLog, directory: Path) -> Path:
    """Write ``log`` as `log export-tiles --entries` would: checkpoint, hash tiles, bundles."""
    for ref in [*tiles.tiles_for_size(log.size), *tiles.bundles_for_size(log.size)]:
        path = directory / ref.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(log.fetch(ref.path))
    (directory / "checkpoint").write_text(log.checkpoint)
    return directory


def test_the_command_runs_rounds_every_n_seconds_until_the_first_alert(
    tmp_path: Path, log: MemoryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from conftest import CLI_SECRETS_ENV
    from creditflow.cli import monitor as command
    from creditflow.cli.main import cli

    env = {**CLI_SECRETS_ENV, "CREDITFLOW_MONITOR_TOKEN": ""}
    log.sign(600)
    source = mirror(log, tmp_path / "mirror")
    state = tmp_path / "state"
    args = ["monitor", "--url", str(source), "--state", str(state)]
    no_key = CliRunner().invoke(cli, args, env=env)
    assert no_key.exit_code == 1 and "the first run needs --log-vkey" in no_key.stderr
    assert CliRunner().invoke(cli, [*args, "--log-vkey", log.vkey], env=env).exit_code == 0
    other = NoteSigner(ORIGIN, Signer(b"\x09" * 32, "log-1")).verifier.encode()
    assert "watches another log" in CliRunner().invoke(cli, [*args, "--log-vkey", other], env=env).stderr

    log.sign(1000)
    mirror(log, source)
    sleeps: list[float] = []

    def between_rounds(seconds: float) -> None:  # the log forks while the monitor sleeps
        sleeps.append(seconds)
        log.entries[5] = b"rewritten"
        log.sign(1000)
        mirror(log, source)

    monkeypatch.setattr(command.time, "sleep", between_rounds)
    looped = CliRunner().invoke(cli, [*args, "--every", "60", "--json"], env=env)
    assert looped.exit_code == EXIT_FORK, looped.output
    assert sleeps == [60.0]
    rounds = [json.loads(line) for line in looped.stdout.splitlines()]
    assert [r["ok"] for r in rounds] == [True, False] and rounds[1]["alert"]["kind"] == FORK
    assert "ALERT FORK" in looped.stderr


def test_a_damaged_replay_state_stops_the_round_without_writing(tmp_path: Path, log: MemoryLog) -> None:
    log.sign(500)
    state = fresh(tmp_path, log)
    assert run_round(state, log.fetch, fetch_entries=log.fetch).alert is not None  # opaque entries: a violation
    (state.path / "replay.sqlite").write_bytes(b"not a database" * 100)
    before = (state.path / "checkpoint").read_bytes()
    log.sign(1000)
    with pytest.raises(MonitorError, match=r"replay\.sqlite"):
        run_round(state, log.fetch, fetch_entries=log.fetch)
    assert (state.path / "checkpoint").read_bytes() == before
