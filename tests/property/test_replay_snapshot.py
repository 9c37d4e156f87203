"""Incremental replay: a snapshot of the replay after k entries, restored, replays k..n to exactly the state a full
replay of 0..n reaches (`creditflow monitor` relies on it to replay only new entries).

The log is real: every kind of operation made through the services on a SQLite App (see tests/monitor_log.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_settings
from creditflow.bootstrap import build
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.encoding import decode, encode
from creditflow.ledger import merkle
from creditflow.ledger.entries import entry_bytes, parse_entry
from creditflow.ledger.replay_state import (
    ReplayState,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    snapshot_value,
)
from creditflow.ledger.verifier import VerificationFailure, replay, replay_more
from monitor_log import log_entries, more_entries, varied_log

START_MS = 1_780_000_000_000


@pytest.fixture(scope="module")
def real_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[tuple[int, bytes]], dict[str, bytes]]]:
    path = Path(tmp_path_factory.mktemp("replay")) / "log.db"
    with build(make_settings(f"sqlite:///{path}"), clock=ManualClock(START_MS)) as app:
        varied_log(app)
        more_entries(app, 20)
        yield list(log_entries(app)), app.log_keys


def full_state(entries: list[tuple[int, bytes]], keys: dict[str, bytes]) -> ReplayState:
    """A full replay's result as a ReplayState (its frontier read off the full tree)."""
    result = replay(entries, keys)
    frontier = merkle.CompactRange.from_fetch(result.tree.size, result.tree.fetch)
    result.state.keep_events = False
    return ReplayState(state=result.state, frontier=frontier, op_ids=result.op_ids, last_ts_ms=result.last_ts_ms)


def test_the_log_has_every_kind_of_operation(real_log: tuple[list[tuple[int, bytes]], dict[str, bytes]]) -> None:
    entries, _keys = real_log
    kinds = {parse_entry(data).signed.payload["type"] for _seq, data in entries}
    assert kinds >= {"register_party", "issue", "accept", "transfer", "split", "freeze", "unfreeze", "reject"}
    assert kinds >= {"rotate_key", "expire"}


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_snapshot_then_resume_equals_a_full_replay(
    real_log: tuple[list[tuple[int, bytes]], dict[str, bytes]], data: st.DataObject
) -> None:
    entries, keys = real_log
    n = len(entries)
    k = data.draw(st.integers(0, n), label="k")
    j = data.draw(st.integers(k, n), label="j")  # two resumptions: k, then j
    whole = full_state(entries, keys)

    first = replay_more(entries[:k], keys, ReplayState())
    saved = encode_snapshot(first)
    restored = decode_snapshot(saved)
    assert encode_snapshot(restored) == saved  # exact round trip
    middle = replay_more(entries[k:j], keys, restored)
    again = decode_snapshot(encode_snapshot(middle))
    resumed = replay_more(entries[j:], keys, again)

    assert resumed.size == n
    assert resumed.root_hash == whole.root_hash == merkle.root_from_leaves([merkle.leaf_hash(e) for _, e in entries])
    assert snapshot_value(resumed) == snapshot_value(whole)
    assert encode_snapshot(resumed) == encode_snapshot(whole) == encode(snapshot_value(whole))  # canonical bytes


def test_what_was_seen_before_the_snapshot_still_counts(
    real_log: tuple[list[tuple[int, bytes]], dict[str, bytes]],
) -> None:
    """An operation replayed after the snapshot, and a timestamp going back across it, are refused: the op ids and
    the last timestamp are part of the state, not only the parties and pieces."""
    entries, keys = real_log
    n = len(entries)
    saved = encode_snapshot(replay_more(entries, keys, ReplayState()))
    old = parse_entry(entries[3][1])
    last_ts = parse_entry(entries[-1][1]).ts_ms
    replayed = entry_bytes(old.signed, n, last_ts)
    with pytest.raises(VerificationFailure, match="appears twice"):
        replay_more([(n, replayed)], keys, decode_snapshot(saved))
    fresh_op = parse_entry(entries[-1][1])
    earlier = entry_bytes(fresh_op.signed, n, last_ts - 1)
    with pytest.raises(VerificationFailure, match="timestamp goes backwards"):
        replay_more([(n, earlier)], keys, decode_snapshot(saved))
    with pytest.raises(VerificationFailure, match=f"expected entry {n}"):
        replay_more([(n + 1, entries[-1][1])], keys, decode_snapshot(saved))


