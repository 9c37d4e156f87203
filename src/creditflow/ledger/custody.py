"""Key custody: organisations' Ed25519 private keys, encrypted at rest.

A key-encryption key (KEK) is derived once per process from the configured passphrase with Argon2id
(salt and cost stored in ``custody_meta``); each private seed is sealed with XChaCha20-Poly1305 under
the KEK, with ``org_id/key_id`` as associated data so a sealed seed cannot be swapped onto another
organisation's row. A wrong passphrase is detected at start-up by a sealed check value, not by a
failed signature later. See docs/adr/0003-key-custody.md.

Organisations that keep their own keys ("self custody") never appear here: they submit operations
they signed themselves, and the ledger checks both kinds the same way.

The log's own signing key (it signs tree heads and platform operations) is sealed apart, by `LogKeyCustody`:
under a KEK derived from its own secret (`LogSecret`: a passphrase, Argon2id with its own salt, or a key
file), in ``log_key_custody``, so the organisations' passphrase does not open it and its secret opens no
organisation's key. Databases from before (the log key among the organisations' keys, ``org_id`` "platform")
are re-sealed once by `reseal_log_key` (`creditflow keys seal-log-key`); see docs/adr/0015-secrets-apart.md.

Other secrets the platform must be able to use but should not keep in clear (IoT device secrets, webhook
signing secrets) are sealed the same way under a `SecretBox`: a subkey of the KEK for one named purpose
(keyed BLAKE2b of the purpose under the KEK), so a box of one purpose cannot open another's.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import nacl.bindings as sodium
import nacl.pwhash
import nacl.utils

from creditflow.kernel.engine import Connection, Engine, peek
from creditflow.kernel.errors import NotFound
from creditflow.ledger import store
from creditflow.ledger.signing import Signer

_T = TypeVar("_T")
_CHECK = b"creditflow custody check v1"
_NONCE = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


class StartupRefused(RuntimeError):
    """The platform will not open this database with these secrets; nothing was written. ``code`` is stable."""

    code = "startup_refused"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class WrongPassphrase(StartupRefused):
    code = "wrong_key_passphrase"


class WrongLogSecret(StartupRefused):
    code = "wrong_log_key_secret"


class LogKeyNotSeparated(StartupRefused):
    code = "log_key_not_separated"


LOG_KEY_FILE_MIN_BYTES = 32


@dataclass(frozen=True)
class LogSecret:
    """What seals the log key: a passphrase (stretched with Argon2id) or the contents of a key file."""

    kind: Literal["passphrase", "file"]
    material: bytes
    source: str = ""

    def __repr__(self) -> str:  # never the material
        return f"LogSecret({self.kind}, {self.source})"


def read_log_key_file(path: Path) -> LogSecret:
    """The log secret in ``path``: at least 32 bytes, readable by its owner only (on POSIX)."""
    try:
        info = path.stat()
        material = path.read_bytes().strip()
    except OSError as exc:
        raise StartupRefused(
            f"cannot read the log key file {path}: {exc.strerror}", code="log_key_file_unusable"
        ) from None
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StartupRefused(
            f"the log key file {path} may be read by others (mode {stat.filemode(info.st_mode)}): chmod 600 it",
            code="log_key_file_unusable",
        )
    if len(material) < LOG_KEY_FILE_MIN_BYTES:
        raise StartupRefused(
            f"the log key file {path} holds {len(material)} bytes; it needs at least {LOG_KEY_FILE_MIN_BYTES} "
            "random bytes (`creditflow keys log-key-file PATH` writes one)",
            code="log_key_file_unusable",
        )
    return LogSecret("file", material, f"key file {path}")


def write_log_key_file(path: Path) -> None:
    """Write a new log key file: 32 random bytes as hex, mode 0600; refuses to replace an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(nacl.utils.random(32).hex() + "\n")


