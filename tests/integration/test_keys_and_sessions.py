"""Keys and sessions (issue 13, point 6), on SQLite and PostgreSQL: API keys listed, revoked, expired and
rotated per organisation and per user; revocation, sign-out, password resets and role changes holding in a
second process within auth_cache_ttl_s; sign-in throttling that stops an attacker and not its victim,
counted exactly under concurrency; admin password reset and unlock; changing one's own password."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from conftest import make_settings, onboard, table_rows
from creditflow.bootstrap import App, build
from creditflow.http.app import create_app
from creditflow.http.ratelimit import RateLimiter
from creditflow.identity.access import key_id_of
from creditflow.identity.roles import UserRole
from creditflow.identity.tables import api_keys, sign_in_throttle, users, web_sessions
from creditflow.identity.throttle import delay_ms
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import InvalidInput, NotFound, Unauthenticated

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery 9"
NEW_PASSWORD = "another horse 10 staple"
KEY_TABLES = (api_keys, users, web_sessions)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(world: App) -> Iterator[TestClient]:
    with TestClient(create_app(world, rate_limiter=RateLimiter(0, 1))) as test_client:
        yield test_client


def person(app: App, org: str, user_id: str, *roles: UserRole, password: str | None = PASSWORD) -> str:
    """A user with ``roles`` (and a password); returns a personal token of it."""
    app.people.add(org, user_id, user_id.title(), roles=roles)
    if password is not None:
        app.sessions.set_password(user_id, password)
    return app.access.create_key(org, f"{user_id}'s token", user_id=user_id)


def state(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Keys, users and sessions, but not when a key was last used (using a key to be refused is a use)."""
    rows = table_rows(app, KEY_TABLES)
    last_used = [c.name for c in api_keys.columns].index("last_used_ts_ms")
    rows["api_keys"] = [r[:last_used] + r[last_used + 1 :] for r in rows["api_keys"]]
    return rows


def notices(app: App, org: str, kind: str) -> list[dict[str, Any]]:
    return [n.data for n in app.notices.of(org, limit=500).items if n.kind == kind]


# --- API keys: who sees and manages which ------------------------------------------------------------


