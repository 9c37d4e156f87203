"""The checkpoint publisher: signs the newest tree head as a C2SP checkpoint, has the witnesses cosign it, stores it.

Every ``checkpoint_interval_s`` (in its own thread, started only by `creditflow serve`), when the log has grown
or a witness has not yet cosigned the newest published checkpoint:

1. one short read: the current size and root, and the size each witness holds (``witness_status``; a witness
   never seen holds 0);
2. the checkpoint is signed (`Checkpoints.sign`) and sent to every witness *in parallel* (c2sp.org/tlog-witness
   ``POST <url>/add-checkpoint`` with the consistency proof from the size it holds, each proof read in its own
   short transaction), each request bounded by ``witness_timeout_s``. A 409 teaches the size the witness really
   holds (its ``text/x.tlog.size`` body) and the submission is retried once from there;
3. the cosignatures that verify under the configured witness keys are added to the note, and one short write
   stores it (``log_checkpoints``) with what each witness now holds and its last error (``witness_status``).

No database lock or transaction is held while waiting for a witness, so appends never wait for one; the witnesses
are asked at once, so a slow one delays only the round's end (by at most its timeout), never another witness's
request. With no witnesses configured each round still stores the log-signed checkpoint.

What `/log/checkpoint` serves while a publisher runs is decided in `Checkpoints.latest`.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ALL_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import httpx

from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Engine
from creditflow.ledger import merkle, store
from creditflow.ledger.checkpoints import Checkpoints
from creditflow.ledger.note import (
    Note,
    NoteError,
    NoteSignature,
    VerifierKey,
    parse_note,
    parse_vkey,
)

log = logging.getLogger("creditflow.publisher")

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_ANSWER_BYTES = 64 * 1024  # a witness's answer is a few signature lines


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """A configured witness: its cosigner key (type 0x04) and its submission prefix."""

    name: str
    key: VerifierKey
    url: str

    @classmethod
    def of(cls, name: str, vkey: str, url: str) -> WitnessEndpoint:
        return cls(name, parse_vkey(vkey), url.rstrip("/"))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One witness's answer in one round: what it holds now, its cosignature, or what went wrong."""

    name: str
    held_size: int
    cosignature: NoteSignature | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    size: int
    note: str
    outcomes: tuple[Outcome, ...]

    @property
    def cosigned_by(self) -> list[str]:
        return [o.name for o in self.outcomes if o.cosignature is not None]


@dataclass(frozen=True, slots=True)
class WitnessMetric:
    name: str
    lag_entries: int  # published size minus the size it holds
    seconds_since_cosigned: float | None  # None: never cosigned
    failures: int  # failed submissions counted by this process
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PublisherMetrics:
    published_size: int | None  # the newest published checkpoint's
    published_cosignatures: int  # how many cosignatures it carries
    quorum: int
    quorum_size: int | None  # the newest published checkpoint that meets the quorum (what `serve` serves)
    rounds: int
    witnesses: tuple[WitnessMetric, ...]


class _Rejected(Exception):
    """A witness's answer that is not a cosignature; the message is stored as its last error."""

    def __init__(self, message: str, held_size: int | None = None):
        super().__init__(message)
        self.held_size = held_size


@dataclass
class _Counters:
    rounds: int = 0
    failures: dict[str, int] = field(default_factory=dict)


