"""The outsider's verifier: pure Python, no database, no network.

It checks, from bytes alone:

* a signed tree head (`TreeHead.verify`);
* an inclusion proof file (`check_inclusion_document`): the entry is at that index of the tree the STH signs;
* a consistency proof file (`check_consistency_document`): the newer tree extends the older one;
* a whole log (`replay`): every entry canonical, in sequence, signed by a key valid at its position, valid
  under the domain rules, and the recomputed Merkle root equal to the signed one;
* only the entries after a saved `ReplayState` (`replay_more`), under the very same checks: what
  `creditflow monitor` runs each day on the new entries alone.

`creditflow verify` uses `replay` and then compares the derived state with the SQL read model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar

from creditflow.kernel.errors import DomainError
from creditflow.ledger import merkle
from creditflow.ledger.entries import Entry, parse_entry, step
from creditflow.ledger.model.certificates import Context
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.replay_state import ReplayState, Resumable
from creditflow.ledger.signing import verify_signature
from creditflow.ledger.tree_head import TreeHead

INCLUSION_KIND = "creditflow.inclusion_proof"
CONSISTENCY_KIND = "creditflow.consistency_proof"


class VerificationFailure(Exception):
    """The first thing found wrong: ``where`` names the entry, row or field, ``what`` says what is wrong."""

    def __init__(self, where: str, what: str):
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what


@dataclass(slots=True)
class ReplayResult:
    state: MemoryState
    tree: merkle.MemoryTree
    entries: list[Entry] = field(default_factory=list)
    op_ids: set[str] = field(default_factory=set)
    last_ts_ms: int = 0


class _SignatureChecks:
    """Ed25519 checks run in batches on a worker thread while the replay goes on.

    libsodium releases the GIL, so on two cores the arithmetic overlaps the Python work of the replay.
    Which key must have signed is still decided in order, by the replay; only the arithmetic is deferred.
    `first_failure` waits for everything and returns the lowest failing entry index."""

    BATCH = 256

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="creditflow-verify")
        self._pending: list[tuple[int, bytes, bytes, bytes]] = []
        self._futures: list[Future[int | None]] = []
        self.seq = 0

    def defer(self, public: bytes, message: bytes, sig: bytes) -> bool:
        if len(public) != 32 or len(sig) != 64:
            return False
        self._pending.append((self.seq, public, message, sig))
        if len(self._pending) >= self.BATCH:
            self._submit()
        return True

    def _submit(self) -> None:
        batch, self._pending = self._pending, []
        self._futures.append(self._pool.submit(_first_bad, batch))

    def first_failure(self) -> int | None:
        if self._pending:
            self._submit()
        failures = [f for f in (fut.result() for fut in self._futures) if f is not None]
        self._futures = []
        return min(failures) if failures else None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _first_bad(batch: list[tuple[int, bytes, bytes, bytes]]) -> int | None:
    for seq, public, message, sig in batch:
        if not verify_signature(public, message, sig):
            return seq
    return None


def replay(
    entries: Iterable[tuple[int, bytes]],
    log_keys: Mapping[str, bytes],
    *,
    progress: Callable[[int], None] | None = None,
    keep_entries: bool = False,
    on_entry: Callable[[Entry], None] | None = None,
) -> ReplayResult:
    """Re-derive everything from the raw log. Raises `VerificationFailure` at the first bad entry.
    ``on_entry`` sees each parsed entry (the database check compares its stored columns there)."""
    checks = _SignatureChecks()
    try:
        try:
            result = _replay(entries, log_keys, checks, progress, keep_entries, on_entry)
        except VerificationFailure as failure:
            _raise_first(checks, failure)
        _check_signatures_done(checks)
        return result
    finally:
        checks.close()


def _seq_of(failure: VerificationFailure) -> int | None:
    prefix = "log entry "
    if failure.where.startswith(prefix) and failure.where[len(prefix) :].isdigit():
        return int(failure.where[len(prefix) :])
    return None


_R = TypeVar("_R", bound=Resumable)


def replay_more(
    entries: Iterable[tuple[int, bytes]],
    log_keys: Mapping[str, bytes],
    start: _R,
    *,
    progress: Callable[[int], None] | None = None,
) -> _R:
    """Replay entries ``start.size, start.size + 1, ...`` from a saved `ReplayState`, under the same rules and
    checks as `replay` (which is this from an empty state): a monitor checks only what is new.

    ``start`` is advanced in place and returned; after a `VerificationFailure` it is half-advanced: discard it
    (restore the snapshot again). ``progress`` sees the absolute number of entries replayed so far."""
    checks = _SignatureChecks()
    try:
        try:
            _advance(entries, log_keys, checks, start, start.frontier, progress, None, None)
        except VerificationFailure as failure:
            _raise_first(checks, failure)
        _check_signatures_done(checks)
        return start
    finally:
        checks.close()


def _raise_first(checks: _SignatureChecks, failure: VerificationFailure) -> NoReturn:
    """Raise the earliest failure: a deferred signature check may have failed before the entry that raised."""
    bad = checks.first_failure()
    first = _seq_of(failure)
    if bad is not None and (first is None or bad <= first):
        raise VerificationFailure(f"log entry {bad}", "bad_signature: a signature does not verify") from failure
    raise failure


def _check_signatures_done(checks: _SignatureChecks) -> None:
    bad = checks.first_failure()
    if bad is not None:
        raise VerificationFailure(f"log entry {bad}", "bad_signature: a signature does not verify")


class _Tree(Protocol):
    @property
    def size(self) -> int: ...
    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]: ...


def _replay(
    entries: Iterable[tuple[int, bytes]],
    log_keys: Mapping[str, bytes],
    checks: _SignatureChecks,
    progress: Callable[[int], None] | None,
    keep_entries: bool,
    on_entry: Callable[[Entry], None] | None,
) -> ReplayResult:
    result = ReplayResult(state=MemoryState(), tree=merkle.MemoryTree())
    at = ReplayState(state=result.state, op_ids=result.op_ids)
    kept = result.entries if keep_entries else None
    _advance(entries, log_keys, checks, at, result.tree, progress, on_entry, kept)
    result.last_ts_ms = at.last_ts_ms
    return result


def _advance(
    entries: Iterable[tuple[int, bytes]],
    log_keys: Mapping[str, bytes],
    checks: _SignatureChecks,
    at: Resumable,
    tree: _Tree,
    progress: Callable[[int], None] | None,
    on_entry: Callable[[Entry], None] | None,
    kept: list[Entry] | None,
) -> None:
    """The replay loop: apply ``entries`` to ``at`` (state, op ids, last timestamp) and their leaves to ``tree``
    (whose size says which entry comes next)."""
    expected = tree.size
    state, op_ids = at.state, at.op_ids
    for seq, data in entries:
        checks.seq = seq
        where = f"log entry {seq}"
        if seq != expected:
            raise VerificationFailure(where, f"expected entry {expected}: the log has a gap or is out of order")
        try:
            entry = parse_entry(data)
        except DomainError as exc:
            raise VerificationFailure(where, exc.message) from exc
        if entry.seq != seq:
            raise VerificationFailure(where, f"entry says it is number {entry.seq}")
        if on_entry is not None:
            on_entry(entry)
        if entry.ts_ms < at.last_ts_ms:
            raise VerificationFailure(where, "timestamp goes backwards")
        op_id = entry.signed.op.op_id
        if op_id in op_ids:
            raise VerificationFailure(where, f"operation {op_id} appears twice (replayed operation)")
        try:
            effects = step(entry.signed, state, Context(seq=seq, ts_ms=entry.ts_ms), log_keys, checks.defer)
        except DomainError as exc:
            raise VerificationFailure(where, f"{exc.code}: {exc.message}") from exc
        state.apply_effects(effects)
        op_ids.add(op_id)
        at.last_ts_ms = entry.ts_ms
        tree.append(merkle.leaf_hash(data))
        if kept is not None:
            kept.append(entry)
        expected += 1
        if progress is not None:
            progress(expected)


def check_tree_head(sth: TreeHead, tree: merkle.MemoryTree, log_keys: Mapping[str, bytes], where: str) -> None:
    if not sth.verify(log_keys):
        raise VerificationFailure(where, "signature of the tree head does not verify")
    if sth.tree_size > tree.size:
        raise VerificationFailure(where, f"signs {sth.tree_size} entries but the log has {tree.size}")
    if tree.root_at(sth.tree_size) != sth.root_hash:
        raise VerificationFailure(where, f"root hash differs from the tree recomputed at size {sth.tree_size}")


def _keys(doc: Mapping[str, Any], trusted: Mapping[str, bytes] | None) -> Mapping[str, bytes]:
    if trusted is not None:
        return trusted
    raw = doc.get("log_keys")
    if not isinstance(raw, Mapping):
        raise VerificationFailure("log_keys", "missing: give the log's public key")
    try:
        return {str(k): bytes.fromhex(v) for k, v in raw.items()}
    except (TypeError, ValueError) as exc:
        raise VerificationFailure("log_keys", "must map key ids to hex public keys") from exc


def _hashes(raw: Any, where: str) -> list[bytes]:
    if not isinstance(raw, list):
        raise VerificationFailure(where, "must be a list of hex hashes")
    try:
        return [bytes.fromhex(h) for h in raw]
    except (TypeError, ValueError) as exc:
        raise VerificationFailure(where, "must be a list of hex hashes") from exc


def _sth(raw: Any, where: str, keys: Mapping[str, bytes]) -> TreeHead:
    try:
        sth = TreeHead.from_json(raw)
    except ValueError as exc:
        raise VerificationFailure(where, str(exc)) from exc
    if not sth.verify(keys):
        raise VerificationFailure(where, "signature does not verify under the log key")
    return sth


def check_inclusion_document(doc: Any, trusted_keys: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """Verify an inclusion proof file; return a summary, or raise `VerificationFailure`."""
    if not isinstance(doc, Mapping) or doc.get("kind") != INCLUSION_KIND:
        raise VerificationFailure("kind", f"not a {INCLUSION_KIND} document")
    keys = _keys(doc, trusted_keys)
    sth = _sth(doc.get("tree_head"), "tree_head", keys)
    index = doc.get("leaf_index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise VerificationFailure("leaf_index", "must be an integer")
    try:
        entry = bytes.fromhex(doc.get("entry", ""))
    except (TypeError, ValueError) as exc:
        raise VerificationFailure("entry", "must be hex") from exc
    path = _hashes(doc.get("audit_path"), "audit_path")
    if not merkle.verify_inclusion(merkle.leaf_hash(entry), index, sth.tree_size, path, sth.root_hash):
        raise VerificationFailure("audit_path", "the entry is not included at that index under the signed root")
    try:
        parsed = parse_entry(entry)
    except DomainError as exc:
        raise VerificationFailure("entry", exc.message) from exc
    if parsed.seq != index:
        raise VerificationFailure("entry", f"entry says it is number {parsed.seq}, proof says {index}")
    return {
        "kind": INCLUSION_KIND,
        "leaf_index": index,
        "tree_size": sth.tree_size,
        "root_hash": sth.root_hash.hex(),
        "operation": parsed.signed.payload,
    }


def check_consistency_document(doc: Any, trusted_keys: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """Verify a consistency proof file; return a summary, or raise `VerificationFailure`."""
    if not isinstance(doc, Mapping) or doc.get("kind") != CONSISTENCY_KIND:
        raise VerificationFailure("kind", f"not a {CONSISTENCY_KIND} document")
    keys = _keys(doc, trusted_keys)
    old = _sth(doc.get("old_tree_head"), "old_tree_head", keys)
    new = _sth(doc.get("new_tree_head"), "new_tree_head", keys)
    proof = _hashes(doc.get("proof"), "proof")
    if not merkle.verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof):
        raise VerificationFailure("proof", "the newer tree does not extend the older one")
    return {
        "kind": CONSISTENCY_KIND,
        "old_tree_size": old.tree_size,
        "new_tree_size": new.tree_size,
        "old_root_hash": old.root_hash.hex(),
        "new_root_hash": new.root_hash.hex(),
    }


def check_proof_document(doc: Any, trusted_keys: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """Verify an inclusion or a consistency proof file, whichever it is; raise `VerificationFailure` if not."""
    if isinstance(doc, Mapping) and doc.get("kind") == INCLUSION_KIND:
        return check_inclusion_document(doc, trusted_keys)
    return check_consistency_document(doc, trusted_keys)


def pinned_key(doc: Any, log_key_hex: str) -> dict[str, bytes]:
    """The log key an outsider trusts (hex), under the key id the proof's tree head names."""
    heads = doc if isinstance(doc, Mapping) else {}
    head = heads.get("tree_head") or heads.get("new_tree_head") or {}
    key_id = head.get("key_id", "log-1") if isinstance(head, Mapping) else "log-1"
    return {key_id: bytes.fromhex(log_key_hex)}


