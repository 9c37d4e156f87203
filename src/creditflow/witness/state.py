"""A witness's state directory: its cosigner key, the logs it knows, and per log the latest checkpoint it cosigned.

Layout (docs/transparency/witness.md)::

    DIR/cosigner.key            {"v": 1, "name": NAME, "seed": base64(32-byte Ed25519 seed)}, mode 0600, made once
    DIR/logs.json               {"v": 1, "logs": {origin: log vkey}}
    DIR/checkpoints/<id>.note   the latest checkpoint cosigned for one log (the signed note as it came)
    DIR/locks/<id>.lock         fcntl lock files: one per log, plus "logs.lock" for logs.json
    DIR/evidence/<id>-<sha>.txt refused submissions that the log did sign: possible proof of a fork

Why this shape: tlog-witness asks the witness to keep only the latest checkpoint per log, to persist it before it
answers, and to check-and-persist atomically. Every write here is temp file + fsync + rename + fsync of the
directory, so after a crash a file holds either the old checkpoint or the new one, never half of either; the
lock is an ``fcntl.flock`` on a per-log file, so two threads or two witness processes on one directory
serialise, and the state is re-read under the lock (never trusted from memory).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from creditflow.ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    NoteError,
    NoteSigner,
    VerifierKey,
    check_name,
    parse_checkpoint,
    parse_note,
    parse_vkey,
)
from creditflow.ledger.signing import Signer

KEY_FILE = "cosigner.key"
LOGS_FILE = "logs.json"
MAX_EVIDENCE_FILES = 1000  # a log flooding forks cannot fill the disk


class StateError(Exception):
    """The state directory is missing, unreadable, or would be overwritten; the message says what to do."""


def log_id(origin: str) -> str:
    """A file-name-safe id for an origin (origins contain '/' and anything but spaces and '+')."""
    return hashlib.sha256(origin.encode()).hexdigest()[:32]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A test hook: the crash tests replace it to fail between writing the temp file and renaming it.
_replace: Callable[[str | Path, str | Path], None] = os.replace


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename over ``path``, fsync the directory: all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


@dataclass(frozen=True, slots=True)
class Cosigned:
    """What the witness holds for one log: the latest checkpoint it cosigned (size 0, no note: never)."""

    checkpoint: Checkpoint | None
    note: str | None

    @property
    def size(self) -> int:
        return 0 if self.checkpoint is None else self.checkpoint.size


NEVER = Cosigned(None, None)


class StateDir:
    """One witness's directory. Thread-safe and process-safe: see the module docstring."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._thread_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # --- creation and the key --------------------------------------------------------------------------

    @classmethod
    def init(cls, path: str | Path, name: str) -> StateDir:
        """Create the directory and a fresh cosigner key; refuses if a key is already there (never overwritten)."""
        try:
            check_name(name)
        except NoteError as exc:
            raise StateError(f"witness name: {exc}") from None
        state = cls(path)
        state.path.mkdir(parents=True, exist_ok=True)
        for sub in ("checkpoints", "locks", "evidence"):
            (state.path / sub).mkdir(exist_ok=True)
        key_path = state.path / KEY_FILE
        signer = Signer.generate("cosigner")
        body = json.dumps({"v": 1, "name": name, "seed": base64.b64encode(signer.seed).decode()}).encode()
        try:
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise StateError(
                f"{key_path} already exists: a witness key is never overwritten (its vkey is in other people's "
                "policies); use another directory for a new witness"
            ) from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(state.path)
        if not (state.path / LOGS_FILE).exists():
            write_atomically(state.path / LOGS_FILE, json.dumps({"v": 1, "logs": {}}).encode())
        return state

    def cosigner(self) -> NoteSigner:
        """The witness's cosignature/v1 signer, from its key file (which must be private to its owner)."""
        key_path = self.path / KEY_FILE
        try:
            mode = key_path.stat().st_mode & 0o777
            raw = json.loads(key_path.read_bytes())
            name, seed = raw["name"], base64.b64decode(raw["seed"], validate=True)
        except FileNotFoundError:
            raise StateError(f"{self.path} is not a witness directory: run `creditflow witness init` first") from None
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise StateError(f"{key_path} is unreadable: {exc}") from None
        if mode & 0o077:
            raise StateError(f"{key_path} is readable by others (mode {mode:o}): chmod 600 it")
        try:
            return NoteSigner(name, Signer(seed, "cosigner"), COSIGNATURE_V1)
        except (NoteError, ValueError) as exc:
            raise StateError(f"{key_path} is unreadable: {exc}") from None

    # --- locks ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive: a thread lock (cheap, in-process) and an fcntl lock on DIR/locks/<name>.lock (across
        processes), held across read-check-persist."""
        with self._guard:
            thread_lock = self._thread_locks.setdefault(name, threading.Lock())
        with thread_lock:
            locks = self.path / "locks"
            locks.mkdir(exist_ok=True)
            fd = os.open(locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    # --- known logs ----------------------------------------------------------------------------------

    def logs(self) -> dict[str, VerifierKey]:
        """origin -> the log's Ed25519 note key (re-read on every call: `add-log` may run beside `serve`)."""
        try:
            raw = json.loads((self.path / LOGS_FILE).read_bytes())
            return {origin: parse_vkey(vkey) for origin, vkey in raw["logs"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{self.path / LOGS_FILE} is unreadable: {exc}") from None

    def add_log(self, origin: str, vkey: str) -> VerifierKey:
        """Trust ``vkey`` for ``origin``: it must be an Ed25519 (0x01) note key named exactly ``origin``.
        Adding the same key again is a no-op; another key for a known origin is refused."""
        self.cosigner()  # an initialised directory
        try:
            key = parse_vkey(vkey)
        except NoteError as exc:
            raise StateError(f"--vkey: {exc}") from None
        if key.sig_type != ED25519:
            raise StateError("--vkey: a log's key is an Ed25519 note key (type 0x01), not a cosigner key")
        if key.name != origin:
            raise StateError(f"--vkey is named {key.name!r}: a log's key is named after its origin {origin!r}")
        with self.lock("logs"):
            raw = json.loads((self.path / LOGS_FILE).read_bytes())
            known = raw["logs"].get(origin)
            if known is not None and parse_vkey(known) != key:
                raise StateError(f"{origin} is already known with another key: {known}")
            raw["logs"][origin] = key.encode()
            write_atomically(self.path / LOGS_FILE, json.dumps(raw, indent=1, sort_keys=True).encode())
        return key

    # --- what was cosigned ---------------------------------------------------------------------------

    def _note_path(self, origin: str) -> Path:
        return self.path / "checkpoints" / f"{log_id(origin)}.note"

    def cosigned(self, origin: str) -> Cosigned:
        """The latest checkpoint cosigned for ``origin`` (call under `lock` to act on it)."""
        try:
            note = self._note_path(origin).read_text(encoding="utf-8")
        except FileNotFoundError:
            return NEVER
        try:
            checkpoint = parse_checkpoint(parse_note(note).text)
        except NoteError as exc:
            raise StateError(f"{self._note_path(origin)} is damaged: {exc}") from None
        if checkpoint.origin != origin:
            raise StateError(f"{self._note_path(origin)} holds a checkpoint of {checkpoint.origin!r}, not {origin!r}")
        return Cosigned(checkpoint, note)

    def save_cosigned(self, origin: str, note: str) -> None:
        self._note_path(origin).parent.mkdir(exist_ok=True)
        write_atomically(self._note_path(origin), note.encode())

    def save_evidence(self, origin: str, body: bytes) -> None:
        """Keep a refused submission the log did sign (tlog-witness allows it): it may prove a fork. Best effort."""
        folder = self.path / "evidence"
        with contextlib.suppress(OSError):
            folder.mkdir(exist_ok=True)
            if sum(1 for _ in folder.iterdir()) >= MAX_EVIDENCE_FILES:
                return
            target = folder / f"{log_id(origin)}-{hashlib.sha256(body).hexdigest()[:16]}.txt"
            if not target.exists():
                write_atomically(target, body)