class CheckpointPublisher:
    def __init__(
        self,
        engine: Engine,
        checkpoints: Checkpoints,
        witnesses: Sequence[WitnessEndpoint],
        clock: Clock,
        *,
        interval_s: float,
        timeout_s: float,
        transport: httpx.BaseTransport | None = None,
    ):
        self.engine = engine
        self.checkpoints = checkpoints
        self.witnesses = tuple(witnesses)
        self.clock = clock
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._transport = transport
        self._clients: dict[str, httpx.Client] = {}
        self._counters = _Counters(failures={w.name: 0 for w in self.witnesses})
        self._counters_lock = threading.Lock()
        self._round_lock = threading.Lock()  # one round at a time (the thread, or a test calling publish())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Two threads per witness: a request abandoned at the round's deadline may still hold one.
        self._pool = ThreadPoolExecutor(max_workers=max(1, 2 * len(self.witnesses)), thread_name_prefix="witness")

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Publish now, then every ``interval_s`` (0: never start), in a daemon thread; `stop` ends it."""
        if self.interval_s <= 0 or self.running:
            return
        self._stop.clear()
        self.checkpoints.publishing = True
        self._thread = threading.Thread(target=self._run, name="creditflow-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.timeout_s + 5)
            self._thread = None
        self.checkpoints.publishing = False

    def close(self) -> None:
        self.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish()
            except Exception:  # a database hiccup: log it and try again next round
                log.exception("checkpoint publication failed")
            self._stop.wait(self.interval_s)

    # --- one round -----------------------------------------------------------------------------------

    def publish(self) -> Publication | None:
        """One round (see the module docstring); None when there was nothing to do."""
        with self._round_lock:
            return self._publish()

    def _publish(self) -> Publication | None:
        with self.engine.connect().execution_options(read_only=True) as conn:
            size = store.read_head(conn)[0]
            published = store.checkpoint_at(conn, size)
            held = {str(r["name"]): int(r["tree_size"]) for r in store.witness_rows(conn)}
            root = None if published is not None else self.checkpoints.root_at(conn, size)
        if published is None:
            assert root is not None
            note = self.checkpoints.sign(size, root)
            pending = list(self.witnesses)
        else:
            note = parse_note(published)
            pending = [w for w in self.witnesses if held.get(w.name, 0) < size]
            if not pending:
                return None
        bare = self._log_signed(note)
        with self._counters_lock:
            self._counters.rounds += 1
        outcomes = self._ask(pending, bare, size, held)
        cosignatures = [o.cosignature for o in outcomes if o.cosignature is not None]
        merged = note.with_signatures(cosignatures)
        now = self.clock.now_ms()
        with self.engine.begin() as conn:
            current = store.checkpoint_at(conn, size)
            if current is not None:  # another round (another process) stored it meanwhile: keep both's cosignatures
                merged = parse_note(current).with_signatures(merged.signatures)
            encoded = merged.encode()
            store.save_checkpoint(conn, size, encoded, self._cosignature_count(merged), now)
            for o in outcomes:
                store.save_witness_status(
                    conn, o.name, tree_size=o.held_size, now_ms=now, cosigned=o.cosignature is not None, error=o.error
                )
        if self.witnesses and self._cosignature_count(merged) < self.checkpoints.quorum:
            log.warning(
                "checkpoint %d has %d cosignatures, the quorum is %d: /log/checkpoint stays on the last one that met it",
                size,
                self._cosignature_count(merged),
                self.checkpoints.quorum,
            )
        failed = [o for o in outcomes if o.error is not None]
        if failed:
            with self._counters_lock:
                for o in failed:
                    self._counters.failures[o.name] = self._counters.failures.get(o.name, 0) + 1
            log.warning("checkpoint %d: %s", size, "; ".join(f"{o.name}: {o.error}" for o in failed))
        return Publication(size, encoded, tuple(outcomes))

    def _cosignature_count(self, note: Note) -> int:
        key = self.checkpoints.verifier
        return sum(1 for s in note.signatures if (s.name, s.key_id) != (key.name, key.key_id))

    def _log_signed(self, note: Note) -> Note:
        """The note with the log's own signature only: what a witness is asked to cosign."""
        key = self.checkpoints.verifier
        return Note(note.text, tuple(s for s in note.signatures if (s.name, s.key_id) == (key.name, key.key_id)))

    def _ask(self, pending: list[WitnessEndpoint], note: Note, size: int, held: dict[str, int]) -> list[Outcome]:
        futures: dict[Future[Outcome], WitnessEndpoint] = {
            self._pool.submit(self._submit, w, note, size, held.get(w.name, 0)): w for w in pending
        }
        # Each request is bounded by the timeout, and a 409 costs one retry: the round waits no longer.
        done, _ = wait(futures, timeout=2 * self.timeout_s + 1, return_when=ALL_COMPLETED)
        outcomes = []
        for future, w in futures.items():
            if future in done and future.exception() is None:
                outcomes.append(future.result())
            elif future in done:
                outcomes.append(Outcome(w.name, held.get(w.name, 0), error=f"internal error: {future.exception()}"))
            else:
                outcomes.append(Outcome(w.name, held.get(w.name, 0), error=f"no answer in {2 * self.timeout_s:g} s"))
        return outcomes

    def _client(self, w: WitnessEndpoint) -> httpx.Client:
        client = self._clients.get(w.name)
        if client is None:
            client = httpx.Client(
                timeout=self.timeout_s,
                transport=self._transport,
                headers={"user-agent": "creditflow-checkpoint-publisher"},
            )
            self._clients[w.name] = client
        return client

    def _submit(self, w: WitnessEndpoint, note: Note, size: int, old: int) -> Outcome:
        """add-checkpoint from the size ``w`` holds; on a 409 once more from the size it says it holds."""
        for attempt in (1, 2):
            if old > size:
                return Outcome(
                    w.name, old, error=f"it holds size {old}, more than the log's {size}: a fork or a rollback"
                )
            try:
                return Outcome(w.name, size, cosignature=self._post(w, note, old))
            except _Rejected as exc:
                if exc.held_size is None or exc.held_size == old or attempt == 2:
                    return Outcome(w.name, old if exc.held_size is None else exc.held_size, error=str(exc))
                old = exc.held_size
            except httpx.HTTPError as exc:
                return Outcome(w.name, old, error=f"{type(exc).__name__}: {exc}"[:400])
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, w: WitnessEndpoint, note: Note, old: int) -> NoteSignature:
        size = int(note.text.split("\n", 2)[1])
        with self.engine.connect().execution_options(read_only=True) as conn:
            proof = merkle.consistency_proof(old, size, lambda nodes: store.fetch_nodes(conn, nodes)) if old else []
        body = f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + note.encode()
        with self._client(w).stream(
            "POST", f"{w.url}/add-checkpoint", content=body.encode(), headers={"content-type": "text/plain"}
        ) as response:
            answer = _read_limited(response)
        text = answer.decode("utf-8", "replace")
        if response.status_code == 409 and response.headers.get("content-type", "").split(";")[0] == SIZE_CONTENT_TYPE:
            try:
                held = int(text.strip())
            except ValueError:
                raise _Rejected(f"409 with a malformed size {text[:40]!r}") from None
            if held == old:
                raise _Rejected(f"409: it holds size {held} with another root hash (a fork?)", held)
            raise _Rejected(f"409: it holds size {held}, not {old}", held)
        if response.status_code != 200:
            raise _Rejected(f"HTTP {response.status_code}: {text.strip()[:200]}")
        try:
            answered = parse_note(note.text + "\n" + text)
            good = answered.verified_by([w.key])
        except NoteError as exc:
            raise _Rejected(f"its answer is not a valid cosignature: {exc}") from None
        if not good:
            raise _Rejected("its answer carries no cosignature from its configured key")
        return next(s for s in answered.signatures if (s.name, s.key_id) == (w.key.name, w.key.key_id))

    # --- metrics -------------------------------------------------------------------------------------

    def metrics(self) -> PublisherMetrics:
        quorum = self.checkpoints.quorum
        with self.engine.connect().execution_options(read_only=True) as conn:
            latest = store.latest_checkpoint(conn)
            met = store.latest_checkpoint(conn, quorum) if quorum else latest
            rows = {str(r["name"]): r for r in store.witness_rows(conn)}
        published = None if latest is None else latest[0]
        cosignatures = 0 if latest is None else self._cosignature_count(parse_note(latest[1]))
        now = self.clock.now_ms()
        with self._counters_lock:
            failures = dict(self._counters.failures)
            rounds = self._counters.rounds
        out = []
        for w in self.witnesses:
            row = rows.get(w.name)
            held = 0 if row is None else int(row["tree_size"])
            last = None if row is None else row["last_cosigned_ts_ms"]
            out.append(
                WitnessMetric(
                    name=w.name,
                    lag_entries=max(0, (published or 0) - held),
                    seconds_since_cosigned=None if last is None else max(0.0, (now - int(last)) / 1000),
                    failures=failures.get(w.name, 0),
                    last_error=None if row is None else row["last_error"],
                )
            )
        return PublisherMetrics(
            published_size=published,
            published_cosignatures=cosignatures,
            quorum=quorum,
            quorum_size=None if met is None else met[0],
            rounds=rounds,
            witnesses=tuple(out),
        )


def _read_limited(response: httpx.Response) -> bytes:
    chunks, total = [], 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > MAX_ANSWER_BYTES:
            raise _Rejected("its answer is too large")
        chunks.append(chunk)
    return b"".join(chunks)
