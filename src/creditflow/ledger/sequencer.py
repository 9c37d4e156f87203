"""The sequencer: the single writer of the log, with group commit.

Submitters hand signed operations to a bounded queue and wait; one writer thread takes up to
``sequencer_batch_max`` at a time and, in ONE transaction: locks the log head, loads every piece,
certificate, party and key the batch touches, checks and applies each operation in order (the same
`step` the offline verifier replays), appends the entries, extends the Merkle tree, signs a tree head,
and commits. Only then are the submitters answered: an acknowledged operation is durable, and an
operation that failed its rules left no trace. A failed commit fails the whole batch and nothing is
acknowledged.

On SQLite a second thread, the pre-verifier, checks the waiting submissions' Ed25519 signatures ahead of
the writer (libsodium releases the GIL); the writer uses a verdict only for the exact key, signature and
message it was reached for, never waits for it, and still decides which key is valid where (see
`Sequencer._prepare`).

Across processes the head-row lock (PostgreSQL ``FOR UPDATE``, SQLite ``BEGIN IMMEDIATE``) keeps one
appender at a time, so several API workers may each run a sequencer against the same database.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from creditflow.config import Settings
from creditflow.kernel.clock import Clock
from creditflow.kernel.errors import Conflict, DomainError, Unavailable
from creditflow.ledger import merkle, store
from creditflow.ledger.entries import SignedOperation, entry_bytes, step
from creditflow.ledger.model.certificates import Certificate, Context, Effects, Piece
from creditflow.ledger.model.parties import PLATFORM, Party, PartyKey
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.signing import Signer, verify_signature
from creditflow.ledger.tree_head import TreeHead, sign_tree_head

log = logging.getLogger(__name__)

Precheck = Callable[[Connection, MemoryState], None]
Projection = Callable[[Connection, Effects, MemoryState], None]
"""Runs in the batch transaction after an operation is accepted, before the in-memory state moves on,
to keep an off-ledger table in step with the ledger (e.g. release a payable when a certificate goes void)."""
"""Runs in the batch transaction (inside a savepoint) after the ledger's rules accepted the operation and
before its effects are written; it may read and write off-ledger tables (e.g. reserve a payable) and
raises `DomainError` to refuse the operation, which then leaves no trace."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """The acknowledgement of a committed operation."""

    seq: int
    op_id: str
    op_type: str
    ts_ms: int
    leaf_hash: str
    tree_size: int
    result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "op_id": self.op_id,
            "op_type": self.op_type,
            "ts_ms": self.ts_ms,
            "leaf_hash": self.leaf_hash,
            "tree_size": self.tree_size,
            "result": self.result,
        }


@dataclass(slots=True)
class _Submission:
    signed: SignedOperation
    precheck: Precheck | None
    future: Future[Receipt]
    # (public key, signature) pairs the pre-verifier found valid over this operation's message.
    verified: frozenset[tuple[bytes, bytes]] = frozenset()
    claimed: bool = False  # taken by the writer: too late to pre-verify

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """`step`'s signature check: a pair the pre-verifier already checked over this very message is
        not checked twice; anything else (a key it did not know, a failure) is checked here."""
        if (public_key, signature) in self.verified and message == self.signed.message:
            return True
        return verify_signature(public_key, message, signature)


class SequencerClosed(RuntimeError):
    pass


class _StateCache:
    """What the writer knew after its last commit: the pieces, certificates, parties and keys it read or
    wrote, valid while the log is still the size it left it. Every one of them changes only through the
    log, and the log only grows under the head lock, so if the head still shows our own last size nobody
    else (another worker) has written, and these objects are what the database holds. A different size,
    or a failed batch, drops everything. Bounded: past ``max_pieces`` it starts over."""

    def __init__(self, max_pieces: int = 200_000):
        self.max_pieces = max_pieces
        self.size: int | None = None
        self.pieces: dict[str, Piece] = {}
        self.certificates: dict[str, Certificate] = {}
        self.parties: dict[str, Party] = {}
        self.keys: dict[str, list[PartyKey]] = {}  # all keys of each party held

    def clear(self) -> None:
        self.size = None
        self.pieces.clear()
        self.certificates.clear()
        self.parties.clear()
        self.keys.clear()

    def valid_at(self, size: int) -> bool:
        if self.size != size:
            self.clear()
            return False
        return True

    def keep(self, state: MemoryState, size: int) -> None:
        if len(self.pieces) + len(state.pieces) > self.max_pieces:
            self.clear()
        # Only live pieces can be read again by a later operation; spent ones are history.
        for piece_id, piece in state.pieces.items():
            if piece.live:
                self.pieces[piece_id] = piece
            else:
                self.pieces.pop(piece_id, None)
        self.certificates.update(state.certificates)
        self.parties.update(state.parties)
        for org_id, keys in state.party_keys.items():
            if org_id in state.parties:
                self.keys[org_id] = list(keys.values())
        self.size = size


class Sequencer:
    def __init__(
        self,
        engine: Engine,
        log_signer: Signer,
        platform_keys: Mapping[str, bytes],
        clock: Clock,
        settings: Settings,
        projections: Sequence[Projection] = (),
    ):
        self._engine = engine
        self._projections = tuple(projections)
        self._log_signer = log_signer
        self._platform_keys = dict(platform_keys)
        self._clock = clock
        self._batch_max = settings.sequencer_batch_max
        self._timeout_s = settings.sequencer_timeout_s
        self._queue: queue.Queue[_Submission | None] = queue.Queue(maxsize=settings.sequencer_queue_max)
        # The same submissions, for the pre-verifier to work ahead of the writer (it never waits for it).
        self._ahead: queue.SimpleQueue[_Submission | None] | None = None
        preverify = settings.sequencer_preverify
        if preverify is None:
            preverify = engine.dialect.name == "sqlite"
        if preverify:
            self._ahead = queue.SimpleQueue()
        # (signer, key_id) -> public key, as of the last commit; replaced whole (readers take a reference).
        self._public_keys: dict[tuple[str, str], bytes] = {(PLATFORM, k): v for k, v in platform_keys.items()}
        self._frontier: merkle.CompactRange | None = None
        self._cache = _StateCache()
        self._thread: threading.Thread | None = None
        self._verifier: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.batches_committed = 0
        self.ops_committed = 0
        self.ops_preverified = 0  # committed operations whose signatures the pre-verifier had checked

    # --- submitting ------------------------------------------------------------------------------

    def submit_async(
        self, signed: SignedOperation, precheck: Precheck | None = None, *, block: bool = True
    ) -> Future[Receipt]:
        """Queue an operation; the future resolves after its batch commits. With ``block=False`` (event
        loops) a full queue answers `ledger_busy` at once instead of waiting for room."""
        if self._closed:
            raise SequencerClosed("the sequencer is closed")
        self._ensure_thread()
        future: Future[Receipt] = Future()
        submission = _Submission(signed, precheck, future)
        try:
            self._queue.put(submission, block=block, timeout=self._timeout_s if block else None)
        except queue.Full as exc:
            raise Unavailable("the ledger is overloaded; retry later", code="ledger_busy") from exc
        if self._ahead is not None:
            self._ahead.put(submission)
        return future

    def submit(self, signed: SignedOperation, precheck: Precheck | None = None) -> Receipt:
        """Submit and wait for the commit. Raises the operation's `DomainError` if it was refused."""
        return self.submit_async(signed, precheck).result(timeout=self._timeout_s)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        with self._start_lock:
            self._closed = True
            thread, verifier = self._thread, self._verifier
        if thread is not None:
            self._queue.put(None)
            thread.join()
        if verifier is not None and self._ahead is not None:
            self._ahead.put(None)
            verifier.join()

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                if self._ahead is not None:
                    self._verifier = threading.Thread(target=self._prepare, name="creditflow-preverify", daemon=True)
                    self._verifier.start()
                self._thread = threading.Thread(target=self._run, name="creditflow-sequencer", daemon=True)
                self._thread.start()

    # --- the pre-verifier ------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Check the signatures of waiting submissions under the keys the last commit knew, ahead of the
        writer: libsodium releases the GIL, so the Ed25519 arithmetic runs on the other core while the
        writer works. The writer never waits for this: what it takes before it was pre-verified, it
        checks itself. And this decides nothing: the writer still resolves each signer's key at the
        entry's position in `step` and checks there whatever was not pre-verified under exactly that
        key (an unknown key, a failure), so a stale key table can only cost time."""
        assert self._ahead is not None
        while True:
            sub = self._ahead.get()
            if sub is None:
                return
            if not sub.claimed:
                self._preverify(sub)

    def _preverify(self, sub: _Submission) -> None:
        keys = self._public_keys
        signed = sub.signed
        try:
            message = signed.message
            sub.verified = frozenset(
                (public, block.sig)
                for block in signed.sigs
                if (public := keys.get((block.signer, block.key_id))) is not None
                and verify_signature(public, message, block.sig)
            )
        except Exception:  # pragma: no cover - the writer checks it again and answers the submitter
            log.debug("pre-verification of %s skipped", signed.op.op_id, exc_info=True)

    def _learn_keys(self, state: MemoryState) -> None:
        """After a commit: the public keys the batch read or registered, for the pre-verifier."""
        known = self._public_keys
        fresh = {
            (org_id, key.key_id): key.public_key
            for org_id, keys in state.party_keys.items()
            for key in keys.values()
            if known.get((org_id, key.key_id)) != key.public_key
        }
        if fresh:
            self._public_keys = {**known, **fresh}

    # --- the writer ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            first.claimed = True
            batch = [first]
            stop = False
            while len(batch) < self._batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                item.claimed = True
                batch.append(item)
            self._process(batch)
            if stop:
                return

    def _process(self, batch: list[_Submission]) -> None:
        try:
            outcomes, frontier, state = self._commit(batch)
        except Exception as exc:  # the transaction rolled back: nothing of the batch happened
            log.exception("sequencer batch of %d failed", len(batch))
            self._frontier = None
            self._cache.clear()
            for sub in batch:
                if not sub.future.done():
                    sub.future.set_exception(exc)
            return
        self._frontier = frontier
        self._cache.keep(state, frontier.size)
        self._learn_keys(state)
        for sub, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                sub.future.set_exception(outcome)
            else:
                sub.future.set_result(outcome)

    def _load_state(self, conn: Connection, batch: list[_Submission], size: int) -> MemoryState:
        """Everything the batch may read: from the cache of the last commit if the log has not moved
        since, the rest from the database."""
        piece_ids: set[str] = set()
        cert_ids: set[str] = set()
        party_ids: set[str] = set()
        for sub in batch:
            refs = sub.signed.op.references()
            piece_ids |= refs.pieces
            cert_ids |= refs.certificates
            party_ids |= refs.parties
        cache = self._cache
        if not cache.valid_at(size):
            return self._read_state(conn, piece_ids, cert_ids, party_ids)
        pieces = [cache.pieces[i] for i in piece_ids if i in cache.pieces]
        pieces += store.load_pieces(conn, piece_ids - cache.pieces.keys())
        cert_ids |= {p.certificate_id for p in pieces}
        certs = [cache.certificates[i] for i in cert_ids if i in cache.certificates]
        certs += store.load_certificates(conn, cert_ids - cache.certificates.keys())
        roots = {c.root_piece_id for c in certs} - {p.id for p in pieces}
        pieces += [cache.pieces[i] for i in roots if i in cache.pieces]
        pieces += store.load_pieces(conn, roots - cache.pieces.keys())
        parties = [cache.parties[i] for i in party_ids if i in cache.parties]
        parties += store.load_parties(conn, party_ids - cache.parties.keys())
        keys = [k for i in party_ids if i in cache.keys for k in cache.keys[i]]
        keys += store.load_keys(conn, party_ids - cache.keys.keys())
        state = MemoryState(keep_events=False)
        state.load(pieces, certs, parties, keys)
        return state

    def _read_state(
        self, conn: Connection, piece_ids: set[str], cert_ids: set[str], party_ids: set[str]
    ) -> MemoryState:
        pieces = store.load_pieces(conn, piece_ids)
        cert_ids |= {p.certificate_id for p in pieces}
        certs = store.load_certificates(conn, cert_ids)
        roots = {c.root_piece_id for c in certs} - {p.id for p in pieces}
        if roots:
            pieces += store.load_pieces(conn, roots)
        state = MemoryState(keep_events=False)
        state.load(pieces, certs, store.load_parties(conn, party_ids), store.load_keys(conn, party_ids))
        return state

    def _commit(
        self, batch: list[_Submission]
    ) -> tuple[list[Receipt | BaseException], merkle.CompactRange, MemoryState]:
        outcomes: list[Receipt | BaseException] = []
        with self._engine.begin() as conn:
            size, last_ts = store.lock_head(conn)
            if self._frontier is not None and self._frontier.size == size:
                frontier = self._frontier.copy()
            else:
                frontier = merkle.CompactRange.from_fetch(size, lambda nodes: store.fetch_nodes(conn, nodes))
            ts_ms = max(self._clock.now_ms(), last_ts)
            state = self._load_state(conn, batch, size)
            # Snapshot of what the database holds, to tell inserts from guarded updates.
            loaded_pieces: dict[str, Piece] = dict(state.pieces)
            loaded_certs: dict[str, Certificate] = dict(state.certificates)
            loaded_parties: set[str] = set(state.parties)
            loaded_keys: dict[tuple[str, str], PartyKey] = {
                (k.org_id, k.key_id): k for keys in state.party_keys.values() for k in keys.values()
            }
            seen = store.existing_op_ids(conn, [s.signed.op.op_id for s in batch])
            entries: list[dict[str, Any]] = []
            nodes: list[tuple[int, int, bytes]] = []
            events = []
            seq = size
            for sub in batch:
                signed = sub.signed
                op_id = signed.op.op_id
                if op_id in seen:
                    outcomes.append(
                        Conflict(
                            f"operation {op_id} was already submitted",
                            code="replayed_operation",
                            field="op_id",
                        )
                    )
                    continue
                ctx = Context(seq=seq, ts_ms=ts_ms)
                try:
                    # The ledger's own rules answer first (a spent piece is "already spent", whatever else
                    # is wrong); only then the off-ledger checks, whose writes a savepoint can undo.
                    effects = step(signed, state, ctx, self._platform_keys, sub.verify)
                    if sub.precheck is not None:
                        with conn.begin_nested():
                            sub.precheck(conn, state)
                except DomainError as exc:
                    outcomes.append(exc)
                    continue
                for project in self._projections:
                    project(conn, effects, state)
                state.apply_effects(effects)
                events.extend(effects.events)
                seen.add(op_id)
                data = entry_bytes(signed, seq, ts_ms)
                leaf = merkle.leaf_hash(data)
                nodes.extend(frontier.append(leaf))
                entries.append(
                    {
                        "seq": seq,
                        "op_id": op_id,
                        "op_type": signed.op.TYPE,
                        "actor": signed.op.actor,
                        "ts_ms": ts_ms,
                        "entry": data,
                        "leaf_hash": leaf,
                    }
                )
                outcomes.append(Receipt(seq, op_id, signed.op.TYPE, ts_ms, leaf.hex(), 0, effects.result))
                seq += 1
            if seq == size:
                return outcomes, frontier, state  # nothing valid in this batch; the transaction commits nothing
            head = sign_tree_head(self._log_signer, seq, frontier.root(), ts_ms)
            self._write(
                conn,
                state,
                loaded_pieces,
                loaded_certs,
                loaded_parties,
                loaded_keys,
                entries,
                nodes,
                events,
                head,
            )
        self.batches_committed += 1
        self.ops_committed += seq - size
        self.ops_preverified += sum(
            1 for sub, o in zip(batch, outcomes, strict=True) if sub.verified and isinstance(o, Receipt)
        )
        final = [
            Receipt(o.seq, o.op_id, o.op_type, o.ts_ms, o.leaf_hash, seq, o.result) if isinstance(o, Receipt) else o
            for o in outcomes
        ]
        return final, frontier, state

    @staticmethod
    def _write(
        conn: Connection,
        state: MemoryState,
        loaded_pieces: dict[str, Piece],
        loaded_certs: dict[str, Certificate],
        loaded_parties: set[str],
        loaded_keys: dict[tuple[str, str], PartyKey],
        entries: list[dict[str, Any]],
        nodes: list[tuple[int, int, bytes]],
        events: list[Any],
        head: TreeHead,
    ) -> None:
        new_pieces = [p for pid, p in state.pieces.items() if pid not in loaded_pieces]
        changed_pieces = [
            (loaded_pieces[pid], p)
            for pid, p in state.pieces.items()
            if pid in loaded_pieces and p != loaded_pieces[pid]
        ]
        new_certs = [c for cid, c in state.certificates.items() if cid not in loaded_certs]
        changed_certs = [c for cid, c in state.certificates.items() if cid in loaded_certs and c != loaded_certs[cid]]
        new_parties: list[Party] = [p for oid, p in state.parties.items() if oid not in loaded_parties]
        all_keys = [k for keys in state.party_keys.values() for k in keys.values()]
        new_keys = [k for k in all_keys if (k.org_id, k.key_id) not in loaded_keys]
        changed_keys = [
            k for k in all_keys if (k.org_id, k.key_id) in loaded_keys and k != loaded_keys[(k.org_id, k.key_id)]
        ]
        store.write_batch(
            conn,
            entries=entries,
            nodes=nodes,
            new_pieces=new_pieces,
            changed_pieces=changed_pieces,
            new_certificates=new_certs,
            changed_certificates=changed_certs,
            new_parties=new_parties,
            new_keys=new_keys,
            changed_keys=changed_keys,
            events=events,
            tree_head=head,
        )
