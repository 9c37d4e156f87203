"""The composition root: the one place where concrete adapters are chosen and wired together."""

from __future__ import annotations

from dataclasses import dataclass

from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.config import Settings
from creditflow.credit.service import CreditService
from creditflow.financing.clearing import ClearingService
from creditflow.financing.network import NetworkService
from creditflow.financing.service import FinancingService, release_bank_limits
from creditflow.identity.access import Access
from creditflow.identity.notices import Notices
from creditflow.identity.sessions import WebSessions
from creditflow.kernel.clock import Clock, SystemClock
from creditflow.kernel.engine import Engine, make_engine, migrate
from creditflow.kernel.errors import NotFound
from creditflow.ledger import service as ledger_service
from creditflow.ledger.audit import VerifyReport, verify_database
from creditflow.ledger.custody import Custody
from creditflow.ledger.model.parties import PLATFORM
from creditflow.ledger.proofs import Proofs
from creditflow.ledger.queries import Queries
from creditflow.ledger.sequencer import Sequencer
from creditflow.ledger.service import LedgerService
from creditflow.ledger.signing import Signer
from creditflow.trade.confirmation import ConfirmationService
from creditflow.trade.payables import PayablesService, check_payables, release_void_payables
from creditflow.trade.rules import release_trade_reservations
from creditflow.trade.service import TradeService

LOG_KEY_ID = "log-1"


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


def _log_signer(engine: Engine, custody: Custody, clock: Clock) -> Signer:
    """The platform's log key: created on first start, held in custody like any organisation's key."""
    try:
        return custody.signer(PLATFORM)
    except NotFound:
        signer = Signer.generate(LOG_KEY_ID)
        with engine.begin() as conn:
            if not custody.holds(conn, PLATFORM):
                custody.store(conn, signer, PLATFORM, clock.now_ms())
        return custody.signer(PLATFORM)


def build(settings: Settings | None = None, *, clock: Clock | None = None, run_migrations: bool = True) -> App:
    settings = settings or Settings()
    clock = clock or SystemClock()
    engine = make_engine(settings.db_url)
    if run_migrations:
        migrate(engine)
    ledger_service.prepare(engine)
    custody = Custody(
        engine,
        settings.key_passphrase.get_secret_value().encode(),
        settings.kdf_opslimit,
        settings.kdf_memlimit_bytes,
    )
    try:
        custody.unlock()
        log_signer = _log_signer(engine, custody, clock)
    except BaseException:
        engine.dispose()  # e.g. a wrong passphrase: leave no connection behind
        raise
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
    )
