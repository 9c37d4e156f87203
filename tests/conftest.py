"""Shared fixtures. `store_url` runs a test on SQLite and, when CREDITFLOW_TEST_PG_URL is set (CI sets
it), on a fresh PostgreSQL database too; without it the PostgreSQL variant skips and says why."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import queue
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, create_engine, select, text

from creditflow.bootstrap import App, build
from creditflow.config import Settings
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.engine import make_engine, migrate
from creditflow.kernel.uscc import make_uscc

PG_URL = os.environ.get("CREDITFLOW_TEST_PG_URL")
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
START_MS = int(START.timestamp() * 1000)
FAST_KDF = {"kdf_opslimit": 1, "kdf_memlimit_bytes": 8 * 1024 * 1024}
# Argon2id for user passwords at its floor (8 MiB, one pass): production strength is not under test here.
FAST_PASSWORDS = {"password_memory_kib": 8 * 1024, "password_time_cost": 1}
# The tests' passphrases, given explicitly (the platform refuses to open a database without them unless `dev`):
# one seals organisations' keys, the other the log key, apart. CLI_SECRETS_ENV is the same for a command's env.
TEST_KEY_PASSPHRASE = "test-key-passphrase"
TEST_LOG_KEY_PASSPHRASE = "test-log-key-passphrase"
TEST_SECRETS = {"key_passphrase": TEST_KEY_PASSPHRASE, "log_key_passphrase": TEST_LOG_KEY_PASSPHRASE}
CLI_SECRETS_ENV = {
    "CREDITFLOW_KEY_PASSPHRASE": TEST_KEY_PASSPHRASE,
    "CREDITFLOW_LOG_KEY_PASSPHRASE": TEST_LOG_KEY_PASSPHRASE,
}


_ADMIN: Any = None
_TEMPLATE: str | None = None


def _admin() -> Any:
    global _ADMIN
    if _ADMIN is None:
        assert PG_URL is not None
        _ADMIN = create_engine(
            PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
        )
    return _ADMIN


def _template() -> str:
    """One migrated database per test process; every PostgreSQL test gets a copy of it. Copying a template
    takes a fraction of the time of creating a database and running the migrations on it."""
    global _TEMPLATE
    if _TEMPLATE is None:
        assert PG_URL is not None
        name = f"cf_tpl_{uuid.uuid4().hex[:10]}"
        with _admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine = make_engine(f"{PG_URL.rsplit('/', 1)[0]}/{name}")
        migrate(engine)
        engine.dispose()
        _TEMPLATE = name
        atexit.register(_drop_template, name)
    return _TEMPLATE


def _drop_template(name: str) -> None:
    with _admin().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    _admin().dispose()


_SQLITE_TEMPLATE: Path | None = None


def _sqlite_template() -> Path:
    """One migrated SQLite file per test process, copied for every test of the ``store_url`` SQLite variant
    (as `_template` is for PostgreSQL): running the fifteen migrations costs each test about half a second,
    copying the file a millisecond."""
    global _SQLITE_TEMPLATE
    if _SQLITE_TEMPLATE is None:
        folder = Path(tempfile.mkdtemp(prefix="cf-sqlite-template-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate(engine)
        engine.dispose()  # the last connection closing checkpoints the WAL into the file and removes it
        assert not path.with_name(path.name + "-wal").exists(), "the template's WAL was not checkpointed"
        _SQLITE_TEMPLATE = path
    return _SQLITE_TEMPLATE


class _SpareDatabases:
    """Copies of the template made ahead, on a background thread, while tests run; dropped the same way.

    CREATE DATABASE ... TEMPLATE takes about half a second here (the copy is written and synced); a test
    that waited for it would spend most of its time there. The thread keeps `SPARES` copies ready and
    drops used ones behind the test, so a test usually takes a ready copy at once."""

    SPARES = 2

    def __init__(self) -> None:
        self.ready: queue.Queue[str] = queue.Queue(maxsize=self.SPARES)
        self.to_drop: queue.Queue[str | None] = queue.Queue()
        self.made: list[str] = []
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._make, name="pg-spares", daemon=True).start()
        threading.Thread(target=self._drop, name="pg-drops", daemon=True).start()
        atexit.register(self._drop_all)

    def _create(self) -> str:
        name = f"cf_{uuid.uuid4().hex[:12]}"
        with self._lock:
            if self._closing:
                raise RuntimeError("the test session is ending")
            self.made.append(name)
        with _admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_template()}"'))
        return name

    def _make(self) -> None:
        while True:
            try:
                name = self._create()
            except Exception:  # the server went away: tests then create their own copy and see the error
                return
            self.ready.put(name)  # blocks while SPARES copies wait

    def _drop(self) -> None:
        while (name := self.to_drop.get()) is not None:
            with contextlib.suppress(Exception), _admin().connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def take(self) -> str:
        try:
            return self.ready.get(timeout=30)
        except queue.Empty:
            return self._create()

    def give_back(self, name: str) -> None:
        self.to_drop.put(name)

    def _drop_all(self) -> None:
        with self._lock:
            self._closing = True
            names = list(self.made)
        with contextlib.suppress(Exception), _admin().connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_SPARES: _SpareDatabases | None = None


def _pg_database() -> Iterator[str]:
    global _SPARES
    assert PG_URL is not None
    _template()  # made (and migrated) in this thread first, so a migration error shows in the test
    if _SPARES is None:
        _SPARES = _SpareDatabases()
    name = _SPARES.take()
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _SPARES.give_back(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        shutil.copyfile(_sqlite_template(), tmp_path / "creditflow.db")
        yield f"sqlite:///{tmp_path / 'creditflow.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL variant: set CREDITFLOW_TEST_PG_URL to run it (CI does)")
    yield from _pg_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'creditflow.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("needs PostgreSQL: set CREDITFLOW_TEST_PG_URL to run it (CI does)")
    yield from _pg_database()


def make_settings(url: str, **overrides: object) -> Settings:
    """Settings for tests of the ledger's own mechanics: trade rules (confirmed payables, credit lines,
    invoices cited by transfers) are switched off here so those tests can move value freely; the trade
    tests (`trade_app`) and the demo run with the production default, on."""
    values: dict[str, object] = {
        **FAST_KDF,
        **TEST_SECRETS,
        "web": FAST_PASSWORDS,
        "enforce_trade_rules": False,
        **overrides,
    }
    return Settings(db_url=url, **values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def app(store_url: str, clock: ManualClock) -> Iterator[App]:
    with build(make_settings(store_url), clock=clock) as application:
        yield application


@pytest.fixture
def sqlite_app(sqlite_url: str, clock: ManualClock) -> Iterator[App]:
    with build(make_settings(sqlite_url), clock=clock) as application:
        yield application


USCC = {
    name: make_uscc(f"9132030013478{i:04d}")
    for i, name in enumerate(
        ["xcmg", "factory", "steel", "ore", "operator", "bank", "auditor", "other", "rival"], start=1
    )
}
ROLES = {
    "xcmg": "core_enterprise",
    "factory": "supplier",
    "steel": "supplier",
    "ore": "supplier",
    "operator": "operator",
    "bank": "bank",
    "auditor": "auditor",
    "other": "supplier",
    "rival": "core_enterprise",
}


def onboard(application: App, *names: str) -> None:
    for name in names or tuple(ROLES):
        application.ledger.register_organisation(name, name.title(), ROLES[name], USCC[name])


@pytest.fixture
def world(app: App) -> App:
    """An app with the demo's cast registered (platform custody)."""
    onboard(app)
    return app