def main(argv: list[str] | None = None) -> int:
    """``python -m creditflow.ledger.verifier PROOF.json --log-key HEX``: 0 valid, 1 invalid, 2 unusable input.

    Runs on the standard library alone (``python -S`` included): without PyNaCl the signatures are checked by
    the pure-Python RFC 8032 code. The log key is required: a proof checked under the key it carries proves
    nothing about who signed it."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m creditflow.ledger.verifier",
        description="Check a creditflow inclusion or consistency proof offline: no database, no network.",
    )
    parser.add_argument("proof", help="a proof file written by `creditflow proof ...` or GET /v1/log/...")
    parser.add_argument("--log-key", required=True, help="the log's Ed25519 public key (64 hex digits) you trust")
    args = parser.parse_args(argv)
    try:
        with open(args.proof, encoding="utf-8") as f:
            doc = json.load(f)
        trusted = pinned_key(doc, args.log_key)
    except (OSError, ValueError) as exc:
        print(f"cannot use {args.proof} with that key: {exc}", file=sys.stderr)
        return 2
    try:
        summary = check_proof_document(doc, trusted)
    except VerificationFailure as failure:
        print(f"PROOF INVALID at {failure.where}: {failure.what}", file=sys.stderr)
        return 1
    print("proof valid: " + json.dumps(summary, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
