"""Key custody: organisations' Ed25519 private keys, encrypted at rest.

A key-encryption key (KEK) is derived once per process from the configured passphrase with Argon2id
(salt and cost stored in ``custody_meta``); each private seed is sealed with XChaCha20-Poly1305 under
the KEK, with ``org_id/key_id`` as associated data so a sealed seed cannot be swapped onto another
organisation's row. A wrong passphrase is detected at start-up by a sealed check value, not by a
failed signature later. See docs/adr/0003-key-custody.md.

Organisations that keep their own keys ("self custody") never appear here: they submit operations
they signed themselves, and the ledger checks both kinds the same way.

Other secrets the platform must be able to use but should not keep in clear (IoT device secrets, webhook
signing secrets) are sealed the same way under a `SecretBox`: a subkey of the KEK for one named purpose
(keyed BLAKE2b of the purpose under the KEK), so a box of one purpose cannot open another's.
"""

from __future__ import annotations

import hashlib
import threading

import nacl.bindings as sodium
import nacl.pwhash
import nacl.utils

from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import NotFound
from creditflow.ledger import store
from creditflow.ledger.signing import Signer

_CHECK = b"creditflow custody check v1"
_NONCE = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


class WrongPassphrase(RuntimeError):
    pass


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


def _aad(org_id: str, key_id: str) -> bytes:
    return f"creditflow/custody/v1/{org_id}/{key_id}".encode()


def _seal(kek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = nacl.utils.random(_NONCE)
    return nonce + bytes(sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, kek))


def _open(kek: bytes, sealed: bytes, aad: bytes) -> bytes:
    nonce, box = sealed[:_NONCE], sealed[_NONCE:]
    return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(box, aad, nonce, kek))