def issue_accepted(application: App, face_minor: int = 100_000_000, holder: str = "factory") -> str:
    """Issue a certificate from xcmg to ``holder`` and accept it; return the root piece id."""
    payable = application.payables.create_payable("xcmg", holder, face_minor, f"PO-{uuid.uuid4().hex[:6]}")
    receipt = application.ledger.issue("xcmg", payable.id, face_minor, dt.date(2026, 9, 1))
    piece_id = str(receipt.result["piece_id"])
    application.ledger.accept(holder, piece_id)
    return piece_id


def table_rows(app: App, tables: Iterable[Table]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of each table, in a stable order: compare before and after to show a refused command
    changed nothing."""
    with app.engine.connect().execution_options(read_only=True) as conn:
        return {t.name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr) for t in tables}


@pytest.fixture
def web(world: App) -> Iterator[Any]:
    """A browser-like client for the web pages (cookies kept) on the app with the demo's cast."""
    from fastapi.testclient import TestClient

    from creditflow.http.app import create_app

    with TestClient(create_app(world), base_url="http://127.0.0.1") as client:
        yield client


def person(application: App, org_id: str, user_id: str, roles: Iterable[str] = ("approver",)) -> Any:
    """A person of ``org_id`` with ``roles`` (added as the operator would) and the `Principal` of their
    personal token: who approves payables, manages users, ... in person."""
    application.people.add(org_id, user_id, user_id.replace(".", " ").title(), list(roles))
    return application.access.authenticate(application.access.create_key(org_id, f"{user_id}'s", user_id=user_id))


def approve_as(application: App, payable_id: str, user_id: str) -> dict[str, Any]:
    """``user_id`` (a person with the approver role) approves the payable in person, with a personal token."""
    org_id = application.people.get(user_id).org_id
    token = application.access.create_key(org_id, f"{user_id}'s", user_id=user_id)
    return application.confirmation.approve(payable_id, application.access.authenticate(token))
