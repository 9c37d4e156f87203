"""Issue 14 point 4: split views are caught. The platform holds its own log key, so it can sign any checkpoint it
likes; what it cannot get is the witnesses' cosignatures on a head that forks from what they saw. Two real witnesses
over HTTP, the real publisher, on SQLite and PostgreSQL; a client that requires a quorum of two."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from conftest import issue_accepted, onboard
from creditflow.ledger import merkle
from creditflow.ledger.note import Note, NoteError, open_checkpoint, parse_note, parse_vkey
from creditflow.ledger.tables import ledger_entries
from witness_harness import Platform


@pytest.fixture
def platform(store_url: str, tmp_path: Path) -> Iterator[Platform]:
    p = Platform(store_url, tmp_path, ("a", "b"), quorum=2, witness_timeout_s=30)
    try:
        yield p
    finally:
        p.close()


def leaves(p: Platform) -> list[bytes]:
    with p.app.engine.connect() as conn:
        return [bytes(h) for (h,) in conn.execute(select(ledger_entries.c.leaf_hash).order_by(ledger_entries.c.seq))]


def submit(url: str, old: int, proof: list[bytes], note: Note) -> httpx.Response:
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return httpx.post(f"{url}/add-checkpoint", content=f"old {old}\n{lines}\n{note.encode()}", timeout=30)


def test_a_forked_checkpoint_is_refused_by_the_witnesses_and_by_a_quorum_client(platform: Platform) -> None:
    app = platform.app
    log_key = parse_vkey(app.checkpoints.vkey)
    onboard(app)
    issue_accepted(app)
    honest = app.publisher.publish()
    assert honest is not None and sorted(honest.cosigned_by) == ["a", "b"]
    seen, seen_root = platform.head()
    urls = [w.url for w in app.publisher.witnesses]

    # Fork 1: another root at the size the witnesses hold, signed with the platform's real log key.
    history = leaves(platform)
    rewritten = [*history[:-1], merkle.leaf_hash(b"a rewritten last entry")]
    fork_root = merkle.MemoryTree(rewritten).root()
    fork_at_seen = app.checkpoints.sign(seen, fork_root)
    for url in urls:
        response = submit(url, seen, [], fork_at_seen)
        assert response.status_code == 409 and response.text == f"{seen}\n"

    # Fork 2: a bigger tree that does not extend the one they saw, with a proof that is consistent with the
    # fork's own history (so it is not merely a malformed proof: it proves the wrong past).
    fork_tree = merkle.MemoryTree([*rewritten, *(merkle.leaf_hash(b"fork %d" % i) for i in range(5))])
    bigger = app.checkpoints.sign(fork_tree.size, fork_tree.root())
    proof = fork_tree.consistency_proof(seen, fork_tree.size)
    assert merkle.verify_consistency(seen, fork_tree.size, fork_root, fork_tree.root(), proof)
    for url in urls:
        assert submit(url, seen, proof, bigger).status_code == 422

    # The witnesses kept what they saw, and kept the refused forks as evidence.
    for name in ("a", "b"):
        assert platform.held(name) == (seen, seen_root)
        assert len(list((platform.witnesses[name].state.path / "evidence").iterdir())) == 2

    # A client requiring two cosignatures refuses both forks, and a fork wearing the honest cosignatures.
    for fork in (fork_at_seen, bigger):
        with pytest.raises(NoteError, match="0 of the trusted witnesses"):
            open_checkpoint(fork.encode(), log_key, platform.witness_keys, quorum=2)
    stolen = fork_at_seen.with_signatures(parse_note(honest.note).signatures[1:])
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(stolen.encode(), log_key, platform.witness_keys, quorum=2)
    # ... while it accepts the honest head, before and after the log grows on.
    assert open_checkpoint(honest.note, log_key, platform.witness_keys, quorum=2).checkpoint.size == seen
    issue_accepted(app)
    after = app.publisher.publish()
    assert after is not None and sorted(after.cosigned_by) == ["a", "b"]
    assert open_checkpoint(after.note, log_key, platform.witness_keys, quorum=2).checkpoint.size == seen + 2


def test_a_fork_through_the_real_publisher_gets_no_cosignature(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform rewrites history and lets its own publisher sign the rewritten head: the witnesses refuse
    it (the proof from what they hold does not lead to that root), the stored checkpoint carries no
    cosignature, the failures show in the witnesses' status, and a quorum client refuses what is served."""
    app = platform.app
    log_key = parse_vkey(app.checkpoints.vkey)
    onboard(app)
    assert app.publisher.publish() is not None
    seen, seen_root = platform.head()
    issue_accepted(app)
    size, _ = platform.head()
    forged_root = merkle.MemoryTree([*leaves(platform)[:-1], merkle.leaf_hash(b"rewritten")]).root()
    monkeypatch.setattr(app.checkpoints, "root_at", lambda conn, n: forged_root)
    forked = app.publisher.publish()
    assert forked is not None and forked.size == size and forked.cosigned_by == []
    assert all(o.error is not None and "422" in o.error for o in forked.outcomes)
    assert all(o.held_size == seen for o in forked.outcomes)  # what each witness still holds
    for name in ("a", "b"):
        assert platform.held(name) == (seen, seen_root)
    with app.engine.connect() as conn:
        stored_fork = app.checkpoints.at(conn, size)  # the fork is stored, with no cosignature on it
        app.checkpoints.publishing = True  # what `serve` serves: the newest checkpoint that met the quorum
        served_size, served = app.checkpoints.latest(conn)
    with pytest.raises(NoteError, match="0 of the trusted witnesses"):
        open_checkpoint(stored_fork, log_key, platform.witness_keys, quorum=2)
    assert served_size == seen  # never the fork: it stays on the head the witnesses cosigned
    assert open_checkpoint(served, log_key, platform.witness_keys, quorum=2).checkpoint.root_hash == seen_root
    metrics = {m.name: m for m in app.publisher.metrics().witnesses}
    assert metrics["a"].failures == metrics["b"].failures == 1
    assert metrics["a"].lag_entries == size - seen and "422" in (metrics["a"].last_error or "")
