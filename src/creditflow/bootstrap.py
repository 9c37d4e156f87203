"""The composition root: the one place where concrete adapters are chosen and wired together."""

from __future__ import annotations

import logging
import secrets as random_secrets
from dataclasses import dataclass
from typing import Any

from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.config import DEV_LOG_PASSPHRASE, DEV_PASSPHRASE, Settings
from creditflow.credit.service import CreditService
from creditflow.financing.clearing import ClearingService
from creditflow.financing.network import NetworkService
from creditflow.financing.service import FinancingService, release_bank_limits
from creditflow.identity.access import Access
from creditflow.identity.notices import Notices
from creditflow.identity.people import PeopleService
from creditflow.identity.sessions import WebSessions
from creditflow.kernel.clock import Clock, SystemClock
from creditflow.kernel.engine import Engine, make_engine, migrate
from creditflow.kernel.errors import NotFound
from creditflow.ledger import service as ledger_service
from creditflow.ledger.audit import VerifyReport, verify_database
from creditflow.ledger.checkpoints import Checkpoints
from creditflow.ledger.custody import (
    Custody,
    LogKeyCustody,
    LogKeyNotSeparated,
    LogSecret,
    StartupRefused,
    WrongPassphrase,
    mark_demo_database,
    peek_demo_passphrases,
    peek_holds_keys,
    read_log_key_file,
    reseal_log_key,
)
from creditflow.ledger.model.parties import PLATFORM
from creditflow.ledger.proofs import Proofs
from creditflow.ledger.queries import Queries
from creditflow.ledger.sequencer import Sequencer
from creditflow.ledger.service import LedgerService
from creditflow.ledger.signing import Signer
from creditflow.ledger.tiles_service import TileServer
from creditflow.trade.confirmation import ConfirmationService
from creditflow.trade.payables import PayablesService, check_payables, release_void_payables
from creditflow.trade.rules import release_trade_reservations
from creditflow.trade.service import TradeService

LOG_KEY_ID = "log-1"
log = logging.getLogger("creditflow.startup")  # how a database was opened (App.warnings too)


@dataclass(frozen=True)
class Secrets:
    """What opens this database's keys, decided before anything is opened or written (`resolve_secrets`)."""

    key_passphrase: bytes
    log_secret: LogSecret
    demo: bool  # a database made by `creditflow demo`: its throwaway passphrases are stored in it
    allow_unseparated_log_key: bool  # development mode: a log key still sealed with the organisations' opens
    log_secret_is_dev: bool
    warnings: tuple[str, ...]


def resolve_secrets(settings: Settings) -> Secrets:
    """The passphrases for ``settings``, or `StartupRefused` (with a stable code) before anything is written.

    Without CREDITFLOW_KEY_PASSPHRASE: a demo database opens with the throwaway passphrases stored in it;
    development mode (``dev``, `--dev`) uses the public development passphrase; anything else is refused. The
    log key needs its own secret the same way (CREDITFLOW_LOG_KEY_PASSPHRASE or CREDITFLOW_LOG_KEY_FILE),
    which must not be the organisations' passphrase. See docs/SECURITY.md ("Secrets")."""
    warnings: list[str] = []
    configured = settings.key_passphrase.get_secret_value() if settings.key_passphrase is not None else ""
    demo = None if configured else peek_demo_passphrases(settings.db_url)
    if configured:
        key = configured
    elif demo is not None:
        key = demo[0]
        warnings.append(
            "this is a demo database: its keys open with throwaway passphrases stored inside it; never put real data in it"
        )
    elif settings.dev:
        key = DEV_PASSPHRASE
        warnings.append(
            "development mode: CREDITFLOW_KEY_PASSPHRASE is not set, organisations' keys use the public development "
            "passphrase; never use this on real data"
        )
    else:
        raise StartupRefused(
            "CREDITFLOW_KEY_PASSPHRASE is not set: it seals every organisation's signing key and every device secret. "
            "Set it (and CREDITFLOW_LOG_KEY_PASSPHRASE or CREDITFLOW_LOG_KEY_FILE for the log key), or pass --dev "
            "to run on throwaway data with the public development passphrase. Nothing was opened or written.",
            code="key_passphrase_required",
        )
    log_passphrase = settings.log_key_passphrase.get_secret_value() if settings.log_key_passphrase else ""
    log_secret_is_dev = False
    if settings.log_key_file is not None and log_passphrase:
        raise StartupRefused(
            "both CREDITFLOW_LOG_KEY_PASSPHRASE and CREDITFLOW_LOG_KEY_FILE are set: give one",
            code="log_key_secret_ambiguous",
        )
    if settings.log_key_file is not None:
        log_secret = read_log_key_file(settings.log_key_file)
    elif log_passphrase:
        log_secret = LogSecret("passphrase", log_passphrase.encode(), "CREDITFLOW_LOG_KEY_PASSPHRASE")
    elif demo is not None:
        log_secret = LogSecret("passphrase", demo[1].encode(), "the demo database's own")
    elif settings.dev:
        log_secret = LogSecret("passphrase", DEV_LOG_PASSPHRASE.encode(), "the public development log passphrase")
        log_secret_is_dev = True
        warnings.append(
            "development mode: CREDITFLOW_LOG_KEY_PASSPHRASE is not set, the log key uses the public development "
            "log passphrase"
        )
    else:
        raise StartupRefused(
            "neither CREDITFLOW_LOG_KEY_PASSPHRASE nor CREDITFLOW_LOG_KEY_FILE is set: the log's signing key is sealed "
            "apart from organisations' keys, under its own secret. Set one, or pass --dev. Nothing was opened or written.",
            code="log_key_secret_required",
        )
    if log_secret.kind == "passphrase" and log_secret.material == key.encode():
        raise StartupRefused(
            "CREDITFLOW_LOG_KEY_PASSPHRASE is the same as CREDITFLOW_KEY_PASSPHRASE: the log key must be sealed "
            "apart, under a different secret",
            code="log_key_secret_reused",
        )
    return Secrets(key.encode(), log_secret, demo is not None, settings.dev, log_secret_is_dev, tuple(warnings))


