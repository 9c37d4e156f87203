"""The checkpoint publisher (creditflow.ledger.publisher) against real witnesses over HTTP, on SQLite and PostgreSQL:
cosignatures collected and stored, the size each witness holds learned from a 409, a slow or dead witness blocking
neither appends nor the other witness, zero witnesses, what /log/checkpoint serves, and the metrics."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import CLI_SECRETS_ENV, issue_accepted, make_settings, onboard
from creditflow.bootstrap import build
from creditflow.http.app import create_app
from creditflow.kernel.clock import ManualClock
from creditflow.ledger.note import NoteError, open_checkpoint, parse_checkpoint, parse_note, parse_vkey
from creditflow.witness.state import StateDir
from witness_harness import Platform, free_port, start_process, start_witness


@pytest.fixture
def platform(store_url: str, tmp_path: Path) -> Iterator[Platform]:
    p = Platform(store_url, tmp_path, ("a", "b"), quorum=2, witness_timeout_s=30, checkpoint_interval_s=0.05)
    try:
        yield p
    finally:
        p.close()


def served(p: Platform) -> str:
    with p.app.engine.connect() as conn:
        return p.app.checkpoints.latest(conn)[1]


def test_each_round_is_cosigned_by_every_witness_with_a_consistency_proof(platform: Platform) -> None:
    app = platform.app
    onboard(app)
    first = app.publisher.publish()
    assert first is not None and sorted(first.cosigned_by) == ["a", "b"]
    size, root = platform.head()
    assert first.size == size and platform.held("a") == platform.held("b") == (size, root)
    opened = open_checkpoint(served(platform), parse_vkey(app.checkpoints.vkey), platform.witness_keys, quorum=2)
    assert opened.checkpoint.size == size and len(opened.witnesses) == 2
    assert app.publisher.publish() is None  # nothing grew, every witness holds it: no round
    issue_accepted(app)
    second = app.publisher.publish()
    assert second is not None and sorted(second.cosigned_by) == ["a", "b"]
    assert second.size == size + 2 and platform.held("a") == platform.head()
    opened = open_checkpoint(second.note, parse_vkey(app.checkpoints.vkey), platform.witness_keys, quorum=2)
    assert opened.checkpoint.size == size + 2


def test_a_witness_that_holds_more_than_recorded_is_learned_from_its_409(platform: Platform) -> None:
    app = platform.app
    onboard(app)
    app.publisher.publish()
    old, _ = platform.head()
    issue_accepted(app)
    # someone else (another publisher process) moved witness a on to the new size behind this one's back
    size, root = platform.head()
    proof = app.proofs.consistency(old, size)["proof"]
    note = app.checkpoints.sign(size, root).encode()
    body = f"old {old}\n" + "".join(base64.b64encode(bytes.fromhex(h)).decode() + "\n" for h in proof) + "\n" + note
    url = next(w.url for w in app.publisher.witnesses if w.name == "a")
    assert httpx.post(f"{url}/add-checkpoint", content=body).status_code == 200
    issue_accepted(app)
    publication = app.publisher.publish()
    assert publication is not None and sorted(publication.cosigned_by) == ["a", "b"]
    assert platform.held("a") == platform.held("b") == platform.head()


def test_a_hung_witness_blocks_neither_appends_nor_the_other_witness(platform: Platform) -> None:
    app = platform.app
    onboard(app)
    app.publisher.publish()
    platform.switches["b"].mode = "hang"
    issue_accepted(app)
    size, root = platform.head()
    result: list[object] = []
    round_thread = threading.Thread(target=lambda: result.append(app.publisher.publish()))
    round_thread.start()
    try:
        assert platform.switches["b"].entered.wait(30), "the publisher never reached witness b"
        # b holds the request; the log still takes appends, and witness a has already cosigned the new size
        issue_accepted(app)
        deadline = time.monotonic() + 30
        while platform.held("a") != (size, root):
            assert time.monotonic() < deadline, "witness a was not asked while b hung"
            time.sleep(0.02)
        assert round_thread.is_alive()  # b is still holding the round's request
    finally:
        platform.switches["b"].release.set()
        round_thread.join(60)
    (publication,) = result
    assert publication is not None and publication.cosigned_by == ["a"]  # type: ignore[attr-defined]
    b = next(o for o in publication.outcomes if o.name == "b")  # type: ignore[attr-defined]
    assert b.error is not None and "503" in b.error
    note = publication.note  # type: ignore[attr-defined]
    opened = open_checkpoint(note, parse_vkey(app.checkpoints.vkey), platform.witness_keys, quorum=1)
    assert [k.name for k in opened.witnesses] == ["witness.test/a"]
    with pytest.raises(NoteError, match="1 of the trusted witnesses"):
        open_checkpoint(note, parse_vkey(app.checkpoints.vkey), platform.witness_keys, quorum=2)
    # serving: while publishing, /log/checkpoint stays on the newest checkpoint that met the quorum of two
    app.checkpoints.publishing = True
    try:
        opened = open_checkpoint(served(platform), parse_vkey(app.checkpoints.vkey), platform.witness_keys, quorum=2)
        assert opened.checkpoint.size < size
    finally:
        app.checkpoints.publishing = False
    # metrics: b lags by what it missed and counts a failure; a does not lag
    platform.switches["b"].mode = "down"
    with TestClient(create_app(app)) as client:
        text = client.get("/metrics").text
    assert f"creditflow_checkpoint_published_size {size}" in text
    assert "creditflow_checkpoint_published_cosignatures 1" in text and "creditflow_checkpoint_quorum 2" in text
    assert f"creditflow_checkpoint_quorum_size {opened.checkpoint.size}" in text
    assert 'creditflow_witness_lag_entries{witness="a"} 0' in text
    assert 'creditflow_witness_failures_total{witness="b"} 1' in text
    assert 'creditflow_witness_failures_total{witness="a"} 0' in text
    lag_b = next(line for line in text.splitlines() if line.startswith('creditflow_witness_lag_entries{witness="b"}'))
    assert int(lag_b.split()[-1]) == size - platform.held("b")[0] > 0
    assert 'creditflow_witness_seconds_since_cosigned{witness="a"} ' in text
    # b comes back: the next round (the log grew meanwhile) brings it up to date, from the size it holds
    platform.switches["b"].mode = "ok"
    caught_up = app.publisher.publish()
    assert caught_up is not None and sorted(caught_up.cosigned_by) == ["a", "b"]
    assert platform.held("b") == platform.held("a") == platform.head()


def test_a_witness_that_was_down_cosigns_the_same_checkpoint_later(platform: Platform) -> None:
    app = platform.app
    onboard(app)
    platform.switches["b"].mode = "down"
    first = app.publisher.publish()
    assert first is not None and first.cosigned_by == ["a"]
    platform.switches["b"].mode = "ok"
    again = app.publisher.publish()  # the log did not grow, but b has not cosigned the published checkpoint
    assert again is not None and again.size == first.size and again.cosigned_by == ["b"]
    opened = open_checkpoint(served(platform), parse_vkey(app.checkpoints.vkey), platform.witness_keys, quorum=2)
    assert opened.checkpoint.size == first.size


def test_the_running_publisher_keeps_up_and_latest_serves_the_published_checkpoint(platform: Platform) -> None:
    app = platform.app
    onboard(app)
    assert not app.publisher.running  # build() starts no thread
    app.publisher.start()
    try:
        for _ in range(3):
            issue_accepted(app)
        size, _ = platform.head()
        deadline = time.monotonic() + 60
        while parse_checkpoint(parse_note(served(platform)).text).size != size or platform.held("b")[0] != size:
            assert time.monotonic() < deadline, "the publisher did not catch up"
            time.sleep(0.05)
        assert app.checkpoints.publishing
        # What it serves while a publisher runs, made deterministic: the thread stopped, the flag it sets kept on.
        app.publisher.stop()
        app.checkpoints.publishing = True
        issue_accepted(app)  # the log grows past the published checkpoint: still the cosigned one is served
        assert parse_checkpoint(parse_note(served(platform)).text).size == size
        assert len(parse_note(served(platform)).signatures) == 3  # the log's and two cosignatures
    finally:
        app.publisher.stop()
    assert not app.publisher.running and not app.checkpoints.publishing
    assert not [t for t in threading.enumerate() if t.name == "creditflow-publisher"]
    # with no publisher, the current head is served, signed now (the log's signature only)
    current = parse_note(served(platform))
    assert parse_checkpoint(current.text).size == size + 2 and len(current.signatures) == 1


def test_with_no_witness_each_round_stores_the_log_signed_checkpoint(store_url: str, clock: ManualClock) -> None:
    with build(make_settings(store_url), clock=clock) as app:
        onboard(app, "xcmg", "factory")
        publication = app.publisher.publish()
        assert publication is not None and publication.outcomes == ()
        with app.engine.connect() as conn:
            size, note = app.checkpoints.latest(conn)
        assert size == publication.size == 2
        opened = open_checkpoint(note, parse_vkey(app.checkpoints.vkey))
        assert opened.witnesses == () and opened.checkpoint.size == 2
        with TestClient(create_app(app)) as client:
            text = client.get("/metrics").text
        assert "creditflow_checkpoint_published_size 2" in text and "creditflow_witness_lag" not in text


def test_a_witness_answering_with_a_wrong_cosignature_gets_none_stored(platform: Platform) -> None:
    """A witness that answers 200 with a signature from another key (or garbage) is a failure, not a cosigner."""
    app = platform.app
    onboard(app)
    b = platform.witnesses["b"]
    b.cosigner = platform.witnesses["a"].cosigner  # b now signs with a's key: not b's configured key
    publication = app.publisher.publish()
    assert publication is not None and publication.cosigned_by == ["a"]
    b_outcome = next(o for o in publication.outcomes if o.name == "b")
    assert b_outcome.error is not None and "no cosignature from its configured key" in b_outcome.error


def test_creditflow_serve_starts_the_publisher_and_shows_the_witness_in_metrics(tmp_path: Path) -> None:
    """`creditflow serve` (a real process) publishes to a real `creditflow witness serve` process: the witness
    ends up holding the log's checkpoint and /metrics shows it not lagging."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    with build(make_settings(url)) as first:
        origin, vkey = first.settings.origin, first.checkpoints.vkey
    state = StateDir.init(tmp_path / "w", "witness.test/w1")
    state.add_log(origin, vkey)
    witness, witness_url = start_witness(tmp_path / "w")
    port = free_port()
    env = {
        **CLI_SECRETS_ENV,
        "CREDITFLOW_KDF_OPSLIMIT": "1",
        "CREDITFLOW_KDF_MEMLIMIT_BYTES": str(8 * 1024 * 1024),
        "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml"),
        "CREDITFLOW_WITNESSES": json.dumps(
            [{"name": "w1", "vkey": state.cosigner().verifier.encode(), "url": witness_url}]
        ),
        "CREDITFLOW_WITNESS_QUORUM": "1",
        "CREDITFLOW_CHECKPOINT_INTERVAL_S": "0.1",
    }
    base = f"http://127.0.0.1:{port}"
    serve = start_process(["serve", "--db", url, "--port", str(port)], tmp_path / "serve.log", base + "/healthz", env)
    try:
        deadline = time.monotonic() + 60
        while True:
            text = httpx.get(base + "/metrics", timeout=10).text
            if 'creditflow_witness_lag_entries{witness="w1"} 0' in text and state.cosigned(origin).checkpoint:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert "creditflow_checkpoint_published_size 0" in text
        assert 'creditflow_witness_failures_total{witness="w1"} 0' in text
    finally:
        serve.terminate()
        witness.terminate()
        serve.wait(timeout=30)  # uvicorn re-raises SIGTERM after its graceful shutdown: the code is -15
        witness.wait(timeout=30)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
