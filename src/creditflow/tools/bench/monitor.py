"""`creditflow bench monitor`: an auditor's daily round costs the new entries; a full `verify` costs the log.

On a SQLite log of ``entries`` real client-signed operations, served by the real app (uvicorn, its own
process): `creditflow monitor` runs once (the first run replays the whole log from the bundles), ``new`` more
operations are appended, and the monitor runs again: that second round is the daily cost. Beside it, in the
same run, `creditflow verify` replays the whole log from the database. Every command is the real CLI in its
own process; ``wall_s`` includes the interpreter's start, ``round_s`` is the monitor's own account of its round.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from creditflow.bootstrap import App, build, throwaway_secrets
from creditflow.config import Settings
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger.entries import SignedOperation
from creditflow.tools.bench.api import SERVER_ENV
from creditflow.tools.bench.ledger import Workload


def _cli(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "creditflow.cli.main", *args], env=env, capture_output=True, text=True, timeout=3600
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"creditflow {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def _build_log(settings: Settings, entries: int, new: int) -> tuple[str, str, list[SignedOperation]]:
    """A log of ``entries`` entries; returns (log vkey, an auditor's token, ``new`` more operations, pre-signed)."""
    with build(settings) as app:
        work = Workload(app, lanes=64)
        suffix = os.urandom(2).hex().upper()
        app.ledger.register_organisation("audit", "Audit", "auditor", make_uscc(f"91320300889{suffix}00"))
        signed = work.operations(max(entries - app.tiles.checkpoint()[0], 0) + new)
        _submit(app, signed[: len(signed) - new])
        return app.checkpoints.vkey, app.access.create_key("audit", "monitor benchmark"), signed[len(signed) - new :]


def _submit(app: App, signed: list[SignedOperation]) -> None:
    for future in [app.sequencer.submit_async(s) for s in signed]:
        future.result(timeout=600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_monitor_bench(entries: int = 20_000, new: int = 100) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="creditflow-bench-monitor-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'log.db'}"
        secrets = throwaway_secrets()
        settings = Settings(
            db_url=url,
            enforce_trade_rules=False,
            kdf_opslimit=1,
            kdf_memlimit_bytes=8 * 1024 * 1024,
            **secrets,  # type: ignore[arg-type]
        )
        vkey, token, later = _build_log(settings, entries, new)
        env = {
            **os.environ,
            **SERVER_ENV,
            "CREDITFLOW_DB_URL": url,
            "CREDITFLOW_KEY_PASSPHRASE": secrets["key_passphrase"],
            "CREDITFLOW_LOG_KEY_PASSPHRASE": secrets["log_key_passphrase"],
            "CREDITFLOW_MONITOR_TOKEN": token,
        }
        port = _free_port()
        uvicorn = ["uvicorn", "--factory", "creditflow.tools.bench.api:server_app", "--log-level", "warning"]
        server = subprocess.Popen(
            [sys.executable, "-m", *uvicorn, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"], env=env
        )
        try:
            _wait(port, server)
            base = f"http://127.0.0.1:{port}"
            state = str(workdir / "monitor")
            args = ["monitor", "--url", base, "--state", state, "--json"]
            first_wall, first = _cli([*args, "--log-vkey", vkey], env)
            size = first["new_size"]
            with build(settings) as app:  # the platform goes on while the server runs
                _submit(app, later)
            second_wall, second = _cli(args, env)
        finally:
            server.terminate()
            server.wait(timeout=30)
        verify_wall, verified = _cli(["verify", "--json"], env)
    return {
        "benchmark": "monitor",
        "log_entries": size,
        "new_entries": second["new_size"] - size,
        "monitor_first_run": _round(first, first_wall),
        "monitor_daily_run": _round(second, second_wall),
        "full_verify": {
            "entries": verified["entries"],
            "wall_s": round(verify_wall, 3),
            "seconds": verified["seconds"],
        },
        "daily_over_verify": round(second_wall / verify_wall, 4),  # whole processes, interpreter start included
        "daily_round_over_verify": round(second["seconds"] / verified["seconds"], 4),  # the work itself
    }


def _round(summary: dict[str, Any], wall: float) -> dict[str, Any]:
    keys = ("old_size", "new_size", "entries_replayed", "tiles_fetched", "bundles_fetched")
    timed = {"round_s": summary["seconds"], "snapshot_s": summary["snapshot_seconds"], "wall_s": round(wall, 3)}
    return {**{k: summary[k] for k in keys}, **timed}


def _wait(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.1)
