"""Conformance against an independent implementation: the Go checksum database's own packages
(golang.org/x/mod/sumdb/note and .../tlog, Debian's golang-golang-x-mod-dev, built in GOPATH mode, nothing
downloaded) check the log as any outsider would: `tests/conformance/tlogcheck` opens the checkpoint with
the vkey that `creditflow log-key --vkey` prints, rebuilds the root from the tiles (tlog.TileHashReader,
which checks every tile), proves leaves from the entries (tlog.ProveRecord / CheckRecord over
tlog.RecordHash) and proves consistency from older signed checkpoints (tlog.ProveTree / CheckTree).
Against a live server and an `export-tiles` directory, on SQLite and PostgreSQL, at sizes across a
full tile and into a partial one. And it fails on a tampered tile, checkpoint or key.

Skips (saying why) without `go` or the packages, unless CREDITFLOW_TEST_GO=1 (CI), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from tile_world import BASE_ENTRIES, grow_to, start_log
from typer.testing import CliRunner

from conftest import CLI_SECRETS_ENV
from creditflow.bootstrap import App
from creditflow.cli.main import cli
from creditflow.http.app import create_app
from creditflow.ledger import tiles
from creditflow.ledger.note import NoteSigner
from creditflow.ledger.signing import Signer

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "conformance" / "tlogcheck"
GOPATH = Path("/usr/share/gocode")
X_MOD = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb"
CLI_ENV = {"CREDITFLOW_KDF_OPSLIMIT": "1", "CREDITFLOW_KDF_MEMLIMIT_BYTES": "8388608", **CLI_SECRETS_ENV}
SIZES = (BASE_ENTRIES, 256, 300, 513)  # onboarding; one full tile; a partial tile after it; past a second


@pytest.fixture(scope="module")
def tlogcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    missing = [] if go else ["go (Debian: golang-go)"]
    missing += [] if (X_MOD / "note").is_dir() and (X_MOD / "tlog").is_dir() else [f"{X_MOD} (golang-golang-x-mod-dev)"]
    if missing:
        message = f"Go conformance test needs {', '.join(missing)}"
        if os.environ.get("CREDITFLOW_TEST_GO") == "1":
            pytest.fail(f"{message}, and CREDITFLOW_TEST_GO=1 requires it")
        pytest.skip(f"{message}; set CREDITFLOW_TEST_GO=1 to make its absence a failure (CI does)")
    assert go is not None
    out = tmp_path_factory.mktemp("go") / "tlogcheck"
    cache = os.environ.get("GOCACHE") or str(Path(tempfile.gettempdir()) / f"creditflow-gocache-{os.getuid()}")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": cache, "GOFLAGS": ""}
    built = subprocess.run(
        [go, "build", "-o", str(out), "."], cwd=SOURCE, env=env, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    return out


def check(binary: Path, *args: str) -> tuple[int, dict[str, Any]]:
    run = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
    return run.returncode, json.loads(run.stdout)


@pytest.fixture
def base_url(app: App) -> Iterator[str]:
    """`creditflow serve`, in a thread: uvicorn on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(app), log_config=None, log_level="warning", access_log=False, lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-go", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def export(app: App, directory: Path, tmp_path: Path) -> None:
    env = {**CLI_ENV, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml")}
    url = app.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["log", "export-tiles", str(directory), "--entries", "--db", url], env=env)
    assert result.exit_code == 0, result.output


def leaves_of(size: int) -> str:
    """First and last leaf, both sides of every tile boundary the tree has."""
    picks = {0, size - 1} | {i for b in range(256, size, 256) for i in (b - 1, b)}
    return ",".join(str(i) for i in sorted(picks))


