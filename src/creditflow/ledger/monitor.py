"""The auditor's monitor: keep the last checkpoint verified, and each round check only what is new.

A round (`run_round`) over a tlog-tiles source (``fetch(path) -> bytes``, paths as under ``/log/``):

1. fetch ``checkpoint`` and open it under the policy (the log's key, a quorum of trusted witnesses);
2. compare it with the last verified one: smaller is a SHRINK, same size with another root is a FORK;
   larger must be proven consistent: a consistency proof read from the NEW tree's tiles (every tile checked
   against the new signed root by `tiles.TileHashReader`), verified against the OLD root. It fails: FORK;
3. with entry access, fetch only the bundles covering the entries not yet replayed, check every entry's leaf
   hash against the level-0 tiles, and replay them from the saved replay state (`replay_store`) under the ledger's
   rules (`verifier.replay_more`): a rule broken is a RULE_VIOLATION;
4. persist the new replay state (one SQLite transaction) and checkpoint (temporary file, fsync, rename, fsync
   the directory).

What a round fetches is the new checkpoint, O(log n) tiles for the proof, and the tiles and bundles of the new
entries: the cost of the new entries, not of the whole log. Nothing here needs more than the standard library
(the CLI brings HTTP), so a mirror on disk can be checked with nothing installed.

Alerts go to ``alerts.jsonl`` in the state directory, one JSON object a line, with the signed evidence (both
checkpoints of a fork are signed by the log: together they prove it showed two histories).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creditflow.ledger import merkle, tiles
from creditflow.ledger.note import (
    Checkpoint,
    NoteError,
    VerifierKey,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    parse_vkey,
)
from creditflow.ledger.replay_state import ReplayState, SnapshotError
from creditflow.ledger.replay_store import ReplayStore, StoredReplay
from creditflow.ledger.verifier import VerificationFailure, replay_more

STATE_VERSION = 1
POLICY_FILE = "policy.json"
CHECKPOINT_FILE = "checkpoint"
REPLAY_FILE = "replay.sqlite"
ALERTS_FILE = "alerts.jsonl"
LOCK_FILE = ".lock"

EXIT_OK = 0
EXIT_ERROR = 1  # network, access or state-directory trouble: nothing proven, the old state kept
EXIT_FORK = 2  # fork, shrink, or data that does not match what the log signed
EXIT_RULES = 3  # an entry breaks the ledger's rules

Fetch = Callable[[str], bytes]


class FetchError(Exception):
    """The source could not give ``path`` (network, HTTP status): nothing is proven either way."""

    def __init__(self, path: str, what: str, status: int | None = None):
        super().__init__(f"{path}: {what}")
        self.path = path
        self.status = status


class MonitorError(Exception):
    """The state directory or the policy is unusable (exit 1, nothing written)."""


# Alert kinds and their exit codes.
FORK = "fork"
SHRINK = "shrink"
BAD_CHECKPOINT = "bad_checkpoint"  # not signed as the policy requires
BAD_TILES = "bad_tiles"  # the tiles do not rebuild the signed root
BAD_ENTRIES = "bad_entries"  # a bundle entry is not the leaf the signed tree holds
RULE_VIOLATION = "rule_violation"
_EXIT = {FORK: EXIT_FORK, SHRINK: EXIT_FORK, BAD_CHECKPOINT: EXIT_FORK, BAD_TILES: EXIT_FORK}
_EXIT |= {BAD_ENTRIES: EXIT_FORK, RULE_VIOLATION: EXIT_RULES}


@dataclass(frozen=True)
class Alert:
    kind: str
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return _EXIT[self.kind]


class _Raised(Exception):
    def __init__(self, alert: Alert):
        super().__init__(alert.message)
        self.alert = alert


@dataclass(frozen=True)
class Policy:
    """What the auditor trusts: the log's key and origin, the witnesses and how many must cosign."""

    log_key: VerifierKey
    witnesses: tuple[VerifierKey, ...] = ()
    quorum: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "log_vkey": self.log_key.encode(),
            "witnesses": [w.encode() for w in self.witnesses],
            "quorum": self.quorum,
        }

    @classmethod
    def from_json(cls, value: Any) -> Policy:
        if not isinstance(value, dict) or value.get("v") != STATE_VERSION:
            raise MonitorError(f"{POLICY_FILE} is not a version {STATE_VERSION} monitor policy")
        return make_policy(value.get("log_vkey"), value.get("witnesses") or [], value.get("quorum") or 0)