def test_a_damaged_or_reordered_snapshot_is_refused(
    real_log: tuple[list[tuple[int, bytes]], dict[str, bytes]],
) -> None:
    entries, keys = real_log
    saved = encode_snapshot(replay_more(entries, keys, ReplayState()))
    value = decode(saved)
    bad_root = dict(value, root_hash="00" * 32)
    reordered = dict(value, pieces=list(reversed(value["pieces"])))
    wrong_version = dict(value, v=2)
    bad_state = dict(value, pieces=[dict(value["pieces"][0], state="stolen"), *value["pieces"][1:]])
    for doc, message in [
        (bad_root, "root_hash"),
        (reordered, "normal form"),
        (wrong_version, "version"),
        (bad_state, "pieces"),
    ]:
        with pytest.raises(SnapshotError, match=message):
            decode_snapshot(encode(doc))
    with pytest.raises(SnapshotError, match="canonical"):
        decode_snapshot(saved.replace(b'{"', b'{ "', 1))
    amount = b'"amount_minor":%d,' % value["pieces"][0]["amount_minor"]
    assert amount in saved
    with pytest.raises(SnapshotError, match="wrong type"):  # "1" for 1 would re-encode to the same bytes
        decode_snapshot(encode(dict(value, pieces=[dict(value["pieces"][0], amount_minor="1"), *value["pieces"][1:]])))
    duplicated = dict(value, pieces=[value["pieces"][0], *value["pieces"]])
    with pytest.raises(SnapshotError, match="normal form"):
        decode_snapshot(encode(duplicated))


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_the_monitors_store_replays_in_rounds_to_the_full_replays_snapshot(
    real_log: tuple[list[tuple[int, bytes]], dict[str, bytes]],
    data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`replay_store.ReplayStore` (rows read on demand, changed rows committed each round) in random rounds, closed
    and reopened between them, ends byte for byte at the canonical snapshot of a full replay; a snapshot imported
    into a store exports unchanged."""
    from creditflow.ledger.replay_store import ReplayStore

    entries, keys = real_log
    cuts = sorted(data.draw(st.lists(st.integers(0, len(entries)), max_size=4), label="cuts"))
    path = Path(tmp_path_factory.mktemp("store")) / "replay.sqlite"
    done = 0
    for cut in [*cuts, len(entries)]:
        with ReplayStore(path) as store:
            at = store.begin()
            assert at.size == done
            replay_more(entries[done:cut], keys, at)
            store.commit(at)
        done = cut
    whole = encode_snapshot(full_state(entries, keys))
    with ReplayStore(path) as store:
        assert encode_snapshot(store.export()) == whole
    other = Path(tmp_path_factory.mktemp("import")) / "replay.sqlite"
    with ReplayStore(other) as store:
        store.import_snapshot(decode_snapshot(whole))
        assert encode_snapshot(store.export()) == whole


def test_a_round_that_fails_commits_nothing(
    real_log: tuple[list[tuple[int, bytes]], dict[str, bytes]], tmp_path: Path
) -> None:
    from creditflow.ledger.replay_store import ReplayStore

    entries, keys = real_log
    path = tmp_path / "replay.sqlite"
    with ReplayStore(path) as store:
        at = store.begin()
        replay_more(entries[:10], keys, at)
        store.commit(at)
        before = encode_snapshot(store.export())
        bad = store.begin()
        replayed = entry_bytes(parse_entry(entries[3][1]).signed, 11, parse_entry(entries[10][1]).ts_ms)
        with pytest.raises(VerificationFailure, match="appears twice"):  # op ids seen in an earlier round count
            replay_more([entries[10], (11, replayed)], keys, bad)
        assert encode_snapshot(store.export()) == before
