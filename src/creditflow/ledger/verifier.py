"""The outsider's verifier: pure Python, no database, no network.

It checks, from bytes alone:

* a signed tree head (`TreeHead.verify`);
* an inclusion proof file (`check_inclusion_document`): the entry is at that index of the tree the STH signs;
* a consistency proof file (`check_consistency_document`): the newer tree extends the older one;
* a C2SP tlog-proof file (`check_tlog_proof`): the entry is at that index of the tree the checkpoint
  signs, and the checkpoint is signed by a trusted log and cosigned by a quorum of trusted witnesses
  (a c2sp.org/tlog-policy, `creditflow.ledger.policy`); `verify_file` reads either kind of file under
  the keys an outsider gives, which is what both command lines run;
* a whole log (`replay`): every entry canonical, in sequence, signed by a key valid at its position, valid
  under the domain rules, and the recomputed Merkle root equal to the signed one;
* only the entries after a saved `ReplayState` (`replay_more`), under the very same checks: what
  `creditflow monitor` runs each day on the new entries alone.

`creditflow verify` uses `replay` and then compares the derived state with the SQL read model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar

from creditflow.kernel.errors import DomainError
from creditflow.ledger import merkle
from creditflow.ledger.entries import Entry, parse_entry, step
from creditflow.ledger.model.certificates import Context
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.note import (
    ED25519,
    NoteError,
    OpenedCheckpoint,
    VerifierKey,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    parse_vkey,
)
from creditflow.ledger.policy import NONE, Policy, PolicyError, parse_policy
from creditflow.ledger.replay_state import ReplayState, Resumable
from creditflow.ledger.signing import verify_signature
from creditflow.ledger.tlog_proof import HEADER as TLOG_PROOF_HEADER
from creditflow.ledger.tlog_proof import TlogProofError, parse_tlog_proof
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


def _open(note: str, policy: Policy, where: str = "checkpoint") -> OpenedCheckpoint:
    """The checkpoint ``note`` opened under ``policy``: signed by one of its logs (``where`` otherwise), and
    cosigned by its quorum (``cosignatures`` otherwise, saying how many trusted witnesses did)."""
    if not policy.logs:
        raise VerificationFailure(where, "no trusted log key to check the checkpoint against")
    failures = []
    for log in policy.logs:
        try:
            open_checkpoint(note, log)
        except NoteError as exc:
            failures.append(str(exc))
            continue
        try:
            opened = open_checkpoint(note, log, policy.witness_keys, quorum=0)
        except NoteError as exc:  # a trusted witness's cosignature that fails voids the note (signed-note)
            raise VerificationFailure("cosignatures", str(exc)) from exc
        if not policy.met_by(opened.witnesses):
            names = ", ".join(k.name for k in opened.witnesses) or "none"
            raise VerificationFailure(
                "cosignatures",
                f"{len(opened.witnesses)} of the {len(policy.witnesses)} trusted witnesses cosigned ({names}); "
                f"the policy needs {policy.needs()}",
            )
        return opened
    raise VerificationFailure(where, "; ".join(failures))


def _witness_summary(opened: OpenedCheckpoint | None, policy: Policy | None) -> dict[str, Any]:
    if opened is None or policy is None:
        return {"trusted": False}
    return {
        "trusted": True,
        "log": next(k.name for k in policy.logs if opened.note.verified_by([k])),
        "witnesses": [k.name for k in opened.witnesses],
        "quorum": policy.needs(),
    }


def check_inclusion_document(
    doc: Any, trusted_keys: Mapping[str, bytes] | None = None, policy: Policy | None = None
) -> dict[str, Any]:
    """Verify an inclusion proof file; return a summary, or raise `VerificationFailure`.

    With a ``policy``, the document's checkpoint (of the same size and root as its tree head) must be
    signed by a trusted log and cosigned by the policy's quorum, and the tree head is checked under that
    log's key unless ``trusted_keys`` says otherwise."""
    if not isinstance(doc, Mapping) or doc.get("kind") != INCLUSION_KIND:
        raise VerificationFailure("kind", f"not a {INCLUSION_KIND} document")
    opened = None
    note = doc.get("checkpoint")
    if policy is not None:
        if not isinstance(note, str):
            if policy.quorum != NONE:
                raise VerificationFailure("checkpoint", "missing: this proof carries no checkpoint, so no cosignatures")
            if trusted_keys is None and policy.logs:
                trusted_keys = pinned_key(doc, policy.logs[0].public_key.hex())
        elif trusted_keys is None:  # the tree head is checked under the key of the log that signed the checkpoint
            opened = _open(note, policy)
            log = next(k for k in policy.logs if opened.note.verified_by([k]))
            trusted_keys = pinned_key(doc, log.public_key.hex())
    keys = _keys(doc, trusted_keys)
    sth = _sth(doc.get("tree_head"), "tree_head", keys)
    if policy is not None and isinstance(note, str) and opened is None:
        opened = _open(note, policy)
    if opened is not None and (opened.checkpoint.size, opened.checkpoint.root_hash) != (sth.tree_size, sth.root_hash):
        raise VerificationFailure("checkpoint", "its size and root are not the tree head's")
    index = doc.get("leaf_index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise VerificationFailure("leaf_index", "must be an integer")
    try:
        entry = bytes.fromhex(doc.get("entry", ""))
    except (TypeError, ValueError) as exc:
        raise VerificationFailure("entry", "must be hex") from exc
    path = _hashes(doc.get("audit_path"), "audit_path")
    summary = _included(entry, index, sth.tree_size, path, sth.root_hash)
    return {"kind": INCLUSION_KIND, **summary, **(_witness_summary(opened, policy) if policy else {})}


def _included(entry: bytes, index: int, size: int, path: list[bytes], root: bytes) -> dict[str, Any]:
    if not merkle.verify_inclusion(merkle.leaf_hash(entry), index, size, path, root):
        raise VerificationFailure("audit_path", "the entry is not included at that index under the signed root")
    try:
        parsed = parse_entry(entry)
    except DomainError as exc:
        raise VerificationFailure("entry", exc.message) from exc
    if parsed.seq != index:
        raise VerificationFailure("entry", f"entry says it is number {parsed.seq}, proof says {index}")
    return {"leaf_index": index, "tree_size": size, "root_hash": root.hex(), "operation": parsed.signed.payload}


def check_tlog_proof(data: str | bytes, policy: Policy | None) -> dict[str, Any]:
    """Verify a c2sp.org/tlog-proof file whose ``extra`` is the entry; return a summary or raise
    `VerificationFailure`. With ``policy=None`` only the Merkle math is checked: the checkpoint's
    signatures are not, so the result proves nothing about who signed (the summary says ``trusted: false``)."""
    try:
        proof = parse_tlog_proof(data)
    except TlogProofError as exc:
        raise VerificationFailure("tlog-proof", str(exc)) from exc
    try:
        checkpoint = parse_checkpoint(parse_note(proof.checkpoint).text)
    except NoteError as exc:
        raise VerificationFailure("checkpoint", str(exc)) from exc
    opened = None if policy is None else _open(proof.checkpoint, policy)
    if proof.extra is None:
        raise VerificationFailure("extra", "missing: a creditflow proof carries the entry's bytes as its extra data")
    summary = _included(proof.extra, proof.index, checkpoint.size, list(proof.audit_path), checkpoint.root_hash)
    return {"kind": TLOG_PROOF_HEADER, "origin": checkpoint.origin, **summary, **_witness_summary(opened, policy)}


def check_consistency_document(
    doc: Any, trusted_keys: Mapping[str, bytes] | None = None, policy: Policy | None = None
) -> dict[str, Any]:
    """Verify a consistency proof file; return a summary, or raise `VerificationFailure`. Its tree heads
    carry no cosignatures: a ``policy`` that needs some cannot be met by it."""
    if not isinstance(doc, Mapping) or doc.get("kind") != CONSISTENCY_KIND:
        raise VerificationFailure("kind", f"not a {CONSISTENCY_KIND} document")
    if policy is not None:
        if policy.quorum != NONE:
            raise VerificationFailure("cosignatures", "a consistency proof carries no cosignatures: use quorum none")
        if trusted_keys is None and policy.logs:
            trusted_keys = pinned_key(doc, policy.logs[0].public_key.hex())
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


def check_proof_document(
    doc: Any, trusted_keys: Mapping[str, bytes] | None = None, policy: Policy | None = None
) -> dict[str, Any]:
    """Verify an inclusion or a consistency proof file, whichever it is; raise `VerificationFailure` if not."""
    if isinstance(doc, Mapping) and doc.get("kind") == INCLUSION_KIND:
        return check_inclusion_document(doc, trusted_keys, policy)
    return check_consistency_document(doc, trusted_keys, policy)


def pinned_key(doc: Any, log_key_hex: str) -> dict[str, bytes]:
    """The log key an outsider trusts (hex), under the key id the proof's tree head names."""
    heads = doc if isinstance(doc, Mapping) else {}
    head = heads.get("tree_head") or heads.get("new_tree_head") or {}
    key_id = head.get("key_id", "log-1") if isinstance(head, Mapping) else "log-1"
    return {key_id: bytes.fromhex(log_key_hex)}


# --- one file, the keys an outsider gives: what both command lines run --------------------------------------

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNTRUSTED = 4  # the Merkle math holds, but no trusted log key was given: nothing is proved about who signed
UNTRUSTED_WARNING = (
    "UNTRUSTED: the Merkle math holds, but no trusted log key was given, so this proved NOTHING about who "
    "signed it (anyone can write a self-consistent proof). Pass --log-vkey, --log-key or --policy."
)


class UnusableInput(ValueError):
    """The file, a key or the policy cannot be read: nothing was checked."""


@dataclass(frozen=True, slots=True)
class Verdict:
    summary: dict[str, Any]
    trusted: bool  # checked under a log key the caller gave (else: the Merkle math only)


def _origin_of(data: bytes, doc: Any) -> str:
    """The log name a bare ``--log-key HEX`` is given: the origin of the proof's checkpoint."""
    try:
        note = parse_tlog_proof(data).checkpoint if doc is None else doc.get("checkpoint")
        return parse_checkpoint(parse_note(note).text).origin if isinstance(note, str) else "log"
    except (TlogProofError, NoteError, AttributeError):
        return "log"


def make_policy(
    data: bytes,
    doc: Any,
    *,
    log_key_hex: str | None,
    log_vkeys: Sequence[str],
    witness_vkeys: Sequence[str],
    quorum: int | None,
    policy_text: str | None,
) -> Policy:
    """The policy the command-line options give (a --policy file, or the keys and count given one by one)."""
    try:
        if policy_text is not None:
            if log_vkeys or witness_vkeys or quorum is not None:
                raise UnusableInput("--policy says everything: do not add --log-vkey, --witness or --quorum")
            policy = parse_policy(policy_text)
        else:
            witnesses = [parse_vkey(v) for v in witness_vkeys]
            if quorum is None:
                quorum = len(witnesses)  # every witness named on the command line must have cosigned
            logs = [parse_vkey(v) for v in log_vkeys]
            policy = Policy.simple(logs, witnesses, quorum)
        if log_key_hex:
            key = bytes.fromhex(log_key_hex)
            if len(key) != 32:
                raise UnusableInput("--log-key must be 64 hex digits (an Ed25519 public key)")
            policy = Policy((*policy.logs, VerifierKey(_origin_of(data, doc), ED25519, key)), *_rest(policy))
    except (NoteError, PolicyError) as exc:
        raise UnusableInput(str(exc)) from exc
    except ValueError as exc:
        if isinstance(exc, UnusableInput):
            raise
        raise UnusableInput(f"--log-key must be hex: {exc}") from exc
    return policy


def _rest(policy: Policy) -> tuple[Any, Any, str]:
    return policy.witnesses, policy.groups, policy.quorum


def verify_file(
    data: bytes,
    *,
    log_key_hex: str | None = None,
    log_vkeys: Sequence[str] = (),
    witness_vkeys: Sequence[str] = (),
    quorum: int | None = None,
    policy_text: str | None = None,
) -> Verdict:
    """Check a proof file (JSON inclusion or consistency proof, or a .tlog-proof) under the keys given.

    Raises `UnusableInput` when something cannot be read and `VerificationFailure` when the proof is wrong.
    Without any trusted log key, only the Merkle math (and, for JSON, the signature under the key inside
    the file) is checked: the verdict says ``trusted=False``."""
    doc = None
    if not data.startswith(TLOG_PROOF_HEADER.encode()):
        import json

        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise UnusableInput(f"neither a tlog-proof nor a JSON proof: {exc}") from exc
    policy = make_policy(
        data,
        doc,
        log_key_hex=log_key_hex,
        log_vkeys=log_vkeys,
        witness_vkeys=witness_vkeys,
        quorum=quorum,
        policy_text=policy_text,
    )
    trusted = bool(policy.logs)
    if doc is None:
        return Verdict(check_tlog_proof(data, policy if trusted else None), trusted)
    keys = pinned_key(doc, log_key_hex) if log_key_hex else None
    return Verdict(check_proof_document(doc, keys, policy if trusted else None), trusted)


def main(argv: list[str] | None = None) -> int:
    """``python -m creditflow.ledger.verifier PROOF [--log-vkey V | --log-key HEX] [--witness W]... [--quorum N]
    [--policy FILE]``: 0 valid under the trusted keys, 1 invalid, 2 unusable input, 4 the Merkle math holds
    but no trusted log key was given (proved nothing about who signed).

    Runs on the standard library alone (``python -S`` included): without PyNaCl the signatures are checked by
    the pure-Python RFC 8032 code."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m creditflow.ledger.verifier",
        description="Check a creditflow proof (JSON, or a C2SP .tlog-proof) offline: no database, no network.",
    )
    parser.add_argument("proof", help="a proof file written by `creditflow proof ...` or GET /v1/log/...")
    parser.add_argument("--log-key", help="the log's Ed25519 public key (64 hex digits) you trust")
    parser.add_argument("--log-vkey", action="append", default=[], help="the log's note verifier key you trust")
    parser.add_argument("--witness", action="append", default=[], help="a witness's cosigner vkey you trust")
    parser.add_argument("--quorum", type=int, help="how many of the --witness keys must have cosigned (default: all)")
    parser.add_argument("--policy", help="a c2sp.org/tlog-policy file of trusted logs, witnesses and the quorum")
    args = parser.parse_args(argv)
    try:
        with open(args.proof, "rb") as f:
            data = f.read()
        policy_text = None
        if args.policy:
            with open(args.policy, encoding="utf-8") as f:
                policy_text = f.read()
        verdict = verify_file(
            data,
            log_key_hex=args.log_key,
            log_vkeys=args.log_vkey,
            witness_vkeys=args.witness,
            quorum=args.quorum,
            policy_text=policy_text,
        )
    except (OSError, UnusableInput) as exc:
        print(f"cannot use {args.proof} with those keys: {exc}", file=sys.stderr)
        return 2
    except VerificationFailure as failure:
        print(f"PROOF INVALID at {failure.where}: {failure.what}", file=sys.stderr)
        return EXIT_INVALID
    summary = json.dumps(verdict.summary, ensure_ascii=False, sort_keys=True)
    if not verdict.trusted:
        print(UNTRUSTED_WARNING, file=sys.stderr)
        print("math only, signer unproven: " + summary)
        return EXIT_UNTRUSTED
    print("proof valid: " + summary)
    return EXIT_VALID


if __name__ == "__main__":
    raise SystemExit(main())
