"""What the witness tests share: an ASGI app under a real uvicorn server in a thread, a witness state directory,
and a log in memory (a Merkle tree of made-up leaves and a note key) that writes add-checkpoint requests."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from creditflow.ledger import merkle
from creditflow.ledger.note import Checkpoint, Note, NoteSigner
from creditflow.ledger.signing import Signer
from creditflow.witness.core import Witness
from creditflow.witness.server import create_witness_app
from creditflow.witness.state import StateDir

ORIGIN = "example.test/log"


@contextlib.contextmanager
def live_server(asgi_app: Any) -> Iterator[str]:
    """``asgi_app`` on a free 127.0.0.1 port; yields its base URL; stops it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        asgi_app, log_config=None, log_level="warning", access_log=False, lifespan="off", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="witness-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "the server thread died while starting"
            assert time.monotonic() < deadline, "the server did not start in 20 s"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
    assert not thread.is_alive(), "the server did not shut down"


class MemoryLog:
    """A log's side in memory: leaves ``seed|i``, its note key, and add-checkpoint bodies."""

    def __init__(self, origin: str = ORIGIN, seed: bytes = b"honest", key_seed: int = 1):
        self.origin = origin
        self.seed = seed
        self.signer = NoteSigner(origin, Signer(bytes([key_seed]) * 32, "log"))
        self.tree = merkle.MemoryTree()

    @property
    def vkey(self) -> str:
        return self.signer.verifier.encode()

    def grow(self, size: int) -> None:
        while self.tree.size < size:
            self.tree.append(merkle.leaf_hash(self.seed + b"|%d" % self.tree.size))

    def checkpoint(self, size: int) -> Checkpoint:
        self.grow(size)
        return Checkpoint(self.origin, size, self.tree.root_at(size))

    def note(self, size: int, signer: NoteSigner | None = None) -> Note:
        text = self.checkpoint(size).text()
        return Note(text, ((signer or self.signer).sign(text),))

    def body(self, old: int, size: int, *, proof: list[bytes] | None = None, note: Note | None = None) -> bytes:
        self.grow(size)
        if proof is None:
            proof = self.tree.consistency_proof(old, size) if 0 < old < size else []
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
        return (f"old {old}\n" + lines + "\n" + (note or self.note(size)).encode()).encode()


def fake_hash(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def new_witness(folder: Path, name: str = "witness.test/w1", *logs: MemoryLog) -> Witness:
    state = StateDir.init(folder, name)
    for log in logs:
        state.add_log(log.origin, log.vkey)
    return Witness(state)


@contextlib.contextmanager
def witness_server(witness: Witness) -> Iterator[str]:
    with live_server(create_witness_app(witness)) as url:
        yield url


class Switch:
    """An ASGI wrapper that makes a witness misbehave on demand: ``hang`` holds each request until `release` is
    set (then answers 503), ``down`` answers 503 at once, ``ok`` passes requests through."""

    def __init__(self, app: Any):
        self.app = app
        self.mode = "ok"
        self.entered = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import asyncio

        if scope["type"] == "http" and self.mode in ("hang", "down"):
            if self.mode == "hang":
                self.entered.set()
                for _ in range(600):
                    if self.release.is_set():
                        break
                    await asyncio.sleep(0.05)
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unavailable (test)\n"})
            return
        await self.app(scope, receive, send)


class Platform:
    """A real creditflow app (store_url) whose publisher sends to real witnesses over HTTP, each behind a
    `Switch`. The log key exists before the witnesses do (they must trust it), so the app is built twice on the
    same database: once to make the key, once with CREDITFLOW_WITNESSES naming the running witnesses."""

    def __init__(self, url: str, folder: Path, names: tuple[str, ...], quorum: int, **overrides: Any):
        from conftest import START_MS, make_settings
        from creditflow.bootstrap import build
        from creditflow.kernel.clock import ManualClock

        self.clock = ManualClock(START_MS)
        with build(make_settings(url), clock=self.clock) as first:
            self.log_vkey = first.checkpoints.vkey
            self.origin = first.settings.origin
        self.stack = contextlib.ExitStack()
        self.witnesses: dict[str, Witness] = {}
        self.switches: dict[str, Switch] = {}
        config = []
        for name in names:
            state = StateDir.init(folder / name, f"witness.test/{name}")
            state.add_log(self.origin, self.log_vkey)
            witness = Witness(state)
            switch = Switch(create_witness_app(witness))
            base = self.stack.enter_context(live_server(switch))
            self.witnesses[name], self.switches[name] = witness, switch
            config.append({"name": name, "vkey": witness.vkey, "url": base})
        settings = make_settings(url, witnesses=config, witness_quorum=quorum, **overrides)
        self.app = self.stack.enter_context(build(settings, clock=self.clock))

    def close(self) -> None:
        for switch in self.switches.values():
            switch.release.set()
        self.stack.close()

    @property
    def witness_keys(self) -> list[Any]:
        from creditflow.ledger.note import parse_vkey

        return [parse_vkey(w.vkey) for w in self.witnesses.values()]

    def held(self, name: str) -> tuple[int, bytes | None]:
        cosigned = self.witnesses[name].state.cosigned(self.origin)
        return cosigned.size, None if cosigned.checkpoint is None else cosigned.checkpoint.root_hash

    def head(self) -> tuple[int, bytes]:
        """The log's current size and root (its newest signed tree head)."""
        head = self.app.proofs.latest_head()
        return head.tree_size, head.root_hash


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(args: list[str], log_file: Path, ready_url: str, env: dict[str, str] | None = None) -> Any:
    """``python -m creditflow.cli.main ARGS`` as a child process (this interpreter, this source tree), once
    ``ready_url`` answers 200; its output goes to ``log_file``."""
    child_env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **(env or {})}
    with open(log_file, "wb") as output:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "creditflow.cli.main", *args], env=child_env, stdout=output, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"{args[0]} exited: {log_file.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{args[0]} did not start in 60 s: {log_file.read_text()}")
        time.sleep(0.1)


def start_witness(folder: Path) -> tuple[Any, str]:
    """A real `creditflow witness serve` on ``folder``, on a free port: (process, base URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["witness", "serve", "--state", str(folder), "--port", str(port)]
    return start_process(args, folder.parent / f"{folder.name}-{port}.log", url + "/"), url
