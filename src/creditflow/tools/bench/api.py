"""`api.ops_per_s` for `creditflow bench ledger`: client-signed operations over HTTP with concurrent clients.

The server is the real one (`creditflow serve`'s app under uvicorn) in its own process; the load comes
from another process over loopback: `concurrency` keep-alive HTTP/1.1 connections, each posting the
pre-signed operations of its own chain (`POST /v1/operations`, self custody) one after another. Every
response must be 200: an operation counts only once the server acknowledged its durable commit.
The peer measured in the same run is `GET /healthz` through the same stack and client: the HTTP bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from creditflow.bootstrap import build, throwaway_secrets
from creditflow.config import Settings

_T = TypeVar("_T")

SERVER_ENV = {
    "CREDITFLOW_KDF_OPSLIMIT": "1",
    "CREDITFLOW_KDF_MEMLIMIT_BYTES": str(8 * 1024 * 1024),
    "CREDITFLOW_ENFORCE_TRADE_RULES": "false",
    "CREDITFLOW_REQUEST_MAX_BYTES": str(256 * 1024),
    # The limiter runs (its cost is part of the measurement) but never refuses: the defaults (2,000/s per
    # key and per client address) would cap the single client key and address of a machine faster than that.
    "CREDITFLOW_RATE_LIMIT_PER_S": "1000000000",
}


def server_app() -> Any:
    """uvicorn --factory entry point: the production app on $CREDITFLOW_DB_URL."""
    from creditflow.http.app import create_app

    return create_app(build(Settings()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


def _post(path: str, body: bytes, token: str, port: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _drive(port: int, lanes: list[list[bytes]]) -> tuple[float, list[int]]:
    async def one(lane: list[bytes]) -> list[int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        statuses = []
        try:
            for raw in lane:
                status, _ = await _request(reader, writer, raw)
                statuses.append(status)
        finally:
            writer.close()
        return statuses

    started = time.perf_counter()
    results = await asyncio.gather(*(one(lane) for lane in lanes))
    return time.perf_counter() - started, [s for r in results for s in r]


def _run_client(work: Coroutine[Any, Any, _T]) -> _T:
    """The load generator on uvloop (as uvicorn runs the server): the client shares the machine's two
    cores with the server, and every cycle it spends is one the server does not get."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it wherever it builds
        return asyncio.run(work)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def run_api_bench(ops: int, workdir: Path, concurrency: int = 128) -> dict[str, Any]:
    from creditflow.tools.bench.ledger import Workload

    url = f"sqlite:///{workdir / 'api.db'}"
    secrets = throwaway_secrets()
    settings = Settings(
        db_url=url,
        enforce_trade_rules=False,
        kdf_opslimit=1,
        kdf_memlimit_bytes=8 * 1024 * 1024,
        **secrets,  # type: ignore[arg-type]
    )
    with build(settings) as app:
        work = Workload(app, lanes=concurrency)
        signed = work.operations(ops)
        token = app.access.create_key("alpha", "api benchmark")
    port = _free_port()
    env = {
        **os.environ,
        **SERVER_ENV,
        "CREDITFLOW_DB_URL": url,
        "CREDITFLOW_KEY_PASSPHRASE": secrets["key_passphrase"],
        "CREDITFLOW_LOG_KEY_PASSPHRASE": secrets["log_key_passphrase"],
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "creditflow.tools.bench.api:server_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the API server did not start") from None
                time.sleep(0.1)
        lanes = [
            [_post("/v1/operations", json.dumps(s.to_json()).encode(), token, port) for s in signed[i::concurrency]]
            for i in range(concurrency)
        ]
        seconds, statuses = _run_client(_drive(port, lanes))
        bad = [s for s in statuses if s != 200]
        health = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        probe = [[health] * max(1, ops // concurrency) for _ in range(concurrency)]
        health_seconds, health_statuses = _run_client(_drive(port, probe))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "ops": len(statuses),
        "concurrency": concurrency,
        "failed": len(bad),
        "ops_per_s": round(len(statuses) / seconds, 1),
        "healthz_per_s": round(len(health_statuses) / health_seconds, 1),
        "ratio_to_healthz": round((len(statuses) / seconds) / (len(health_statuses) / health_seconds), 3),
    }