def make_policy(log_vkey: Any, witnesses: list[Any], quorum: int) -> Policy:
    """Parse and check a policy: an Ed25519 log key, cosignature/v1 witness keys, 0 <= quorum <= witnesses."""
    try:
        log_key = parse_vkey(str(log_vkey))
        keys = tuple(parse_vkey(str(w)) for w in witnesses)
    except NoteError as exc:
        raise MonitorError(f"bad verifier key: {exc}") from None
    if log_key.sig_type != 0x01:
        raise MonitorError("the log key must be an Ed25519 (0x01) note key: `creditflow log-key --vkey` prints it")
    if any(k.sig_type != 0x04 for k in keys):
        raise MonitorError("witness keys must be cosignature/v1 (0x04) keys")
    if not isinstance(quorum, int) or not 0 <= quorum <= len(keys):
        raise MonitorError(f"the quorum must be between 0 and the {len(keys)} witness key(s) given")
    return Policy(log_key, keys, quorum)


class _AnyPlatformKeyId(Mapping[str, bytes]):
    """The log's platform-signed entries name the key by a local key id; the monitor trusts one key (the note
    key's Ed25519 public key), so every id maps to it: a signature still has to verify under that key."""

    def __init__(self, public_key: bytes):
        self._key = public_key

    def __getitem__(self, key_id: str) -> bytes:
        return self._key

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def get(self, key_id: str, default: Any = None) -> bytes:
        return self._key


