"""Device and webhook secrets, encrypted at rest.

A device's secret is an HMAC key: the ingest must be able to use it, so it cannot be stored as a hash. It is
sealed instead, like the organisations' private keys (`creditflow.ledger.custody`): XChaCha20-Poly1305 under
a subkey of the custody key-encryption key (derived from the configured passphrase), with the row it belongs
to as associated data (``device id / secret version``, ``webhook id``), so a sealed secret copied onto another
row does not open. A copy of the database without the passphrase holds no usable device or webhook secret.

The ingest opens a device's secret once and keeps it in memory (at most ``device_cache_max`` devices). A cached
secret is used only while the row still holds the very sealed bytes it was opened from: a rotation (a new
sealed value, also one made by another worker process) is seen on the next batch with no invalidation message.

Databases from before sealing (migration 0006) keep clear secrets in ``secret``; `seal_clear_secrets` moves
them into ``secret_sealed`` at start-up (it needs the passphrase, which a migration does not have).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from nacl.exceptions import CryptoError

from creditflow.collateral import store
from creditflow.kernel.engine import Engine
from creditflow.ledger.custody import Custody, SecretBox

log = logging.getLogger(__name__)

DEVICE_PURPOSE = "iot/device-secret/v1"
WEBHOOK_PURPOSE = "iot/webhook-secret/v1"


def _device_aad(device_id: str, version: int) -> bytes:
    return f"creditflow/iot/device/{device_id}/{version}".encode()


def _webhook_aad(webhook_id: str) -> bytes:
    return f"creditflow/iot/webhook/{webhook_id}".encode()


class IotSecrets:
    def __init__(self, custody: Custody, cache_max: int):
        self._devices = custody.secret_box(DEVICE_PURPOSE)
        self._webhooks = custody.secret_box(WEBHOOK_PURPOSE)
        self._cache: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()  # device -> (sealed, secret)
        self._cache_max = cache_max
        self._lock = threading.Lock()
        self.opened = 0  # decryptions done (cache misses), for tests and metrics

    @property
    def device_box(self) -> SecretBox:
        return self._devices

    def seal_device(self, device_id: str, version: int, secret: bytes) -> bytes:
        return self._devices.seal(secret, _device_aad(device_id, version))

    def device_secret(self, device_id: str, version: int, sealed: bytes) -> bytes | None:
        """The clear secret of a device row, from memory when ``sealed`` is what was opened last time; None
        (and an error in the log) if it does not open: altered, or copied from another row or database."""
        with self._lock:
            hit = self._cache.get(device_id)
            if hit is not None and hit[0] == sealed:
                return hit[1]
        try:
            secret = self._devices.open(sealed, _device_aad(device_id, version))
        except CryptoError:
            log.error("the sealed secret of device %s (version %d) does not open", device_id, version)
            return None
        with self._lock:
            self.opened += 1
            self._cache[device_id] = (sealed, secret)
            self._cache.move_to_end(device_id)
            while len(self._cache) > self._cache_max:
                self._cache.popitem(last=False)
        return secret

    def forget(self, device_id: str) -> None:
        with self._lock:
            self._cache.pop(device_id, None)

    def seal_webhook(self, webhook_id: str, secret: bytes) -> bytes:
        return self._webhooks.seal(secret, _webhook_aad(webhook_id))

    def webhook_secret(self, webhook_id: str, sealed: bytes) -> bytes:
        return self._webhooks.open(sealed, _webhook_aad(webhook_id))

    def seal_clear_secrets(self, engine: Engine) -> int:
        """Seal every secret still stored in clear (a database from before sealing); return how many."""
        with engine.connect().execution_options(read_only=True) as conn:  # the usual case: nothing to do
            if not store.has_clear_secrets(conn):
                return 0
        done = 0
        with engine.begin() as conn:
            for device_id, version, secret in store.clear_device_secrets(conn):
                store.seal_device_secret(conn, device_id, self.seal_device(device_id, version, secret))
                done += 1
            for webhook_id, secret in store.clear_webhook_secrets(conn):
                store.seal_webhook_secret(conn, webhook_id, self.seal_webhook(webhook_id, secret))
                done += 1
        log.info("sealed %d IoT secrets that were stored in clear", done)
        return done