@dataclass
class App:
    settings: Settings
    engine: Engine
    clock: Clock
    custody: Custody
    log_signer: Signer
    sequencer: Sequencer
    ledger: LedgerService
    queries: Queries
    proofs: Proofs
    checkpoints: Checkpoints
    tiles: TileServer
    access: Access
    trade: TradeService
    payables: PayablesService
    confirmation: ConfirmationService
    financing: FinancingService
    clearing: ClearingService
    network: NetworkService
    credit: CreditService
    iot: IotSystem
    sessions: WebSessions
    notices: Notices
    people: PeopleService
    warnings: tuple[str, ...] = ()  # what the operator should know about how this database was opened

    @property
    def log_keys(self) -> dict[str, bytes]:
        return {self.log_signer.key_id: self.log_signer.public_key}

    def verify(self, progress=None) -> VerifyReport:  # type: ignore[no-untyped-def]
        return verify_database(self.engine, self.log_keys, progress=progress, checks=[check_payables])

    def close(self) -> None:
        self.iot.close()
        self.sequencer.close()
        self.engine.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _log_signer(
    engine: Engine, custody: Custody, log_custody: LogKeyCustody, clock: Clock, secrets: Secrets, warnings: list[str]
) -> Signer:
    """The platform's log key: created on first start, sealed apart from organisations' keys under its own
    secret. A database from before holds it among organisations' keys: it opens so only in development mode."""
    try:
        return log_custody.signer()
    except NotFound:
        pass
    with engine.connect().execution_options(read_only=True) as conn:
        unseparated = custody.holds(conn, PLATFORM)
    if unseparated:
        if not secrets.allow_unseparated_log_key:
            raise LogKeyNotSeparated(
                "this database's log key is still sealed with the organisations' keys (CREDITFLOW_KEY_PASSPHRASE "
                "opens it): run `creditflow keys seal-log-key` once, with CREDITFLOW_LOG_KEY_PASSPHRASE or "
                "CREDITFLOW_LOG_KEY_FILE set, to seal it apart (or pass --dev to open it as it is)"
            )
        warnings.append(
            "WARNING: the log key is still sealed with the organisations' keys; run `creditflow keys seal-log-key` "
            "to seal it apart (opened anyway: development mode)"
        )
        return custody.signer(PLATFORM)
    signer = Signer.generate(LOG_KEY_ID)
    with engine.begin() as conn:
        if not log_custody.holds(conn) and not custody.holds(conn, PLATFORM):
            log_custody.store(conn, signer, clock.now_ms())
    return log_custody.signer()


def seal_log_key(settings: Settings, *, clock: Clock | None = None) -> tuple[Signer, bool]:
    """Seal a database's log key apart (`creditflow keys seal-log-key`): a log key held among organisations'
    keys is opened with CREDITFLOW_KEY_PASSPHRASE, sealed under the log secret and its old row deleted, in one
    transaction. Returns the log key and whether it moved (False: it was already apart, and the secret opens it)."""
    secrets = resolve_secrets(settings)
    if secrets.log_secret_is_dev:
        raise StartupRefused(
            "set CREDITFLOW_LOG_KEY_PASSPHRASE or CREDITFLOW_LOG_KEY_FILE: sealing the log key under the public "
            "development passphrase would protect nothing",
            code="log_key_secret_required",
        )
    clock = clock or SystemClock()
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        custody = Custody(engine, secrets.key_passphrase, settings.kdf_opslimit, settings.kdf_memlimit_bytes)
        custody.unlock()
        log_custody = LogKeyCustody(engine, secrets.log_secret, settings.kdf_opslimit, settings.kdf_memlimit_bytes)
        with engine.begin() as conn:
            moved = reseal_log_key(conn, custody, log_custody, PLATFORM, clock.now_ms())
        if moved is not None:
            log.warning("the log key %s is now sealed apart from organisations' keys", moved.key_id)
        return log_custody.signer(), moved is not None
    finally:
        engine.dispose()