# --- the state directory -------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all or nothing: temporary file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateDir:
    """``policy.json`` (trusted keys), ``checkpoint`` (the last verified one, as served), ``replay.sqlite``
    (the replay state, when entries were replayed) and ``alerts.jsonl``."""

    def __init__(self, path: Path):
        self.path = path

    @property
    def exists(self) -> bool:
        return (self.path / POLICY_FILE).exists()

    def init(self, policy: Policy) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / POLICY_FILE, (json.dumps(policy.to_json(), indent=2) + "\n").encode())

    def policy(self) -> Policy:
        try:
            return Policy.from_json(json.loads((self.path / POLICY_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise MonitorError(f"cannot read {self.path / POLICY_FILE}: {exc}") from None

    def checkpoint(self) -> tuple[str, Checkpoint] | None:
        path = self.path / CHECKPOINT_FILE
        if not path.exists():
            return None
        try:
            text = path.read_text(encoding="utf-8")
            return text, parse_checkpoint(parse_note(text).text)
        except (OSError, ValueError) as exc:
            raise MonitorError(f"cannot read {path}: {exc}") from None

    @property
    def has_replay(self) -> bool:
        return (self.path / REPLAY_FILE).exists()

    def replay_store(self) -> ReplayStore:
        """The saved replay state (created empty on first use)."""
        try:
            return ReplayStore(self.path / REPLAY_FILE)
        except (sqlite3.Error, SnapshotError) as exc:
            raise MonitorError(f"cannot use {self.path / REPLAY_FILE}: {exc}") from None

    def snapshot(self) -> ReplayState | None:
        """The whole saved replay state (`replay_state.encode_snapshot` gives its canonical snapshot)."""
        if not self.has_replay:
            return None
        with self.replay_store() as replay:
            return replay.export()

    def save(self, checkpoint_text: str, replayed: tuple[ReplayStore, StoredReplay] | None) -> None:
        if replayed is not None:
            store, at = replayed
            store.commit(at)
        write_atomic(self.path / CHECKPOINT_FILE, checkpoint_text.encode())

    def record(self, alert: Alert, url: str, old_size: int | None, new_size: int | None) -> dict[str, Any]:
        row = {
            "ts": int(time.time()),
            "kind": alert.kind,
            "message": alert.message,
            "url": url,
            "old_size": old_size,
            "new_size": new_size,
            **dict(alert.evidence),
        }
        with open(self.path / ALERTS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return row

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One monitor per state directory at a time (a second one would race the renames)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "w") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise MonitorError(f"another monitor is using {self.path}") from None
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --- a round -------------------------------------------------------------------------------------------


@dataclass
class RoundResult:
    old_size: int | None
    new_size: int | None = None
    entry_access: bool = False
    entries_replayed: int = 0
    replayed_to: int | None = None  # the size the saved replay state has reached
    tiles_fetched: int = 0
    bundles_fetched: int = 0
    seconds: float = 0.0
    snapshot_seconds: float = 0.0  # of `seconds`: committing the replay state's changed rows
    alert: Alert | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.alert is None else self.alert.exit_code

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.alert is None,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "entry_access": self.entry_access,
            "entries_replayed": self.entries_replayed,
            "replayed_to": self.replayed_to,
            "tiles_fetched": self.tiles_fetched,
            "bundles_fetched": self.bundles_fetched,
            "seconds": round(self.seconds, 3),
            "snapshot_seconds": round(self.snapshot_seconds, 3),
            "alert": None if self.alert is None else {"kind": self.alert.kind, "message": self.alert.message},
            "notes": self.notes,
        }


def _bundle_refs(start: int, stop: int) -> list[tiles.TileRef]:
    """The bundles holding entries ``start .. stop-1`` of a log of ``stop`` entries."""
    if start >= stop:
        return []
    first, last = start // tiles.TILE_WIDTH, (stop - 1) // tiles.TILE_WIDTH
    return [tiles.TileRef(None, n, min(tiles.TILE_WIDTH, stop - n * tiles.TILE_WIDTH)) for n in range(first, last + 1)]


def run_round(
    state: StateDir,
    fetch: Fetch,
    *,
    fetch_entries: Fetch | None = None,
    url: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> RoundResult:
    """One check. ``fetch_entries`` (None: no entry access) fetches bundles. Raises `FetchError` on network
    trouble and `MonitorError` on an unusable state directory, with nothing written; an alert is returned
    (and recorded in alerts.jsonl), never raised."""
    started = time.perf_counter()
    policy = state.policy()
    saved = state.checkpoint()
    old = saved[1] if saved else None
    result = RoundResult(old_size=old.size if old else None, entry_access=fetch_entries is not None)
    counted = _Counting(fetch_entries) if fetch_entries is not None else None
    reader: tiles.TileHashReader | None = None
    proven: str | None = None  # the new checkpoint, once it is proven to extend the old one
    replay: ReplayStore | None = None
    try:
        new_text, new = _open(fetch, policy)
        result.new_size = new.size
        reader = tiles.TileHashReader(new.size, new.root_hash, fetch)
        _check_against_old(reader, saved, new_text, new)
        proven = new_text
        replayed = None
        if counted is not None:
            replay = state.replay_store()
            at = _replay_new(replay.begin(), reader, counted, policy, new, result, progress)
            replayed = (replay, at)
            result.replayed_to = at.size
        elif state.has_replay:
            result.notes.append("no entry access: consistency only; the saved replay state stays where it was")
        else:
            result.notes.append("no entry access: consistency only, no entry was replayed")
        saving = time.perf_counter()
        state.save(new_text, replayed)
        result.snapshot_seconds = time.perf_counter() - saving if replayed else 0.0
    except _Raised as raised:
        result.alert = raised.alert
        state.record(raised.alert, url, result.old_size, result.new_size)
        if proven is not None:  # bad entries or a broken rule: the tree itself is consistent, keep it
            state.save(proven, None)
    except (sqlite3.Error, SnapshotError) as exc:  # the checkpoint is written after the replay state: kept as is
        raise MonitorError(f"the saved replay state in {state.path} is unusable: {exc}") from None
    finally:
        if replay is not None:
            replay.close()
        result.tiles_fetched = reader.fetched if reader is not None else 0
        result.bundles_fetched = counted.count if counted is not None else 0
        result.seconds = time.perf_counter() - started
    return result


class _Counting:
    def __init__(self, fetch: Fetch):
        self._fetch = fetch
        self.count = 0

    def __call__(self, path: str) -> bytes:
        self.count += 1
        return self._fetch(path)


def _open(fetch: Fetch, policy: Policy) -> tuple[str, Checkpoint]:
    raw = fetch("checkpoint")
    try:
        text = raw.decode("utf-8")
        opened = open_checkpoint(text, policy.log_key, policy.witnesses, policy.quorum)
    except (UnicodeDecodeError, NoteError) as exc:
        raise _Raised(Alert(BAD_CHECKPOINT, f"the served checkpoint does not verify under the policy: {exc}")) from None
    return text, opened.checkpoint


def _check_against_old(
    reader: tiles.TileHashReader, saved: tuple[str, Checkpoint] | None, new_text: str, new: Checkpoint
) -> None:
    evidence = {"new_checkpoint": new_text}
    if saved is None:
        _tiles_rebuild_root(reader, evidence)
        return
    old_text, old = saved
    evidence["old_checkpoint"] = old_text
    if new.size < old.size:
        raise _Raised(Alert(SHRINK, f"the log shrank from {old.size} to {new.size} entries", evidence))
    if new.size == old.size:
        if new.root_hash != old.root_hash:
            raise _Raised(Alert(FORK, f"two different trees of size {new.size}, both signed by the log", evidence))
        return
    _tiles_rebuild_root(reader, evidence)
    if old.size == 0:
        return  # every tree extends the empty one (whose root the log signed as EMPTY_ROOT)
    try:
        proof = reader.consistency_proof(old.size)
    except tiles.TileError as exc:
        raise _Raised(Alert(BAD_TILES, f"the tiles do not match the signed checkpoint: {exc}", evidence)) from None
    if not merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof):
        message = f"the tree of size {new.size} does not extend the verified tree of size {old.size}"
        raise _Raised(Alert(FORK, message, {**evidence, "proof": [h.hex() for h in proof]}))


def _tiles_rebuild_root(reader: tiles.TileHashReader, evidence: Mapping[str, Any]) -> None:
    try:
        reader.root_at(reader.size)
    except tiles.TileError as exc:
        raise _Raised(Alert(BAD_TILES, f"the tiles do not match the signed checkpoint: {exc}", evidence)) from None


def _replay_new(
    at: StoredReplay,
    reader: tiles.TileHashReader,
    fetch: Fetch,
    policy: Policy,
    new: Checkpoint,
    result: RoundResult,
    progress: Callable[[int, int], None] | None,
) -> StoredReplay:
    start = at.size
    evidence = {"replayed_to": start}
    if start > new.size:
        raise _Raised(Alert(SHRINK, f"the log has {new.size} entries; {start} were replayed before", evidence))
    if start == new.size:  # nothing new: the saved replay must have reached the signed root itself
        if at.root_hash != new.root_hash:
            message = f"the entries replayed up to {start} are not the signed tree of that size"
            raise _Raised(Alert(FORK, message, evidence))
        return at
    try:
        if start and reader.root_at(start) != at.root_hash:
            message = f"the entries replayed up to {start} are not the first {start} of the signed tree"
            raise _Raised(Alert(FORK, message, evidence))
    except tiles.TileError as exc:
        raise _Raised(Alert(BAD_TILES, f"the tiles do not match the signed checkpoint: {exc}", evidence)) from None

    def entries() -> Iterator[tuple[int, bytes]]:
        for ref in _bundle_refs(start, new.size):
            try:  # every entry of the bundle hashed against the (checked) level-0 tile before it is used
                bundle = reader.check_bundle(ref, fetch(ref.path))
            except tiles.TileError as exc:
                raise _Raised(Alert(BAD_ENTRIES, str(exc), {**evidence, "bundle": ref.path})) from None
            first = ref.index * tiles.TILE_WIDTH
            for seq in range(max(first, start), first + ref.width):
                yield seq, bundle[seq - first]

    def tick(done: int) -> None:
        result.entries_replayed = done - start
        if progress is not None:
            progress(done - start, new.size - start)

    try:
        replay_more(entries(), _AnyPlatformKeyId(policy.log_key.public_key), at, progress=tick)
    except VerificationFailure as failure:
        message = f"{failure.where}: {failure.what}"
        raise _Raised(Alert(RULE_VIOLATION, message, {**evidence, "where": failure.where})) from None
    if at.root_hash != new.root_hash:  # cannot happen once every leaf matched; checked all the same
        raise _Raised(Alert(BAD_ENTRIES, "the replayed entries do not rebuild the signed root", evidence))
    return at