def test_go_checks_the_live_log_and_its_export(app: App, base_url: str, tlogcheck: Path, tmp_path: Path) -> None:
    piece = start_log(app)
    vkey = app.checkpoints.vkey
    auditor = app.access.create_key("auditor")
    old_checkpoints: list[Path] = []
    mirror = tmp_path / "mirror"
    for size in SIZES:
        piece = grow_to(app, piece, size)
        olds = ",".join(str(p) for p in old_checkpoints)
        common = ["-vkey", vkey, "-leaves", leaves_of(size), "-old", f"1,{size}", "-old-checkpoint", olds]
        code, live = check(tlogcheck, "-url", f"{base_url}/log", "-token", auditor, "-entries", *common)
        assert code == 0 and live["ok"], live
        assert live["size"] == size and live["tree_hash_ok"] and live["origin"] == app.settings.origin
        assert {leaf["source"] for leaf in live["leaves"]} == {"bundle"}
        assert len(live["consistency"]) == 2 + len(old_checkpoints)
        assert all(c["ok"] for c in live["consistency"])
        export(app, mirror, tmp_path)
        code, static = check(tlogcheck, "-dir", str(mirror), "-entries", *common)
        assert code == 0 and static["ok"] and static["root"] == live["root"], static
        # and without entry access: leaves from the level-0 tiles
        code, hashes_only = check(tlogcheck, "-url", f"{base_url}/log", *common)
        assert code == 0 and {leaf["source"] for leaf in hashes_only["leaves"]} == {"tile"}, hashes_only
        saved = tmp_path / f"checkpoint-{size}"
        saved.write_bytes((mirror / "checkpoint").read_bytes())
        old_checkpoints.append(saved)


def test_go_refuses_a_tampered_tile_checkpoint_or_key(app: App, base_url: str, tlogcheck: Path, tmp_path: Path) -> None:
    grow_to(app, start_log(app), 300)
    vkey = app.checkpoints.vkey
    good = tmp_path / "good"
    export(app, good, tmp_path)
    assert check(tlogcheck, "-dir", str(good), "-vkey", vkey, "-entries")[0] == 0

    def tampered(name: str, path: str, change: Any) -> Path:
        copy = tmp_path / name
        shutil.copytree(good, copy)
        target = copy / path
        target.write_bytes(change(target.read_bytes()))
        return copy

    def flip(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]

    cases = {
        "a full level-0 tile": tampered("t0", "tile/0/000", lambda d: flip(d, 5 * 32 + 7)),
        "the partial level-0 tile": tampered("t1", "tile/0/001.p/44", lambda d: flip(d, 40 * 32)),
        "the level-1 tile": tampered("t2", "tile/1/000.p/1", lambda d: flip(d, 31)),
        "an entry": tampered("e0", tiles.entries_path(1, 44), lambda d: flip(d, len(d) - 1)),
        "the checkpoint's size": tampered("c0", "checkpoint", lambda d: d.replace(b"\n300\n", b"\n299\n", 1)),
        "the checkpoint's root": tampered("c1", "checkpoint", lambda d: flip(d, d.index(b"\n300\n") + 6)),
    }
    for what, directory in cases.items():
        code, out = check(tlogcheck, "-dir", str(directory), "-vkey", vkey, "-entries", "-leaves", "0,299")
        assert code == 1 and not out["ok"], (what, out)
    # another key under the log's name (an impostor's signature would not open), another name for the key
    impostor = NoteSigner(app.settings.origin, Signer.generate("impostor")).verifier.encode()
    code, out = check(tlogcheck, "-url", f"{base_url}/log", "-vkey", impostor)
    assert code == 1 and "note.Open" in out["error"], out
    renamed = NoteSigner("other.example/log", app.log_signer).verifier.encode()
    code, out = check(tlogcheck, "-url", f"{base_url}/log", "-vkey", renamed)
    assert code == 1 and "note.Open" in out["error"], out
    # entries need the operator's or auditor's key: a supplier's gets 403, and the check fails
    supplier = app.access.create_key("factory")
    code, out = check(tlogcheck, "-url", f"{base_url}/log", "-vkey", vkey, "-token", supplier, "-entries")
    assert code == 1 and "403" in json.dumps(out["leaves"]), out