def test_a_person_who_is_not_an_admin_sees_only_its_own_tokens(world: App, client: TestClient) -> None:
    admin = person(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    clerk = person(world, "xcmg", "clerk.li", UserRole.MAKER)
    colleague = person(world, "xcmg", "approver.qian", UserRole.APPROVER)
    organisation = world.access.create_key("xcmg", "erp")
    rival = world.access.create_key("rival", "rival's")
    listed = client.get("/v1/api-keys", headers=bearer(clerk))
    assert listed.status_code == 200
    assert [k["key_id"] for k in listed.json()["items"]] == [key_id_of(clerk)]
    everything = client.get("/v1/api-keys", headers=bearer(admin)).json()["items"]
    ids = {k["key_id"] for k in everything}
    assert {key_id_of(t) for t in (admin, clerk, colleague, organisation)} <= ids
    assert key_id_of(rival) not in ids
    assert ids == {k["key_id"] for k in client.get("/v1/api-keys", headers=bearer(organisation)).json()["items"]}
    text = str(everything)
    for token in (admin, clerk, colleague, organisation):
        assert token.split("_", 2)[2] not in text  # never a secret
    owners = {k["key_id"]: (k["owner"], k["user_id"]) for k in everything}
    assert owners[key_id_of(organisation)] == ("organisation", None)
    assert owners[key_id_of(clerk)] == ("personal", "clerk.li")


def test_revoking_or_rotating_another_organisations_key_is_404_and_changes_nothing(
    world: App, client: TestClient
) -> None:
    factory, steel = world.access.create_key("factory"), world.access.create_key("steel")
    before = state(world)
    for action in ("revoke", "rotate"):
        refused = client.post(f"/v1/api-keys/{key_id_of(steel)}/{action}", headers=bearer(factory))
        absent = client.post(f"/v1/api-keys/0123456789abcdef/{action}", headers=bearer(factory))
        assert (refused.status_code, refused.json()["code"]) == (404, "api_key_not_found")
        assert refused.json()["detail"].replace(key_id_of(steel), "X") == absent.json()["detail"].replace(
            "0123456789abcdef", "X"
        )
    assert state(world) == before
    assert client.get("/v1/me", headers=bearer(steel)).status_code == 200


def test_a_person_who_is_not_an_admin_may_not_revoke_a_colleagues_token(world: App, client: TestClient) -> None:
    clerk = person(world, "xcmg", "clerk.li", UserRole.MAKER)
    colleague = person(world, "xcmg", "approver.qian", UserRole.APPROVER)
    organisation = world.access.create_key("xcmg", "erp")
    before = state(world)
    for target in (colleague, organisation):
        refused = client.post(f"/v1/api-keys/{key_id_of(target)}/revoke", headers=bearer(clerk))
        assert (refused.status_code, refused.json()["code"]) == (404, "api_key_not_found")
    assert state(world) == before
    own = client.post(f"/v1/api-keys/{key_id_of(clerk)}/revoke", headers=bearer(clerk))
    assert own.status_code == 200 and own.json()["state"] == "revoked"
    assert client.get("/v1/me", headers=bearer(clerk)).json()["code"] == "api_key_revoked"
    assert [n["key_id"] for n in notices(world, "xcmg", "api_key_revoked")] == [key_id_of(clerk)]


def test_who_may_create_which_key(world: App, client: TestClient) -> None:
    organisation = world.access.create_key("xcmg", "erp")
    clerk = person(world, "xcmg", "clerk.li", UserRole.MAKER)
    admin = person(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    before = state(world)
    refused = client.post("/v1/api-keys", json={"personal": True}, headers=bearer(organisation))
    assert (refused.status_code, refused.json()["code"]) == (403, "person_required")
    refused = client.post("/v1/api-keys", json={"label": "org"}, headers=bearer(clerk))
    assert (refused.status_code, refused.json()["code"]) == (403, "user_role_not_allowed")
    too_long = world.settings.access.api_key_ttl_max_s + 1
    refused = client.post("/v1/api-keys", json={"expires_in_s": too_long}, headers=bearer(organisation))
    assert (refused.status_code, refused.json()["code"]) == (422, "api_key_lifetime_invalid")
    assert state(world) == before
    mine = client.post("/v1/api-keys", json={"label": "laptop", "personal": True}, headers=bearer(clerk))
    assert mine.status_code == 201 and mine.json()["user_id"] == "clerk.li"
    me = client.get("/v1/me", headers=bearer(mine.json()["api_key"])).json()
    assert (me["user_id"], me["auth"]) == ("clerk.li", "personal_token")
    default_expiry = world.clock.now_ms() + world.settings.access.api_key_ttl_default_s * 1000
    assert mine.json()["expires_ts_ms"] == default_expiry
    assert not notices(world, "xcmg", "api_key_created")  # a person's own token is routine
    org_key = client.post("/v1/api-keys", json={"label": "bank feed"}, headers=bearer(admin))
    assert org_key.status_code == 201 and org_key.json()["user_id"] is None
    assert [n["key_id"] for n in notices(world, "xcmg", "api_key_created")] == [org_key.json()["key_id"]]


def test_an_expired_key_answers_401_api_key_expired(world: App, client: TestClient, clock: ManualClock) -> None:
    key = client.post(
        "/v1/api-keys", json={"expires_in_s": 60}, headers=bearer(world.access.create_key("factory"))
    ).json()
    assert client.get("/v1/me", headers=bearer(key["api_key"])).status_code == 200  # now in the cache
    clock.advance(59_999)
    assert client.get("/v1/me", headers=bearer(key["api_key"])).status_code == 200
    clock.advance(1)
    expired = client.get("/v1/me", headers=bearer(key["api_key"]))
    assert (expired.status_code, expired.json()["code"]) == (401, "api_key_expired")
    listed = client.get("/v1/api-keys", headers=bearer(world.access.create_key("factory"))).json()["items"]
    assert {k["key_id"]: k["state"] for k in listed}[key["key_id"]] == "expired"


def test_rotation_gives_a_new_secret_for_the_same_owner_and_stops_the_old(world: App, client: TestClient) -> None:
    admin = person(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    clerk = person(world, "xcmg", "clerk.li", UserRole.MAKER)
    rotated = client.post(f"/v1/api-keys/{key_id_of(clerk)}/rotate", headers=bearer(admin))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["replaces_key_id"] == key_id_of(clerk) and new["key_id"] != key_id_of(clerk)
    assert (new["user_id"], new["label"]) == ("clerk.li", "clerk.li's token")
    assert client.get("/v1/me", headers=bearer(new["api_key"])).json()["user_id"] == "clerk.li"
    assert client.get("/v1/me", headers=bearer(clerk)).json()["code"] == "api_key_revoked"
    again = client.post(f"/v1/api-keys/{key_id_of(clerk)}/rotate", headers=bearer(admin))
    assert (again.status_code, again.json()["code"]) == (409, "api_key_revoked")
    assert [n["new_key_id"] for n in notices(world, "xcmg", "api_key_rotated")] == [new["key_id"]]


def test_the_key_list_is_paged(world: App, client: TestClient) -> None:
    made = {key_id_of(world.access.create_key("factory", f"k{i}")) for i in range(5)}
    key, seen, cursor = bearer(world.access.create_key("factory")), [], None
    while True:
        page = client.get("/v1/api-keys", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=key)
        assert page.status_code == 200 and len(page.json()["items"]) <= 2
        seen += [k["key_id"] for k in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert made <= set(seen) and len(seen) == len(set(seen)) == 6
    for bad in ("garbage", "k2", "a" * 201):
        r = client.get("/v1/api-keys", params={"cursor": bad}, headers=key)
        assert r.status_code == 422 and r.json()["field"] == "cursor", r.text
    r = client.get("/v1/api-keys", params={"limit": world.settings.page_size_max + 1}, headers=key)
    assert r.status_code == 422 and r.json()["field"] == "limit"


def test_last_use_is_recorded(world: App, client: TestClient) -> None:
    token = world.access.create_key("factory")
    listing = bearer(world.access.create_key("factory"))
    before = {k["key_id"]: k for k in client.get("/v1/api-keys", headers=listing).json()["items"]}
    assert before[key_id_of(token)]["last_used_ts_ms"] is None
    client.get("/v1/me", headers=bearer(token))
    after = {k["key_id"]: k for k in client.get("/v1/api-keys", headers=listing).json()["items"]}
    assert after[key_id_of(token)]["last_used_ts_ms"] == world.clock.now_ms()


# --- across processes ---------------------------------------------------------------------------------


@pytest.fixture
def two_processes(store_url: str) -> Iterator[tuple[App, App, ManualClock]]:
    """Two Apps on one database (two processes' worth of memory); the second has its own clock."""
    from conftest import START_MS

    second_clock = ManualClock(START_MS)
    with build(make_settings(store_url), clock=ManualClock(START_MS)) as first:
        onboard(first)
        with build(make_settings(store_url), clock=second_clock) as second:
            yield first, second, second_clock


def test_a_revocation_holds_in_another_process_within_the_ttl(two_processes: tuple[App, App, ManualClock]) -> None:
    first, second, clock = two_processes
    token = first.access.create_key("factory")
    assert second.access.authenticate(token).org_id == "factory"
    first.access.revoke_key(key_id_of(token))
    with pytest.raises(Unauthenticated):
        first.access.authenticate(token)  # at once where it was revoked
    ttl_ms = second.settings.access.auth_cache_ttl_s * 1000
    clock.advance(ttl_ms - 1)
    assert second.access.authenticate(token).org_id == "factory"  # the documented bound: not yet
    clock.advance(1)
    with pytest.raises(Unauthenticated) as refused:
        second.access.authenticate(token)
    assert refused.value.code == "api_key_revoked"
    assert second.access.cached(token) is None


def test_sign_out_and_password_reset_hold_in_another_process(two_processes: tuple[App, App, ManualClock]) -> None:
    first, second, clock = two_processes
    ttl_ms = second.settings.access.auth_cache_ttl_s * 1000
    first.people.add("xcmg", "wang.fang", "Wang Fang", roles=(UserRole.APPROVER,))
    first.people.add("xcmg", "admin.zhao", "Admin Zhao", roles=(UserRole.ADMIN,))
    first.sessions.set_password("wang.fang", PASSWORD)
    session, _ = first.sessions.sign_in("wang.fang", PASSWORD)
    assert second.sessions.resolve(session) is not None
    first.sessions.sign_out(session)
    assert first.sessions.resolve(session) is None
    clock.advance(ttl_ms)
    assert second.sessions.resolve(session) is None

    session, _ = first.sessions.sign_in("wang.fang", PASSWORD)
    token = first.access.create_key("xcmg", "wang's", user_id="wang.fang")
    assert second.sessions.resolve(session) is not None
    assert second.access.authenticate(token).user_id == "wang.fang"
    admin = first.access.authenticate(first.access.create_key("xcmg", "admin", user_id="admin.zhao"))
    first.sessions.reset_password(admin, "wang.fang")
    clock.advance(ttl_ms)
    assert second.sessions.resolve(session) is None
    with pytest.raises(Unauthenticated) as refused:
        second.access.authenticate(token)
    assert refused.value.code == "api_key_revoked"


def test_a_role_change_holds_in_another_process(two_processes: tuple[App, App, ManualClock]) -> None:
    first, second, clock = two_processes
    first.people.add("xcmg", "wang.fang", "Wang Fang", roles=(UserRole.APPROVER,))
    first.sessions.set_password("wang.fang", PASSWORD)
    session, _ = first.sessions.sign_in("wang.fang", PASSWORD)
    token = first.access.create_key("xcmg", "wang's", user_id="wang.fang")
    assert UserRole.APPROVER in second.access.authenticate(token).user_roles
    assert second.sessions.resolve(session).roles == {UserRole.APPROVER}  # type: ignore[union-attr]
    with first.engine.begin() as conn:  # another process takes the role away
        conn.execute(update(users).where(users.c.user_id == "wang.fang").values(roles="viewer"))
    clock.advance(second.settings.access.auth_cache_ttl_s * 1000)
    assert second.access.authenticate(token).user_roles == {UserRole.VIEWER}
    assert second.sessions.resolve(session).roles == {UserRole.VIEWER}  # type: ignore[union-attr]


# --- passwords -----------------------------------------------------------------------------------------


def test_only_an_admin_of_the_users_organisation_resets_its_password(world: App, client: TestClient) -> None:
    person(world, "xcmg", "wang.fang", UserRole.APPROVER)
    clerk = person(world, "xcmg", "clerk.li", UserRole.MAKER)
    rival_admin = person(world, "rival", "admin.rival", UserRole.ADMIN)
    organisation = world.access.create_key("xcmg", "erp")
    world.sessions.sign_in("wang.fang", PASSWORD)
    before = state(world)
    for who, status, code in (
        (organisation, 403, "person_required"),
        (clerk, 403, "user_role_not_allowed"),
        (rival_admin, 404, "user_not_found"),
    ):
        refused = client.post("/v1/users/wang.fang/password-reset", headers=bearer(who))
        assert (refused.status_code, refused.json()["code"]) == (status, code)
    absent = client.post("/v1/users/nobody/password-reset", headers=bearer(rival_admin))
    assert (absent.status_code, absent.json()["code"]) == (404, "user_not_found")
    assert state(world) == before


def test_a_password_reset_ends_everything_and_the_token_works_once(world: App, client: TestClient) -> None:
    victim = person(world, "xcmg", "wang.fang", UserRole.APPROVER)
    admin = person(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    session, _ = world.sessions.sign_in("wang.fang", PASSWORD)
    reset = client.post("/v1/users/wang.fang/password-reset", headers=bearer(admin))
    assert reset.status_code == 200, reset.text
    token = reset.json()["reset_token"]
    assert world.sessions.resolve(session) is None
    assert client.get("/v1/me", headers=bearer(victim)).json()["code"] == "api_key_revoked"
    with pytest.raises(Unauthenticated) as refused:
        world.sessions.sign_in("wang.fang", PASSWORD)  # the old password stopped too
    assert refused.value.code == "sign_in_failed"
    [note] = notices(world, "xcmg", "password_reset")
    assert note["user_id"] == "wang.fang" and note["revoked_key_ids"] == [key_id_of(victim)]
    with pytest.raises(Unauthenticated) as refused:
        world.sessions.redeem_reset("wang.fang", token + "x", NEW_PASSWORD)
    assert refused.value.code == "reset_token_invalid"
    world.sessions.redeem_reset("wang.fang", token, NEW_PASSWORD)
    world.sessions.sign_in("wang.fang", NEW_PASSWORD)
    with pytest.raises(Unauthenticated) as refused:
        world.sessions.redeem_reset("wang.fang", token, "a third horse 11 staple")
    assert refused.value.code == "reset_token_invalid"


def test_a_reset_token_expires(world: App, client: TestClient, clock: ManualClock) -> None:
    person(world, "xcmg", "wang.fang", UserRole.APPROVER)
    admin = person(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    token = client.post("/v1/users/wang.fang/password-reset", headers=bearer(admin)).json()["reset_token"]
    clock.advance(world.settings.web.password_reset_ttl_s * 1000)
    with pytest.raises(Unauthenticated) as refused:
        world.sessions.redeem_reset("wang.fang", token, NEW_PASSWORD)
    assert refused.value.code == "reset_token_invalid"


def test_changing_ones_own_password_needs_the_current_one(world: App, client: TestClient) -> None:
    mine = person(world, "xcmg", "wang.fang", UserRole.APPROVER)
    session, _ = world.sessions.sign_in("wang.fang", PASSWORD)
    before = table_rows(world, (users, web_sessions))
    wrong = client.post(
        "/v1/me/password", json={"current_password": "not it", "new_password": NEW_PASSWORD}, headers=bearer(mine)
    )
    assert (wrong.status_code, wrong.json()["code"], wrong.json()["field"]) == (
        422,
        "current_password_wrong",
        "current_password",
    )
    organisation = world.access.create_key("xcmg")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    refused = client.post("/v1/me/password", json=body, headers=bearer(organisation))
    assert (refused.status_code, refused.json()["code"]) == (403, "person_required")
    assert table_rows(world, (users, web_sessions)) == before
    changed = client.post("/v1/me/password", json=body, headers=bearer(mine))
    assert changed.status_code == 200 and changed.json()["sessions_ended"] is True
    assert world.sessions.resolve(session) is None
    world.sessions.sign_in("wang.fang", NEW_PASSWORD)
    assert client.get("/v1/me", headers=bearer(mine)).status_code == 200  # personal tokens stay
    assert notices(world, "xcmg", "password_changed") == [{"user_id": "wang.fang"}]


# --- sign-in throttling ----------------------------------------------------------------------------------


def fail(app: App, user_id: str, address: str) -> str:
    try:
        app.sessions.sign_in(user_id, "not the password 1", address=address)
    except Unauthenticated as refused:
        return refused.code
    raise AssertionError("a wrong password signed in")


def test_an_attacker_at_one_address_does_not_stop_the_victim_elsewhere(world: App, clock: ManualClock) -> None:
    world.people.add("xcmg", "wang.fang", "Wang Fang", ["maker", "approver"])
    world.sessions.set_password("wang.fang", PASSWORD)
    attacker, victim = "203.0.113.66", "198.51.100.7"
    codes = []
    for _ in range(200):  # an attacker who keeps trying, waiting out every delay
        codes.append(fail(world, "wang.fang", attacker))
        clock.advance(1000)
    assert "sign_in_locked" in codes
    counted = codes.count("sign_in_failed")
    assert counted < 20  # the delays grow: most attempts never reach the password check
    with pytest.raises(Unauthenticated) as refused:
        world.sessions.sign_in("wang.fang", PASSWORD, address=attacker)  # even the right password, from there
    assert refused.value.code == "sign_in_locked"
    world.sessions.sign_in("wang.fang", PASSWORD, address=victim)  # the victim, from its own address: at once


def test_delays_double_up_to_their_cap(world: App, clock: ManualClock) -> None:
    world.people.add("xcmg", "wang.fang", "Wang Fang", ["maker", "approver"])
    world.sessions.set_password("wang.fang", PASSWORD)
    s = world.settings.web
    waits = []
    for _ in range(s.sign_in_max_failures - 1):
        assert fail(world, "wang.fang", "203.0.113.66") == "sign_in_failed"
    for _ in range(14):
        assert fail(world, "wang.fang", "203.0.113.66") == "sign_in_failed"
        with pytest.raises(Unauthenticated) as locked:
            world.sessions.sign_in("wang.fang", PASSWORD, address="203.0.113.66")
        assert locked.value.code == "sign_in_locked"
        waits.append(locked.value.details["retry_after_s"])
        clock.advance(waits[-1] * 1000)
    base, cap = s.sign_in_delay_base_s, s.sign_in_delay_max_s
    assert waits == [min(cap, base * 2**i) for i in range(14)]
    assert waits[-1] == cap


def test_a_distributed_attack_imposes_at_most_a_short_wait(world: App, clock: ManualClock) -> None:
    world.people.add("xcmg", "wang.fang", "Wang Fang", ["maker", "approver"])
    world.sessions.set_password("wang.fang", PASSWORD)
    s = world.settings.web
    for i in range(40):  # forty addresses, one guess each
        fail(world, "wang.fang", f"203.0.113.{i}")
    with pytest.raises(Unauthenticated) as locked:
        world.sessions.sign_in("wang.fang", PASSWORD, address="198.51.100.7")
    assert locked.value.code == "sign_in_locked"
    assert locked.value.details["retry_after_s"] <= s.sign_in_user_delay_max_s
    clock.advance(s.sign_in_user_delay_max_s * 1000)
    world.sessions.sign_in("wang.fang", PASSWORD, address="198.51.100.7")


def test_one_address_guessing_many_users_is_slowed_down(world: App) -> None:
    s = world.settings.web
    for i in range(s.sign_in_address_max_failures):
        fail(world, f"user-{i}", "203.0.113.66")
    assert fail(world, "someone-else", "203.0.113.66") == "sign_in_locked"
    assert fail(world, "someone-else", "198.51.100.7") == "sign_in_failed"


def test_a_trip_notifies_the_admins_once_and_an_admin_unlocks(world: App, client: TestClient) -> None:
    world.people.add("xcmg", "wang.fang", "Wang Fang", ["maker", "approver"])
    world.sessions.set_password("wang.fang", PASSWORD)
    admin = person(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    clerk = person(world, "xcmg", "clerk.li", UserRole.MAKER)
    rival_admin = person(world, "rival", "admin.rival", UserRole.ADMIN)
    for _ in range(world.settings.web.sign_in_max_failures):
        fail(world, "wang.fang", "203.0.113.66")
    assert fail(world, "wang.fang", "203.0.113.66") == "sign_in_locked"
    [note] = notices(world, "xcmg", "sign_in_throttled")
    assert note == {"user_id": "wang.fang", "address": "203.0.113.66", "scope": "user_address"}
    before = table_rows(world, (sign_in_throttle,))
    for who, status, code in ((clerk, 403, "user_role_not_allowed"), (rival_admin, 404, "user_not_found")):
        refused = client.post("/v1/users/wang.fang/unlock", headers=bearer(who))
        assert (refused.status_code, refused.json()["code"]) == (status, code)
    assert table_rows(world, (sign_in_throttle,)) == before
    unlocked = client.post("/v1/users/wang.fang/unlock", headers=bearer(admin))
    assert unlocked.status_code == 200 and unlocked.json()["counters_cleared"] >= 1
    world.sessions.sign_in("wang.fang", PASSWORD, address="203.0.113.66")
    assert len(notices(world, "xcmg", "sign_in_unlocked")) == 1


def test_a_locked_api_call_carries_retry_after(world: App, client: TestClient) -> None:
    mine = person(world, "xcmg", "wang.fang", UserRole.APPROVER)
    body = {"current_password": "not it", "new_password": NEW_PASSWORD}
    for _ in range(world.settings.web.sign_in_max_failures):
        assert client.post("/v1/me/password", json=body, headers=bearer(mine)).status_code == 422
    locked = client.post("/v1/me/password", json=body, headers=bearer(mine))
    assert (locked.status_code, locked.json()["code"]) == (401, "sign_in_locked")
    assert locked.headers["retry-after"] == str(world.settings.web.sign_in_delay_base_s)


def test_concurrent_wrong_passwords_are_counted_exactly(store_url: str, clock: ManualClock) -> None:
    settings = make_settings(
        store_url,
        web={
            "password_memory_kib": 8 * 1024,
            "password_time_cost": 1,
            "sign_in_max_failures": 1000,
            "sign_in_address_max_failures": 1000,
        },
    )
    with build(settings, clock=clock) as app:
        onboard(app, "xcmg")
        app.people.add("xcmg", "wang.fang", "Wang Fang", ["maker", "approver"])
        app.sessions.set_password("wang.fang", PASSWORD)
        n, start = 24, threading.Barrier(24)
        codes: list[str] = []

        def attempt() -> None:
            start.wait()
            codes.append(fail(app, "wang.fang", "203.0.113.66"))

        threads = [threading.Thread(target=attempt) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == ["sign_in_failed"] * n
        with app.engine.connect() as conn:
            counts = dict(conn.execute(select(sign_in_throttle.c.scope, sign_in_throttle.c.failures)).all())
        assert counts == {"user_address": n, "address": n, "user": 1}  # the user counts addresses


def test_the_delay_rule() -> None:
    assert [delay_ms(n, 3, 1, 10) for n in range(1, 9)] == [0, 0, 1000, 2000, 4000, 8000, 10000, 10000]
    assert delay_ms(10**6, 3, 1, 900) == 900_000


def test_password_policy_applies_to_resets(world: App) -> None:
    world.people.add("xcmg", "wang.fang", "Wang Fang", ["maker", "approver"])
    with pytest.raises(InvalidInput):
        world.sessions.redeem_reset("wang.fang", "cfr_x", "short")
    with pytest.raises(NotFound):
        world.access.create_key("xcmg", user_id="nobody")


def test_schema_matches_the_migration(world: App) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from creditflow.migrations.schema import metadata

    with world.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    mine = [d for d in diffs if any(n in repr(d) for n in ("api_keys", "sign_in_throttle", "'users'"))]
    assert mine == []
