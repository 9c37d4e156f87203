"""`creditflow witness init|add-log|serve`: the key made once (mode 0600, never overwritten), logs checked before they
are trusted, clear errors without tracebacks, and a real witness process killed with SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import stat
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from creditflow.cli.main import cli
from creditflow.ledger.note import COSIGNATURE_V1, parse_vkey
from creditflow.witness.state import StateDir
from witness_harness import MemoryLog, start_witness


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["witness", *args])


def test_init_prints_a_cosigner_vkey_and_never_overwrites_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    result = run("init", "--name", "witness.test/w1", "--state", str(folder))
    assert result.exit_code == 0, result.output
    vkey = parse_vkey(result.stdout.strip().splitlines()[-1])
    assert vkey.sig_type == COSIGNATURE_V1 and vkey.name == "witness.test/w1"
    key_file = folder / "cosigner.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    before = key_file.read_bytes()
    again = run("init", "--name", "witness.test/w2", "--state", str(folder))
    assert again.exit_code == 3 and "never overwritten" in again.output
    assert "Traceback" not in again.output
    assert key_file.read_bytes() == before
    assert StateDir(folder).cosigner().verifier == vkey


def test_init_refuses_a_bad_name(tmp_path: Path) -> None:
    result = run("init", "--name", "has space", "--state", str(tmp_path / "w"))
    assert result.exit_code == 3 and "name" in result.output
    assert not (tmp_path / "w" / "cosigner.key").exists()


def test_add_log_checks_the_key_is_a_log_key_named_after_the_origin(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    assert run("init", "--name", "witness.test/w1", "--state", str(folder)).exit_code == 0
    log = MemoryLog()
    cosigner_vkey = StateDir(folder).cosigner().verifier.encode()
    for origin, vkey, why in [
        (log.origin, cosigner_vkey, "type 0x01"),  # a cosigner key is not a log key
        ("other.test/log", log.vkey, "named"),  # the key's name is not the origin
        (log.origin, log.vkey[:-4] + "AAAA", "verifier key"),  # a broken vkey
    ]:
        result = run("add-log", "--state", str(folder), "--origin", origin, "--vkey", vkey)
        assert result.exit_code == 3, result.output
        assert why in result.output and "Traceback" not in result.output
    assert StateDir(folder).logs() == {}
    ok = run("add-log", "--state", str(folder), "--origin", log.origin, "--vkey", log.vkey)
    assert ok.exit_code == 0, ok.output
    assert StateDir(folder).logs() == {log.origin: parse_vkey(log.vkey)}
    # the same again is fine; another key for the same origin is refused
    assert run("add-log", "--state", str(folder), "--origin", log.origin, "--vkey", log.vkey).exit_code == 0
    other = MemoryLog(key_seed=9)
    refused = run("add-log", "--state", str(folder), "--origin", log.origin, "--vkey", other.vkey)
    assert refused.exit_code == 3 and "another key" in refused.output


def test_commands_on_a_folder_that_is_not_a_witness_say_so(tmp_path: Path) -> None:
    log = MemoryLog()
    for args in (
        ["add-log", "--state", str(tmp_path), "--origin", log.origin, "--vkey", log.vkey],
        ["serve", "--state", str(tmp_path), "--port", "1"],
    ):
        result = run(*args)
        assert result.exit_code == 3 and "witness init" in result.output, result.output
        assert "Traceback" not in result.output


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    StateDir.init(tmp_path / "w", "witness.test/w1")
    (tmp_path / "w" / "cosigner.key").chmod(0o644)
    result = run("serve", "--state", str(tmp_path / "w"), "--port", "1")
    assert result.exit_code == 3 and "chmod 600" in result.output


@pytest.mark.parametrize("kill_after", [5, 17])
def test_sigkill_mid_stream_leaves_the_last_answered_or_a_later_persisted_checkpoint(
    tmp_path: Path, kill_after: int
) -> None:
    """A real `creditflow witness serve` is killed with SIGKILL while the log streams checkpoints at it. After a
    restart it holds either the last checkpoint it answered for or one it persisted but never answered (never an
    older one, never a damaged file), and the log carries on from there."""
    folder = tmp_path / "w"
    log = MemoryLog()
    StateDir.init(folder, "witness.test/w1").add_log(log.origin, log.vkey)
    log.grow(400)
    process, url = start_witness(folder)
    answered, attempted, old = 0, [], 0
    try:
        with httpx.Client(timeout=10) as client:
            for size in range(1, 400):
                if len(attempted) == kill_after:
                    threading.Thread(target=os.kill, args=(process.pid, signal.SIGKILL)).start()
                attempted.append(size)
                try:
                    response = client.post(f"{url}/add-checkpoint", content=log.body(old, size))
                except httpx.HTTPError:
                    break
                assert response.status_code == 200, response.text
                answered = old = size
    finally:
        process.kill()
        process.wait(timeout=30)
    assert attempted[-1] < 399, "the kill did not interrupt the stream"
    held = StateDir(folder).cosigned(log.origin)  # parses: no half-written file
    assert held.checkpoint is not None and held.checkpoint == log.checkpoint(held.size)
    assert answered <= held.size <= attempted[-1]
    restarted, url = start_witness(folder)
    try:
        conflict = httpx.post(f"{url}/add-checkpoint", content=log.body(0, 399), timeout=10)
        assert conflict.status_code == 409 and conflict.text == f"{held.size}\n"
        assert httpx.post(f"{url}/add-checkpoint", content=log.body(held.size, 399), timeout=10).status_code == 200
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)


def test_two_witness_processes_on_one_directory_cosign_one_of_racing_checkpoints(tmp_path: Path) -> None:
    """Two real `witness serve` processes share a state directory: sixteen checkpoints claiming `old 0`, sent to
    both at once, get exactly one cosignature between them (the fcntl lock spans processes)."""
    folder = tmp_path / "w"
    log = MemoryLog()
    StateDir.init(folder, "witness.test/w1").add_log(log.origin, log.vkey)
    log.grow(17)
    bodies = {size: log.body(0, size) for size in range(1, 17)}
    first, url_a = start_witness(folder)
    second, url_b = start_witness(folder)
    results: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(len(bodies))

    def submit(size: int) -> None:
        barrier.wait()
        url = url_a if size % 2 else url_b
        results[size] = httpx.post(f"{url}/add-checkpoint", content=bodies[size], timeout=60)

    try:
        threads = [threading.Thread(target=submit, args=(s,)) for s in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=30)
    winners = [s for s, r in results.items() if r.status_code == 200]
    assert len(winners) == 1, {s: r.status_code for s, r in results.items()}
    assert all(r.text == f"{winners[0]}\n" for s, r in results.items() if s != winners[0])
    assert StateDir(folder).cosigned(log.origin).checkpoint == log.checkpoint(winners[0])