class SecretBox:
    """Seal and open small secrets with XChaCha20-Poly1305 under one purpose's subkey of the custody KEK.
    The associated data names the row a sealed value belongs to, so it cannot be moved onto another row."""

    def __init__(self, key: bytes):
        assert len(key) == 32
        self._key = key

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        return _seal(self._key, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """The plaintext; raises `nacl.exceptions.CryptoError` if ``sealed`` or ``aad`` was altered."""
        return _open(self._key, sealed, aad)


class Custody:
    def __init__(self, engine: Engine, passphrase: bytes, opslimit: int, memlimit: int):
        self._engine = engine
        self._passphrase = passphrase
        self._opslimit = opslimit
        self._memlimit = memlimit
        self._kek: bytes | None = None
        self._cache: dict[tuple[str, str], Signer] = {}
        self._lock = threading.Lock()

    # --- the key-encryption key -------------------------------------------------------------------

    def _derive(self, salt: bytes, opslimit: int, memlimit: int) -> bytes:
        return bytes(nacl.pwhash.argon2id.kdf(32, self._passphrase, salt, opslimit=opslimit, memlimit=memlimit))

    def unlock(self) -> None:
        """Derive the KEK (creating the custody metadata on first use) and check the passphrase."""
        with self._lock:
            if self._kek is not None:
                return
            with self._engine.begin() as conn:
                meta = store.custody_meta_row(conn)
                if meta is None:
                    salt = nacl.utils.random(16)
                    kek = self._derive(salt, self._opslimit, self._memlimit)
                    store.insert_custody_meta(
                        conn,
                        store.CustodyMeta(salt, self._opslimit, self._memlimit, _seal(kek, _CHECK, b"check")),
                    )
                else:
                    kek = self._derive(meta.salt, meta.opslimit, meta.memlimit)
                    try:
                        ok = _open(kek, meta.check_box, b"check") == _CHECK
                    except Exception:
                        ok = False
                    if not ok:
                        raise WrongPassphrase("the key passphrase does not open this database's key store")
            self._kek = kek

    def _key(self) -> bytes:
        if self._kek is None:
            self.unlock()
        assert self._kek is not None
        return self._kek

    def secret_box(self, purpose: str) -> SecretBox:
        """A box for one purpose (e.g. ``"iot/device-secret/v1"``): its key is derived from the KEK, so it
        opens only with this database's passphrase."""
        subkey = hashlib.blake2b(f"creditflow/custody/subkey/{purpose}".encode(), key=self._key(), digest_size=32)
        return SecretBox(subkey.digest())

    # --- keys ---------------------------------------------------------------------------------------

    def store(self, conn: Connection, signer: Signer, org_id: str, created_ts_ms: int) -> None:
        """Seal and store ``signer`` in the caller's transaction (so it lands with its ledger registration)."""
        sealed = _seal(self._key(), signer.seed, _aad(org_id, signer.key_id))
        store.insert_custody_key(conn, org_id, signer.key_id, sealed, created_ts_ms)

    def retire_others(self, conn: Connection, org_id: str, keep_key_id: str) -> None:
        store.retire_custody_keys(conn, org_id, keep_key_id)
        with self._lock:
            for k in [k for k in self._cache if k[0] == org_id and k[1] != keep_key_id]:
                del self._cache[k]

    def signer(self, org_id: str, conn: Connection | None = None) -> Signer:
        """The current signing key of ``org_id``, decrypted once and cached in memory."""
        with self._lock:
            for (org, _), signer in self._cache.items():
                if org == org_id:
                    return signer
        if conn is not None:
            held = store.custody_key(conn, org_id)
        else:
            with self._engine.connect().execution_options(read_only=True) as c:
                held = store.custody_key(c, org_id)
        if held is None:
            raise NotFound(
                f"the platform holds no signing key for {org_id!r} (self-custody organisations sign their own "
                "operations and submit them to /v1/operations)",
                code="no_custody_key",
            )
        key_id, sealed_seed = held
        seed = _open(self._key(), sealed_seed, _aad(org_id, key_id))
        signer = Signer(seed, key_id)
        with self._lock:
            self._cache[(org_id, key_id)] = signer
        return signer

    def holds(self, conn: Connection, org_id: str) -> bool:
        return store.custody_key_id(conn, org_id) is not None

    def forget(self, conn: Connection, org_id: str) -> None:
        """Delete every key held for ``org_id`` (in the caller's transaction) and drop it from the cache."""
        store.delete_custody_keys(conn, org_id)
        with self._lock:
            for k in [k for k in self._cache if k[0] == org_id]:
                del self._cache[k]


class LogKeyCustody:
    """The log's signing key, sealed under its own secret in ``log_key_custody`` (never with organisations')."""

    def __init__(self, engine: Engine, secret: LogSecret, opslimit: int, memlimit: int):
        self._engine = engine
        self._secret = secret
        self._opslimit = opslimit
        self._memlimit = memlimit
        self._signer: Signer | None = None

    def _kek(self, salt: bytes | None, opslimit: int, memlimit: int) -> bytes:
        if self._secret.kind == "passphrase":
            assert salt is not None
            return bytes(
                nacl.pwhash.argon2id.kdf(32, self._secret.material, salt, opslimit=opslimit, memlimit=memlimit)
            )
        return hashlib.blake2b(self._secret.material, key=b"creditflow/log-key-file/v1", digest_size=32).digest()

    def signer(self, conn: Connection | None = None) -> Signer:
        """The log key; `NotFound` if none is sealed apart yet; `WrongLogSecret` if the secret does not open it."""
        if self._signer is not None:
            return self._signer
        if conn is None:
            with self._engine.connect().execution_options(read_only=True) as c:
                held = store.sealed_log_key(c)
        else:
            held = store.sealed_log_key(conn)
        if held is None:
            raise NotFound("no log key is sealed apart in this database", code="no_log_key")
        if held.kek_kind != self._secret.kind:
            raise WrongLogSecret(
                f"this database's log key is sealed with a {held.kek_kind}, but a {self._secret.kind} was given "
                f"({self._secret.source})"
            )
        try:
            seed = _open(self._kek(held.salt, held.opslimit, held.memlimit), held.sealed_seed, _log_aad(held))
        except Exception:
            raise WrongLogSecret(
                f"the log key secret ({self._secret.source}) does not open this database's log key"
            ) from None
        self._signer = Signer(seed, held.key_id)
        return self._signer

    def store(self, conn: Connection, signer: Signer, created_ts_ms: int) -> None:
        """Seal ``signer`` under the log secret, in the caller's transaction."""
        passphrase = self._secret.kind == "passphrase"
        salt = nacl.utils.random(16) if passphrase else None
        opslimit, memlimit = (self._opslimit, self._memlimit) if passphrase else (0, 0)
        row = store.SealedLogKey(signer.key_id, b"", self._secret.kind, salt, opslimit, memlimit)
        sealed = _seal(self._kek(salt, opslimit, memlimit), signer.seed, _log_aad(row))
        store.insert_sealed_log_key(conn, row._replace(sealed_seed=sealed), created_ts_ms)

    def holds(self, conn: Connection) -> bool:
        return store.sealed_log_key(conn) is not None


def reseal_log_key(
    conn: Connection, custody: Custody, log_custody: LogKeyCustody, platform: str, created_ts_ms: int
) -> Signer | None:
    """Move a log key held among the organisations' keys (databases from before) under its own secret, in the
    caller's transaction: opened with the custody KEK, sealed apart, and its old row deleted, so the
    organisations' passphrase no longer opens it. None if there was nothing to move."""
    if log_custody.holds(conn) or not custody.holds(conn, platform):
        return None
    signer = custody.signer(platform, conn)
    log_custody.store(conn, signer, created_ts_ms)
    custody.forget(conn, platform)
    return signer


def _log_aad(row: store.SealedLogKey) -> bytes:
    return f"creditflow/log-key/v1/{row.key_id}/{row.kek_kind}".encode()


def _aad(org_id: str, key_id: str) -> bytes:
    return f"creditflow/custody/v1/{org_id}/{key_id}".encode()


def _seal(kek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = nacl.utils.random(_NONCE)
    return nonce + bytes(sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, kek))


def _open(kek: bytes, sealed: bytes, aad: bytes) -> bytes:
    nonce, box = sealed[:_NONCE], sealed[_NONCE:]
    return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(box, aad, nonce, kek))


def mark_demo_database(conn: Connection, key_passphrase: str, log_key_passphrase: str, created_ts_ms: int) -> None:
    """Record that this database is a demo's, with the throwaway passphrases it opens with (never real data)."""
    store.mark_demo_database(conn, key_passphrase, log_key_passphrase, created_ts_ms)


def peek_demo_passphrases(db_url: str) -> tuple[str, str] | None:
    """The throwaway (key, log key) passphrases if ``db_url`` is a database made by `creditflow demo`, else None.
    Reads only, before migrations: a missing SQLite file is not created, nothing is written."""
    return peek(db_url, store.demo_passphrases, None)


def peek_holds_keys(db_url: str) -> bool:
    """Whether ``db_url`` already has a key store (read-only, before migrations, like `peek_demo_passphrases`)."""
    return peek(db_url, store.has_custody_meta, False)
