"""The standalone witness against c2sp.org/tlog-witness, over real HTTP (uvicorn on a free port): every status the
spec names, what it persists and when, restarts, concurrent submissions, and crashes around the persist."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from creditflow.ledger.note import COSIGNATURE_V1, Note, NoteSigner, parse_checkpoint, parse_note, parse_vkey
from creditflow.ledger.signing import Signer
from creditflow.witness import state as state_module
from creditflow.witness.core import Witness
from creditflow.witness.state import StateDir
from witness_harness import MemoryLog, fake_hash, new_witness, witness_server


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def witness(tmp_path: Path, log: MemoryLog) -> Witness:
    return new_witness(tmp_path / "w", "witness.test/w1", log)


@pytest.fixture
def http(witness: Witness) -> Iterator[httpx.Client]:
    with witness_server(witness) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def post(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post("/add-checkpoint", content=body)


def held(witness: Witness, origin: str) -> tuple[int, bytes | None]:
    cosigned = witness.state.cosigned(origin)
    return cosigned.size, None if cosigned.checkpoint is None else cosigned.checkpoint.root_hash


def assert_cosignature(witness: Witness, note: Note, body: str) -> None:
    """The 200 body is signature lines; appended to the checkpoint they verify under the witness's vkey."""
    assert body.startswith("\u2014 ") and body.endswith("\n")
    key = parse_vkey(witness.vkey)
    assert key.sig_type == COSIGNATURE_V1
    assert parse_note(note.text + "\n" + body).verified_by([key]) == [key]


def test_first_checkpoint_is_cosigned_and_held(http: httpx.Client, witness: Witness, log: MemoryLog) -> None:
    response = post(http, log.body(0, 5))
    assert response.status_code == 200, response.text
    assert_cosignature(witness, log.note(5), response.text)
    assert held(witness, log.origin) == (5, log.tree.root_at(5))
    # then it grows with a consistency proof from what it holds
    response = post(http, log.body(5, 12))
    assert response.status_code == 200, response.text
    assert_cosignature(witness, log.note(12), response.text)
    assert held(witness, log.origin) == (12, log.tree.root_at(12))


def test_a_wrong_old_size_is_409_with_the_size_it_holds(http: httpx.Client, witness: Witness, log: MemoryLog) -> None:
    assert post(http, log.body(0, 7)).status_code == 200
    for old in (0, 3, 6):
        response = post(http, log.body(old, 9))
        assert response.status_code == 409
        assert response.headers["content-type"] == "text/x.tlog.size"
        assert response.text == "7\n"
    assert held(witness, log.origin)[0] == 7
    assert post(http, log.body(7, 9)).status_code == 200  # the client learned the size and retried


def test_a_bad_consistency_proof_is_422_and_changes_nothing(
    http: httpx.Client, witness: Witness, log: MemoryLog
) -> None:
    assert post(http, log.body(0, 8)).status_code == 200
    log.grow(13)
    good = log.tree.consistency_proof(8, 13)
    bad_proofs = [
        [],  # none at all
        good[:-1],  # one short
        [*good, fake_hash("extra")],  # one too many
        [fake_hash("x"), *good[1:]],  # one hash changed
    ]
    for proof in bad_proofs:
        response = post(http, log.body(8, 13, proof=proof))
        assert response.status_code == 422, proof
    assert held(witness, log.origin) == (8, log.tree.root_at(8))
    # from size 0 the proof must be empty
    other = MemoryLog(origin="example.test/other", key_seed=2)
    witness.state.add_log(other.origin, other.vkey)
    assert post(http, other.body(0, 4, proof=[fake_hash("p")])).status_code == 422
    assert held(witness, other.origin) == (0, None)


def test_a_checkpoint_the_log_did_not_sign_is_403(http: httpx.Client, witness: Witness, log: MemoryLog) -> None:
    impostor = NoteSigner(log.origin, Signer(b"\x09" * 32, "x"))  # same name, another key
    assert post(http, log.body(0, 4, note=log.note(4, signer=impostor))).status_code == 403
    # the log's own key id but a signature over something else: a known key that fails
    genuine = log.note(4)
    forged = Note(log.note(5).text, genuine.signatures)
    assert post(http, log.body(0, 5, note=forged)).status_code == 403
    # only a cosignature (an unknown key for this origin), no log signature
    other = NoteSigner("witness.test/w9", Signer(b"\x05" * 32, "w"), COSIGNATURE_V1)
    text = log.note(4).text
    assert post(http, log.body(0, 4, note=Note(text, (other.sign(text, 1),)))).status_code == 403
    assert held(witness, log.origin) == (0, None)


