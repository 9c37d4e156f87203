"""Sign-in throttling: growing delays that an attacker cannot turn against the person it attacks.

Every wrong password (or wrong reset token) is counted, in the database and atomically (one
``INSERT .. ON CONFLICT DO UPDATE .. RETURNING`` per counter: concurrent failures each get their own
number, in every process), under three counters:

- ``user_address`` (the user, from this client address): past ``sign_in_max_failures`` failures, each
  further one doubles the wait from ``sign_in_delay_base_s`` up to ``sign_in_delay_max_s``. This is the
  one an attacker at one address trips: it stops the attacker, and only from that address.
- ``user`` (the user, from anywhere): counts *addresses*, not failures (it moves when an address fails for
  the user for the first time in the window), so one address can never trip it. Past
  ``sign_in_user_free_addresses`` addresses, a softer doubling wait capped at ``sign_in_user_delay_max_s``
  (a minute by default): what a distributed attack can impose on its victim, at most.
- ``address`` (this client address, across users: credential stuffing): past
  ``sign_in_address_max_failures`` failures, the same doubling wait as ``user_address``.

While a counter waits, a sign-in it covers is refused before the password is checked (401
``sign_in_locked`` with ``Retry-After``) and does not count. A good password clears the user's own counters
(not the address's). A counter whose last failure is older than ``sign_in_failure_window_s`` starts again.
An admin's unlock clears the user's counters. The moment a user's counter starts to wait, the user's
organisation's admins are told (``sign_in_throttled``).
"""

from __future__ import annotations

from dataclasses import dataclass

from creditflow.identity import store
from creditflow.identity.reads import notify_admins
from creditflow.identity.settings import WebSettings
from creditflow.kernel.engine import Connection

USER_ADDRESS, USER, ADDRESS = "user_address", "user", "address"
_SEP = "\n"  # cannot occur in a user id or an address


def delay_ms(failures: int, free: int, base_s: int, cap_s: int) -> int:
    """The wait after the ``failures``-th failure: none before ``free``, then base, 2 x base, ... up to cap."""
    if failures < free:
        return 0
    doublings = min(failures - free, 40)
    return int(min(cap_s, base_s * (2**doublings))) * 1000


@dataclass(frozen=True, slots=True)
class Wait:
    scope: str
    until_ms: int

    def seconds(self, now_ms: int) -> int:
        return max(1, (self.until_ms - now_ms + 999) // 1000)


class SignInThrottle:
    def __init__(self, settings: WebSettings):
        self.settings = settings

    @staticmethod
    def keys(user_id: str, address: str) -> dict[str, str]:
        return {USER_ADDRESS: f"{user_id}{_SEP}{address}", USER: user_id, ADDRESS: address}

    def wait(self, conn: Connection, user_id: str, address: str, now_ms: int) -> Wait | None:
        """The longest wait that covers a sign-in as ``user_id`` from ``address`` now, or None."""
        keys = self.keys(user_id, address)
        found = store.blocked_until(conn, [(scope, subject) for scope, subject in keys.items()])
        waits = [Wait(scope, found.get((scope, subject), 0)) for scope, subject in keys.items()]
        longest = max(waits, key=lambda w: w.until_ms)
        return longest if longest.until_ms > now_ms else None

    def record_failure(
        self, conn: Connection, user_id: str, address: str, now_ms: int, *, org_id: str | None
    ) -> list[str]:
        """Count a failure (in the caller's transaction); the scopes whose wait started with it. ``org_id``:
        the user's organisation (None for an unknown user: counted the same, nobody is told)."""
        s = self.settings
        window_ms = s.sign_in_failure_window_s * 1000
        keys = self.keys(user_id, address)
        tripped: list[str] = []

        def count(scope: str, free: int, cap_s: int) -> int:
            n = store.count_failure(conn, scope, keys[scope], now_ms=now_ms, window_ms=window_ms)
            wait = delay_ms(n, free, s.sign_in_delay_base_s, cap_s)
            if wait:
                store.block_until(conn, scope, keys[scope], now_ms + wait)
            if n == free:
                tripped.append(scope)
            return n

        pair = count(USER_ADDRESS, s.sign_in_max_failures, s.sign_in_delay_max_s)
        if pair == 1:  # a new address failing for this user
            count(USER, s.sign_in_user_free_addresses, s.sign_in_user_delay_max_s)
        count(ADDRESS, s.sign_in_address_max_failures, s.sign_in_delay_max_s)
        personal = [t for t in tripped if t in (USER_ADDRESS, USER)]
        if org_id is not None and personal:
            scope = personal[-1]
            where = f"from {address}" if scope == USER_ADDRESS else "from many addresses"
            notify_admins(
                conn,
                org_id=org_id,
                kind="sign_in_throttled",
                message=f"sign-ins of {user_id} {where} are being slowed down after repeated wrong passwords; "
                "an admin can unlock them",
                now_ms=now_ms,
                data={"user_id": user_id, "address": address, "scope": scope},
            )
        return tripped

    def clear_after_success(self, conn: Connection, user_id: str, address: str) -> None:
        keys = self.keys(user_id, address)
        store.clear_throttle(conn, [(USER_ADDRESS, keys[USER_ADDRESS]), (USER, keys[USER])])

    def unlock(self, conn: Connection, user_id: str) -> int:
        """Forget every counter of the user (each address's too); how many there were."""
        return store.clear_user_throttle(conn, user_id, f"{user_id}{_SEP}")