def throwaway_secrets() -> dict[str, str]:
    """Fresh random passphrases for a database that lives for one run (benchmarks' scratch databases)."""
    return {"key_passphrase": random_secrets.token_hex(24), "log_key_passphrase": random_secrets.token_hex(24)}


def build_demo(db_url: str, *, clock: Clock | None = None, **overrides: Any) -> App:
    """Open a demo database (`creditflow demo`, `creditflow simulate iot`), creating it if it is new: its keys
    are sealed under throwaway random passphrases stored in the database itself (``demo_database``), so later
    commands open it with no passphrase set and say it is a demo's. A database that is not a demo's is refused
    (code ``not_a_demo_database``) before anything is written."""
    stored = peek_demo_passphrases(db_url)
    if stored is None and peek_holds_keys(db_url):
        raise StartupRefused(
            "this database holds keys and is not a demo's: the demo runs only on a new database or a demo's own",
            code="not_a_demo_database",
        )
    fresh = throwaway_secrets()
    key, log_key = stored or (fresh["key_passphrase"], fresh["log_key_passphrase"])
    app = build(Settings(db_url=db_url, key_passphrase=key, log_key_passphrase=log_key, **overrides), clock=clock)
    if stored is None:
        with app.engine.begin() as conn:
            mark_demo_database(conn, key, log_key, app.clock.now_ms())
    return app


def build(settings: Settings | None = None, *, clock: Clock | None = None, run_migrations: bool = True) -> App:
    settings = settings or Settings()
    secrets = resolve_secrets(settings)  # refuses before anything is opened or written
    warnings = list(secrets.warnings)
    clock = clock or SystemClock()
    engine = make_engine(settings.db_url)
    if run_migrations:
        migrate(engine)
    ledger_service.prepare(engine)
    custody = Custody(engine, secrets.key_passphrase, settings.kdf_opslimit, settings.kdf_memlimit_bytes)
    log_custody = LogKeyCustody(engine, secrets.log_secret, settings.kdf_opslimit, settings.kdf_memlimit_bytes)
    try:
        custody.unlock()
        log_signer = _log_signer(engine, custody, log_custody, clock, secrets, warnings)
    except WrongPassphrase as exc:
        engine.dispose()  # leave no connection behind
        if peek_demo_passphrases(settings.db_url) is not None:
            raise WrongPassphrase(
                f"{exc}: it is a demo's database, which opens with its own passphrases: unset "
                "CREDITFLOW_KEY_PASSPHRASE and CREDITFLOW_LOG_KEY_PASSPHRASE to open it"
            ) from None
        raise
    except BaseException:
        engine.dispose()  # e.g. a wrong log key secret: leave no connection behind
        raise
    for warning in warnings:
        log.warning("%s", warning)
    log_keys = {log_signer.key_id: log_signer.public_key}
    sequencer = Sequencer(
        engine,
        log_signer,
        log_keys,
        clock,
        settings,
        projections=[release_void_payables, release_trade_reservations, release_bank_limits],
    )
    queries = Queries(engine, settings)
    payables = PayablesService(engine, queries, settings, clock)
    ledger = LedgerService(
        engine,
        sequencer,
        custody,
        settings,
        clock,
        log_signer,
        prechecks=payables.precheck_for,
        payables=payables.get_payable,
    )
    trade = TradeService(engine, settings, clock)
    credit = CreditService(engine, settings, clock)
    iot = IotSystem(engine, IotSettings.from_settings(settings), clock, custody=custody)
    access = Access(engine, clock, settings.access)
    checkpoints = Checkpoints(engine, log_signer, settings.origin)
    return App(
        settings=settings,
        engine=engine,
        clock=clock,
        custody=custody,
        log_signer=log_signer,
        sequencer=sequencer,
        ledger=ledger,
        queries=queries,
        proofs=Proofs(engine, log_signer, clock),
        checkpoints=checkpoints,
        tiles=TileServer(engine, checkpoints),
        access=access,
        trade=trade,
        payables=payables,
        confirmation=ConfirmationService(engine, payables, trade, settings, clock),
        financing=FinancingService(
            engine,
            ledger,
            queries,
            settings,
            clock,
            credit_hook=credit.credit_hook,
            restriction_hook=iot.collateral.financing_restriction,
        ),
        credit=credit,
        iot=iot,
        clearing=ClearingService(engine, ledger, queries, settings, clock),
        network=NetworkService(engine),
        sessions=WebSessions(
            engine,
            settings.web,
            clock,
            cache_ttl_s=settings.access.auth_cache_ttl_s,
            forget_keys=access.forget,
        ),
        notices=Notices(engine),
        people=PeopleService(engine, clock),
        warnings=tuple(warnings),
    )
