"""Engines for the two supported stores and the migration runner.

SQLite runs in WAL mode with ``synchronous=FULL``: a commit that returned is on disk, which is what
"acknowledged" means for the ledger. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, Connection, Engine, and_, create_engine, event, or_
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

_T = TypeVar("_T")

__all__ = [
    "Connection",
    "Engine",
    "create_database",
    "drop_database",
    "is_sqlite",
    "make_engine",
    "migrate",
    "normalise_url",
    "peek",
    "peek_engine",
]
# `Connection` and `Engine` are re-exported: services hold an Engine and open one transaction per command
# (`with engine.begin() as conn`), handing the Connection to store functions, without importing SQLAlchemy.

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy would otherwise pick psycopg2)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's BEGIN control transactions (pysqlite's own handling defers BEGIN).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the write lock at BEGIN, so they queue up instead of failing later with
            # "database is locked"; readers (execution option read_only=True) begin deferred and never block.
            if conn.get_execution_options().get("read_only"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def peek_engine(url: str) -> Engine | None:
    """An engine that only reads what is already there, for checks made before anything may be written (before
    migrations, before a missing SQLite file would be created); None if there is no database to read. SQLite
    opens read-only; PostgreSQL without a pool."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:" or not Path(database).expanduser().is_file():
            return None
        path = Path(database).expanduser().resolve()
        return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)
    return create_engine(url, poolclass=NullPool)


def peek(url: str, read: Callable[[Connection], _T], default: _T) -> _T:
    """``read`` on a `peek_engine` of ``url``; ``default`` if there is no database, it is unreachable, or it is
    not one yet (a database error while reading)."""
    engine = peek_engine(url)
    if engine is None:
        return default
    try:
        with engine.connect() as conn:
            return read(conn)
    except SQLAlchemyError:
        return default
    finally:
        engine.dispose()


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def create_database(url: str, name: str, *, template: str | None = None) -> str:
    """Create PostgreSQL database ``name`` on the server of ``url`` (a copy of ``template`` if given) and return
    its URL. For the demo's tampered copy and the benchmarks' scratch databases; never for production data."""
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database ``url`` names (connected through the server's ``postgres`` database)."""
    base, name = url.rsplit("/", 1)
    admin = create_engine(normalise_url(base + "/postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def before_key(columns: Sequence[ColumnElement[Any]], key: Sequence[int | str]) -> ColumnElement[bool]:
    """``(columns) < (key)`` in lexicographic order: the keyset condition of a list newest first."""
    first, *rest = columns
    if not rest:
        return first < key[0]
    return or_(first < key[0], and_(first == key[0], before_key(rest, key[1:])))


def after_key(columns: Sequence[ColumnElement[Any]], key: Sequence[int | str]) -> ColumnElement[bool]:
    """``(columns) > (key)`` in lexicographic order, written out (row values are not portable): the keyset
    condition of every paged list (the API's cursors encode ``key``; see `creditflow.ledger.queries`)."""
    first, *rest = columns
    if not rest:
        return first > key[0]
    return or_(first > key[0], and_(first == key[0], after_key(rest, key[1:])))