def test_an_unknown_origin_is_404(http: httpx.Client) -> None:
    stranger = MemoryLog(origin="elsewhere.test/log", key_seed=3)
    assert post(http, stranger.body(0, 3)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0",  # no newline, nothing else
        b"old 01\n\n",
        b"old -1\n\n",
        b"new 0\n\n",
        b"old 0\nnot base64!\n\n",
        b"old 0\n" + base64.b64encode(b"short") + b"\n\n",
        b"old 0\n\ngarbage\n",
        b"old 0\n\nexample.test/log\n5\nAAAA\n\n\xe2\x80\x94 x AAAAAAAA\n",
        b"old 0\n" + (base64.b64encode(b"\x00" * 32) + b"\n") * 64 + b"\n",  # 64 proof lines: at most 63
    ],
)
def test_malformed_requests_are_400(http: httpx.Client, body: bytes) -> None:
    response = post(http, body)
    assert response.status_code == 400, response.text


def test_old_bigger_than_the_checkpoint_is_400(http: httpx.Client, witness: Witness, log: MemoryLog) -> None:
    assert post(http, log.body(0, 10)).status_code == 200
    # a smaller checkpoint, offered from the size it holds: old > size
    assert post(http, log.body(10, 6, proof=[])).status_code == 400
    # a smaller checkpoint from a smaller old size: the size it holds is not that
    response = post(http, log.body(3, 6))
    assert response.status_code == 409 and response.text == "10\n"
    assert held(witness, log.origin)[0] == 10


def test_the_same_checkpoint_is_cosigned_again_another_root_is_409(
    http: httpx.Client, witness: Witness, log: MemoryLog
) -> None:
    assert post(http, log.body(0, 6)).status_code == 200
    again = post(http, log.body(6, 6))
    assert again.status_code == 200
    assert_cosignature(witness, log.note(6), again.text)
    fork = MemoryLog(seed=b"fork")  # the same key, other leaves: another root at the size it holds
    fork.signer = log.signer
    response = post(http, fork.body(6, 6))
    assert response.status_code == 409 and response.text == "6\n"
    assert response.headers["content-type"] == "text/x.tlog.size"
    assert held(witness, log.origin) == (6, log.tree.root_at(6))
    # the refused fork was signed by the log: it is kept as evidence
    assert any((witness.state.path / "evidence").iterdir())


def test_the_state_survives_a_restart(tmp_path: Path, log: MemoryLog) -> None:
    witness = new_witness(tmp_path / "w", "witness.test/w1", log)
    with witness_server(witness) as url:
        assert httpx.post(f"{url}/add-checkpoint", content=log.body(0, 9)).status_code == 200
    restarted = Witness(StateDir(tmp_path / "w"))
    assert restarted.vkey == witness.vkey  # the same key, read back
    with witness_server(restarted) as url:
        response = httpx.post(f"{url}/add-checkpoint", content=log.body(0, 11))
        assert response.status_code == 409 and response.text == "9\n"
        assert httpx.post(f"{url}/add-checkpoint", content=log.body(9, 11)).status_code == 200


