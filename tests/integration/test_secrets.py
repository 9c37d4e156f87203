"""Secrets (issue 13, point 3), on SQLite and PostgreSQL.

* No passphrase, no start: every command that opens a database refuses (exit 3, a stable code) before anything is
  opened or written, unless the database is a demo's (its throwaway passphrases are in it) or `--dev` is given.
* The log key is sealed apart: the organisations' passphrase does not open it, its secret opens no organisation's
  key; a key file works instead of a passphrase, and an unsafe one is refused.
* A response that carried a secret (an API key, a device secret) is never stored: the database holds no trace of
  it, and a replay with the same Idempotency-Key answers 409 ``idempotent_secret_not_replayable``; every route
  whose response has a secret-looking field declares it (``carries_secret``); responses stored before are
  scrubbed by the migration.
* Device secrets rotate: the old secret stops working at once, the new one works.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from sqlalchemy import MetaData, select, text
from typer.testing import CliRunner

from conftest import (
    CLI_SECRETS_ENV,
    FAST_KDF,
    TEST_KEY_PASSPHRASE,
    TEST_LOG_KEY_PASSPHRASE,
    make_settings,
    onboard,
)
from creditflow.bootstrap import App, build, build_demo
from creditflow.cli.main import cli
from creditflow.collateral.model import make_message
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.http.app import create_app
from creditflow.identity.tables import idempotency_keys
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.engine import alembic_config, make_engine
from creditflow.ledger.custody import (
    Custody,
    LogKeyCustody,
    LogSecret,
    StartupRefused,
    WrongLogSecret,
    WrongPassphrase,
    write_log_key_file,
)
from creditflow.ledger.tables import custody_keys, custody_meta, log_key_custody

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

# The environment of a command run "with nothing set": None removes a variable for the run.
NO_SECRETS: dict[str, str | None] = {
    "CREDITFLOW_KEY_PASSPHRASE": None,
    "CREDITFLOW_LOG_KEY_PASSPHRASE": None,
    "CREDITFLOW_LOG_KEY_FILE": None,
    "CREDITFLOW_DEV": None,
    "CREDITFLOW_DB_URL": None,
    "CREDITFLOW_KDF_OPSLIMIT": "1",
    "CREDITFLOW_KDF_MEMLIMIT_BYTES": str(FAST_KDF["kdf_memlimit_bytes"]),
}


def run(args: list[str], tmp_path: Path, **env: str | None) -> Any:
    return CliRunner().invoke(
        cli, args, env={**NO_SECRETS, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml"), **env}, catch_exceptions=False
    )


def _sqlite_files(url: str) -> dict[str, str]:
    """SHA-256 of the main database file (the -wal/-shm beside it may appear when SQLite reads a WAL database)."""
    db = Path(url.removeprefix("sqlite:///"))
    return {db.name: hashlib.sha256(db.read_bytes()).hexdigest()} if db.exists() else {}


def _every_stored_value(app: App, url: str) -> list[bytes]:
    """Every value in every table of the database (reflected, so other contexts' new tables count too), and the
    raw SQLite files."""
    meta = MetaData()
    meta.reflect(app.engine)
    chunks: list[bytes] = []
    with app.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode())
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        chunks += [f.read_bytes() for f in db.parent.glob(db.name + "*")]
    return chunks


# --- 1. no passphrase, no start ------------------------------------------------------------------------------

# Every command that opens a database (serve refuses before it listens).
OPENING = [
    ["init"],
    ["serve"],
    ["verify"],
    ["log-key"],
    ["expire"],
    ["org", "list"],
    ["org", "create", "--id", "x", "--name", "X", "--role", "supplier", "--uscc", "91350100M000100Y43"],
    ["org", "api-key", "xcmg"],
    ["proof", "inclusion", "--index", "0"],
    ["network", "exposure"],
    ["erp", "match", "INV-1", "--seller", "91350100M000100Y43"],
    ["credit", "models"],
    ["credit", "monitor"],
    ["iot", "alarms"],
    ["iot", "loan", "L"],
    ["iot", "device-rotate", "d1"],
    ["keys", "seal-log-key"],
]


@pytest.mark.parametrize("args", OPENING, ids=lambda a: " ".join(a[:2]))
def test_a_command_without_the_passphrase_on_a_new_database_refuses_and_creates_nothing(
    args: list[str], tmp_path: Path
) -> None:
    db = tmp_path / "new.db"
    result = run([*args, "--db", f"sqlite:///{db}"], tmp_path)
    assert result.exit_code == 3, result.output
    assert "key_passphrase_required" in result.output and "CREDITFLOW_KEY_PASSPHRASE" in result.output
    assert "--dev" in result.output  # and says how to run on throwaway data
    assert list(tmp_path.iterdir()) == []  # no file, not even an empty one


@pytest.mark.parametrize("args", OPENING, ids=lambda a: " ".join(a[:2]))
def test_a_command_without_the_passphrase_on_a_real_database_refuses_and_writes_nothing(
    args: list[str], tmp_path: Path, sqlite_url: str
) -> None:
    with build(make_settings(sqlite_url), clock=ManualClock(1_000)) as app:
        onboard(app, "xcmg")
    before = _sqlite_files(sqlite_url)
    result = run([*args, "--db", sqlite_url], tmp_path)
    assert result.exit_code == 3, result.output
    assert "key_passphrase_required" in result.output
    assert _sqlite_files(sqlite_url) == before


def test_the_log_key_needs_its_own_secret_and_not_the_organisations_one(tmp_path: Path, sqlite_url: str) -> None:
    only_key = run(["init", "--db", sqlite_url], tmp_path, CREDITFLOW_KEY_PASSPHRASE=TEST_KEY_PASSPHRASE)
    assert only_key.exit_code == 3 and "log_key_secret_required" in only_key.output
    same = run(
        ["init", "--db", sqlite_url],
        tmp_path,
        CREDITFLOW_KEY_PASSPHRASE=TEST_KEY_PASSPHRASE,
        CREDITFLOW_LOG_KEY_PASSPHRASE=TEST_KEY_PASSPHRASE,
    )
    assert same.exit_code == 3 and "log_key_secret_reused" in same.output
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()
    both = run(["init", "--db", sqlite_url], tmp_path, **CLI_SECRETS_ENV)
    assert both.exit_code == 0, both.output
    assert "warning" not in both.output


def test_a_refusal_on_postgresql_writes_nothing(tmp_path: Path, pg_url: str) -> None:
    result = run(["org", "list", "--db", pg_url], tmp_path)
    assert result.exit_code == 3 and "key_passphrase_required" in result.output
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:  # the key store was never set up: no salt, no check value, no log key
            assert conn.execute(select(custody_meta)).first() is None
            assert conn.execute(select(log_key_custody)).first() is None
    finally:
        engine.dispose()


def test_dev_mode_runs_with_the_public_passphrases_and_says_so(tmp_path: Path, sqlite_url: str) -> None:
    result = run(["--dev", "init", "--db", sqlite_url], tmp_path)
    assert result.exit_code == 0, result.output
    assert "development mode" in result.output and "never use this on real data" in result.output
    again = run(["--dev", "log-key", "--db", sqlite_url], tmp_path)
    assert again.exit_code == 0 and json.loads(again.stdout.strip().splitlines()[-1])
    # a database set up in development mode is not opened by a real passphrase either
    real = run(["log-key", "--db", sqlite_url], tmp_path, **CLI_SECRETS_ENV)
    assert real.exit_code == 3 and "wrong_key_passphrase" in real.output


def test_a_demo_database_opens_with_its_own_throwaway_passphrases(tmp_path: Path, sqlite_url: str) -> None:
    with build_demo(sqlite_url, clock=ManualClock(1_000), **FAST_KDF) as app:
        onboard(app, "xcmg")
        log_key = app.log_signer.public_key.hex()
    listed = run(["org", "list", "--db", sqlite_url], tmp_path)
    assert listed.exit_code == 0, listed.output
    assert "xcmg" in listed.stdout and "demo database" in listed.output
    assert log_key in run(["log-key", "--db", sqlite_url], tmp_path).stdout
    with build_demo(sqlite_url, **FAST_KDF) as again:  # a second demo run on it: the same passphrases
        assert again.log_signer.public_key.hex() == log_key
    # with a passphrase set, a demo's database is not opened silently: refused, with the reason
    refused = run(["org", "list", "--db", sqlite_url], tmp_path, **CLI_SECRETS_ENV)
    assert refused.exit_code == 3 and "demo's database" in refused.output


def test_the_demo_refuses_a_database_that_is_not_a_demos(tmp_path: Path, sqlite_url: str) -> None:
    with build(make_settings(sqlite_url)) as app:
        onboard(app, "xcmg")
    before = _sqlite_files(sqlite_url)
    with pytest.raises(StartupRefused) as refused:
        build_demo(sqlite_url, **FAST_KDF)
    assert refused.value.code == "not_a_demo_database"
    assert _sqlite_files(sqlite_url) == before


# --- 2. the log key sealed apart ---------------------------------------------------------------------------


def test_the_custody_passphrase_does_not_open_the_log_key_nor_the_other_way(app: App) -> None:
    with app.engine.connect() as conn:
        assert conn.execute(select(custody_keys).where(custody_keys.c.org_id == "platform")).first() is None
        assert conn.execute(select(log_key_custody.c.key_id)).scalars().all() == [app.log_signer.key_id]
    custody_secret = LogSecret("passphrase", TEST_KEY_PASSPHRASE.encode(), "the organisations' passphrase")
    with pytest.raises(WrongLogSecret):
        LogKeyCustody(app.engine, custody_secret, 1, FAST_KDF["kdf_memlimit_bytes"]).signer()
    with pytest.raises(WrongPassphrase):
        Custody(app.engine, TEST_LOG_KEY_PASSPHRASE.encode(), 1, FAST_KDF["kdf_memlimit_bytes"]).unlock()
    right = LogSecret("passphrase", TEST_LOG_KEY_PASSPHRASE.encode(), "the log's")
    assert LogKeyCustody(app.engine, right, 1, FAST_KDF["kdf_memlimit_bytes"]).signer().seed == app.log_signer.seed


def test_a_wrong_log_passphrase_is_refused_at_start(store_url: str, clock: ManualClock) -> None:
    build(make_settings(store_url), clock=clock).close()
    with pytest.raises(WrongLogSecret):
        build(make_settings(store_url, log_key_passphrase="not the log's"), clock=clock)
    with pytest.raises(WrongLogSecret):  # development mode does not help either
        build(make_settings(store_url, log_key_passphrase=None, dev=True), clock=clock)


def test_a_log_key_file_seals_it_instead_of_a_passphrase(tmp_path: Path, sqlite_url: str) -> None:
    key_file = tmp_path / "log.key"
    write_log_key_file(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):  # never overwritten
        write_log_key_file(key_file)
    with_file = make_settings(sqlite_url, log_key_passphrase=None, log_key_file=key_file)
    with build(with_file) as app:
        log_key = app.log_signer.public_key
        with app.engine.connect() as conn:
            assert conn.execute(select(log_key_custody.c.kek_kind)).scalar_one() == "file"
        stored = _every_stored_value(app, sqlite_url)
        assert not any(key_file.read_bytes().strip() in chunk for chunk in stored)
    with build(with_file) as again:
        assert again.log_signer.public_key == log_key
    with pytest.raises(WrongLogSecret):  # a passphrase does not open a key sealed with a file
        build(make_settings(sqlite_url))
    other = tmp_path / "other.key"
    write_log_key_file(other)
    with pytest.raises(WrongLogSecret):
        build(make_settings(sqlite_url, log_key_passphrase=None, log_key_file=other))

    def refused(settings_overrides: dict[str, Any]) -> str:
        with pytest.raises(StartupRefused) as exc:
            build(make_settings(sqlite_url, **settings_overrides))
        return exc.value.code

    assert refused({"log_key_file": key_file}) == "log_key_secret_ambiguous"  # a file and a passphrase
    key_file.chmod(0o644)
    assert refused({"log_key_passphrase": None, "log_key_file": key_file}) == "log_key_file_unusable"
    short = tmp_path / "short.key"
    short.write_text("too short")
    short.chmod(0o600)
    assert refused({"log_key_passphrase": None, "log_key_file": short}) == "log_key_file_unusable"
    assert refused({"log_key_passphrase": None, "log_key_file": tmp_path / "absent"}) == "log_key_file_unusable"


def test_keys_seal_log_key_on_the_command_line(tmp_path: Path) -> None:
    golden = Path(__file__).resolve().parent.parent / "data" / "golden" / "ledger-before-issue-12.db"
    copy = tmp_path / "golden.db"
    copy.write_bytes(golden.read_bytes())
    url = f"sqlite:///{copy}"
    env = {"CREDITFLOW_KEY_PASSPHRASE": "golden-database-passphrase", "CREDITFLOW_LOG_KEY_PASSPHRASE": "apart"}
    refused = run(["verify", "--db", url], tmp_path, **env)
    assert refused.exit_code == 3 and "log_key_not_separated" in refused.output
    assert "creditflow keys seal-log-key" in refused.output
    sealed = run(["keys", "seal-log-key", "--db", url], tmp_path, **env)
    assert sealed.exit_code == 0 and "is now sealed apart" in sealed.output, sealed.output
    assert run(["verify", "--db", url], tmp_path, **env).exit_code == 0
    twice = run(["keys", "seal-log-key", "--db", url], tmp_path, **env)
    assert twice.exit_code == 0 and "already sealed apart" in twice.output
    dev_only = run(["--dev", "keys", "seal-log-key", "--db", url], tmp_path)
    assert dev_only.exit_code == 3 and "log_key_secret_required" in dev_only.output


# --- 3. secrets are never stored for replays ----------------------------------------------------------------


@pytest.fixture
def http(app: App) -> Iterator[tuple[TestClient, App]]:
    onboard(app, "steel", "operator")
    app.iot.close()  # the wired one, replaced by one without the offline sweep (the clock is manual)
    app.iot = IotSystem(app.engine, IotSettings(), app.clock, custody=app.custody, sweep_offline=False)
    with TestClient(create_app(app)) as client:
        yield client, app


def _bearer(app: App, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.access.create_key(org, 'test')}"}


def _replay_refused(response: Any, secret: str) -> None:
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "idempotent_secret_not_replayable" and body["field"] == "Idempotency-Key"
    assert "shown only once" in body["detail"]
    assert response.headers["Idempotent-Replayed"] == "true"
    assert secret not in response.text


def test_an_api_key_created_with_an_idempotency_key_is_in_no_row(http: tuple[TestClient, App], store_url: str) -> None:
    client, app = http
    steel = _bearer(app, "steel")
    first = client.post("/v1/api-keys", headers={**steel, "Idempotency-Key": "k-1"}, json={"label": "erp"})
    assert first.status_code == 201, first.text
    token = first.json()["api_key"]
    secret_part = token.rsplit("_", 1)[1]
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    stored = _every_stored_value(app, store_url)
    assert not any(token.encode() in chunk or secret_part.encode() in chunk for chunk in stored)
    with app.engine.connect() as conn:
        row = conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == "k-1")).one()
    assert row.secret_withheld and row.status_code == 201 and "POST /v1/api-keys" in row.response

    again = client.post("/v1/api-keys", headers={**steel, "Idempotency-Key": "k-1"}, json={"label": "erp"})
    _replay_refused(again, token)
    assert "create another one" in again.json()["detail"]
    # the same key for another request is still the ordinary conflict, and a new key gets a new secret
    other = client.post("/v1/api-keys", headers={**steel, "Idempotency-Key": "k-1"}, json={"label": "other"})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    fresh = client.post("/v1/api-keys", headers={**steel, "Idempotency-Key": "k-2"}, json={"label": "erp"})
    assert fresh.status_code == 201 and fresh.json()["api_key"] != token


def test_device_secrets_are_never_replayed_and_rotation_retires_the_old_one(
    http: tuple[TestClient, App], store_url: str
) -> None:
    client, app = http
    steel = _bearer(app, "steel")
    asset = {
        "asset_id": "lot",
        "kind": "warehouse_lot",
        "name": "rebar",
        "commodity": "steel",
        "quantity_kg": 50_000,
        "receipt_no": "WR-1",
    }
    assert client.post("/v1/iot/assets", headers=steel, json=asset).status_code == 201
    device = {"device_id": "sc", "asset_id": "lot", "kind": "scale"}
    made = client.post("/v1/iot/devices", headers={**steel, "Idempotency-Key": "dev-1"}, json=device)
    assert made.status_code == 201, made.text
    old = made.json()["secret"]
    _replay_refused(client.post("/v1/iot/devices", headers={**steel, "Idempotency-Key": "dev-1"}, json=device), old)

    now = app.clock.now_ms()

    def send(secret: str, seq: int) -> dict[str, Any]:
        message = json.loads(make_message(bytes.fromhex(secret), "sc", now + seq, seq, {"weight_kg": 50_000.0}))
        response = client.post("/v1/iot/telemetry", json={"messages": [message]})
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert send(old, 1)["accepted"] == 1
    rotated = client.post("/v1/iot/devices/sc/rotate", headers={**steel, "Idempotency-Key": "rot-1"})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old
    assert send(old, 2)["accepted"] == 0  # the old secret stops working at once
    assert send(new, 3)["accepted"] == 1
    replay = client.post("/v1/iot/devices/sc/rotate", headers={**steel, "Idempotency-Key": "rot-1"})
    _replay_refused(replay, new)
    assert send(new, 4)["accepted"] == 1  # the refused replay rotated nothing
    stored = _every_stored_value(app, store_url)
    for secret in (old, new):
        assert not any(secret.encode() in chunk or bytes.fromhex(secret) in chunk for chunk in stored)


def test_a_refusal_of_a_secret_endpoint_is_replayed_as_usual(http: tuple[TestClient, App]) -> None:
    client, app = http
    steel = _bearer(app, "steel")
    device = {"device_id": "sc", "asset_id": "no-such-asset", "kind": "scale"}
    first = client.post("/v1/iot/devices", headers={**steel, "Idempotency-Key": "d"}, json=device)
    assert first.status_code == 404
    again = client.post("/v1/iot/devices", headers={**steel, "Idempotency-Key": "d"}, json=device)
    assert again.status_code == 404 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"


SECRET_FIELDS = {"api_key", "secret", "token", "password", "private_key", "seed"}


def _secret_fields(model: Any) -> set[str]:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return set()
    return {
        name for name in model.model_fields if name in SECRET_FIELDS or name.endswith(("_secret", "_token", "_api_key"))
    }


def test_every_route_returning_a_secret_declares_it(sqlite_app: App) -> None:
    """The declaration is what keeps a secret out of `idempotency_keys`: a new route with a secret-looking field in
    its response model fails here until it says ``dependencies=[carries_secret("how to get a new one")]``."""
    marked, unmarked = set(), set()
    for context in iter_route_contexts(create_app(sqlite_app).routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or "POST" not in (context.methods or ()):
            continue
        declared = any(getattr(d.call, "__name__", "") == "carries_secret" for d in route.dependant.dependencies)
        if declared:
            marked.add(context.path_format)
        elif _secret_fields(route.response_model):
            unmarked.add(context.path_format)
    assert unmarked == set()
    assert {"/v1/api-keys", "/v1/organisations", "/v1/iot/devices", "/v1/iot/devices/{device_id}/rotate"} <= marked


def test_the_migration_scrubs_secrets_stored_before_it(store_url: str) -> None:
    engine = make_engine(store_url)
    cfg = alembic_config(engine)
    try:
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "0010-1")  # as before this revision
        rows = [
            ("bank", "a", 201, json.dumps({"org_id": "bank", "key_id": "k", "api_key": "cf_k_TOPSECRET1"})),
            ("steel", "b", 201, json.dumps({"device_id": "d", "secret": "ab" * 32})),
            ("steel", "c", 200, json.dumps({"device_id": "d", "secret_version": 2})),  # no secret in it
            ("steel", "d", 409, json.dumps({"code": "conflict", "detail": "secret"})),
        ]
        with engine.begin() as conn:
            for org, key, status, body in rows:
                conn.execute(
                    text(
                        "INSERT INTO idempotency_keys (org_id, key, request_sha256, status_code, response, "
                        "created_ts_ms) VALUES (:o, :k, :h, :s, :r, 0)"
                    ),
                    {"o": org, "k": key, "h": b"\0" * 32, "s": status, "r": body},
                )
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            after = {r.key: r for r in conn.execute(select(idempotency_keys))}
        assert after["a"].secret_withheld and after["b"].secret_withheld
        assert "TOPSECRET1" not in after["a"].response and "ab" * 32 not in after["b"].response
        assert after["a"].status_code == 201
        assert not after["c"].secret_withheld and after["c"].response == rows[2][3]
        assert not after["d"].secret_withheld and after["d"].response == rows[3][3]
        command.downgrade(cfg, "0010-1")  # withheld rows would replay as a success without their secret: gone
        with engine.connect() as conn:
            keys = set(conn.execute(text("SELECT key FROM idempotency_keys")).scalars())
        assert keys == {"c", "d"}
        command.upgrade(cfg, "head")
    finally:
        engine.dispose()