@pytest.mark.parametrize("instances", [1, 2])
def test_concurrent_submissions_from_one_size_cosign_exactly_one(
    tmp_path: Path, log: MemoryLog, instances: int
) -> None:
    """Sixteen checkpoints, all claiming ``old 0``: one wins, every other gets 409 with the winner's size. With two
    witness instances on one directory only the fcntl lock serialises them (each has its own thread locks)."""
    first = new_witness(tmp_path / "w", "witness.test/w1", log)
    witnesses = [first] + [Witness(StateDir(tmp_path / "w")) for _ in range(instances - 1)]
    for w in witnesses:  # widen the window between check and persist: without the lock all sixteen would pass
        w.before_persist = lambda _: time.sleep(0.02)
    sizes = list(range(1, 17))
    log.grow(17)
    bodies = {size: log.body(0, size) for size in sizes}
    results: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(len(sizes))
    with servers(witnesses) as urls:

        def submit(size: int) -> None:
            barrier.wait()
            results[size] = httpx.post(f"{urls[size % len(urls)]}/add-checkpoint", content=bodies[size], timeout=60)

        threads = [threading.Thread(target=submit, args=(s,)) for s in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    winners = [s for s, r in results.items() if r.status_code == 200]
    assert len(winners) == 1, {s: r.status_code for s, r in results.items()}
    (winner,) = winners
    for size, response in results.items():
        if size != winner:
            assert response.status_code == 409 and response.text == f"{winner}\n"
    assert held(first, log.origin) == (winner, log.tree.root_at(winner))


@contextlib.contextmanager
def servers(witnesses: list[Witness]) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(witness_server(w)) for w in witnesses]


def test_concurrent_growth_never_rolls_back(tmp_path: Path, log: MemoryLog) -> None:
    """Threads race to grow the log's checkpoint, each learning the held size from 409s: the sizes the witness
    cosigns, in the order it cosigned them, only grow (the rollback race of tlog-witness cannot happen)."""
    witness = new_witness(tmp_path / "w", "witness.test/w1", log)
    log.grow(200)
    cosigned: list[int] = []
    lock = threading.Lock()
    witness.after_persist = lambda cp: cosigned.append(cp.size)
    with witness_server(witness) as url:

        def racer(offset: int) -> None:
            old = 0
            with httpx.Client(timeout=60) as client:
                for step in range(12):
                    size = min(200, old + 1 + (step * 7 + offset) % 9)
                    with lock:
                        body = log.body(old, size)
                    response = client.post(f"{url}/add-checkpoint", content=body)
                    if response.status_code == 409:
                        old = int(response.text)
                    elif response.status_code == 200:
                        old = size
                    else:
                        raise AssertionError(response.text)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert cosigned and cosigned == sorted(cosigned)
    assert held(witness, log.origin)[0] == cosigned[-1]


def test_a_failed_write_answers_500_and_keeps_the_old_state(
    http: httpx.Client, witness: Witness, log: MemoryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert post(http, log.body(0, 4)).status_code == 200

    def crash(src: object, dst: object) -> None:
        raise OSError("disk full (injected)")

    monkeypatch.setattr(state_module, "_replace", crash)
    response = post(http, log.body(4, 8))
    assert response.status_code == 500 and "\u2014" not in response.text  # no cosignature
    monkeypatch.undo()
    assert held(witness, log.origin) == (4, log.tree.root_at(4))
    assert not [p for p in (witness.state.path / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert post(http, log.body(4, 8)).status_code == 200


def test_a_crash_after_persisting_before_answering_leaves_a_consistent_state(
    http: httpx.Client, witness: Witness, log: MemoryLog
) -> None:
    """The checkpoint is on disk but the log never got its cosignature: the log's retry from its old size gets a
    409 naming the new size, and resubmitting the same checkpoint from there is cosigned."""
    assert post(http, log.body(0, 3)).status_code == 200

    def die(_: object) -> None:
        raise RuntimeError("power cut (injected)")

    witness.after_persist = die
    assert post(http, log.body(3, 10)).status_code == 500
    witness.after_persist = None
    assert held(witness, log.origin) == (10, log.tree.root_at(10))
    retry = post(http, log.body(3, 10))
    assert retry.status_code == 409 and retry.text == "10\n"
    again = post(http, log.body(10, 10))
    assert again.status_code == 200
    assert_cosignature(witness, log.note(10), again.text)


def test_the_held_checkpoint_file_is_the_signed_note(witness: Witness, log: MemoryLog) -> None:
    assert witness.add_checkpoint(log.body(0, 5)).status == 200
    stored = parse_note(next((witness.state.path / "checkpoints").iterdir()).read_text())
    assert parse_checkpoint(stored.text) == log.checkpoint(5)
    assert stored.verified_by([parse_vkey(log.vkey)])
