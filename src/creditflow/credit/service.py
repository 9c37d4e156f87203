"""Data credit use cases. Each command is one unit of work (one transaction): an import writes all its
observations or none; a decision reads the firm's point-in-time history, decides, and records the
decision with its feature snapshot, model version and feature hash in the same transaction -- and the
active challenger's shadow decision of the same application (version, PD, outcome), never binding.

Training stores the champion and the challenger together as the active pair, after out-of-time
validation, from a simulated world or from data imported into the store plus a file of labelled past
applications (each one's features computed as of its own application day).

`credit_hook` has the shape `creditflow.financing.service.CreditHook`: certificate financing calls it
for the holder, and gets None when the platform has no credit profile of that holder.

Consent (issue 13, `creditflow.credit.consent`): `decide` and `decision_for` take the asking `Principal`.
A business asks about itself freely; a bank only under a live authorisation the business granted it
(403 ``credit_authorisation_required`` otherwise, nothing written); the operator and the auditor as
before. Every look-up by a party other than the business is written to the query log in the same
transaction as what it looked at, and a bank's application notifies the business's admins.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

import numpy as np

from creditflow.credit import store
from creditflow.credit.artefacts import Artefact, ChallengerArtefact
from creditflow.credit.consent import Scope
from creditflow.credit.consent_service import CreditConsent, _decision_not_found
from creditflow.credit.decisions import PRODUCTS, CreditDecision, Policy, load_policy
from creditflow.credit.features import FEATURES, FeatureVector, compute_features_from_rows
from creditflow.credit.monitoring import challenger_report, outcome_report, stability_report
from creditflow.credit.scorer import Scorer, matrix, world_vectors
from creditflow.credit.settings import CreditSettings, from_settings
from creditflow.credit.simulate import World
from creditflow.credit.sources import (
    FileRefused,
    FirmProfile,
    Observation,
    RowError,
    parse_applications,
    parse_file,
    read_rows,
)
from creditflow.credit.training import Trained, train_pair
from creditflow.financing.policy import CreditView
from creditflow.identity import reads as identity
from creditflow.identity.access import Principal
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger.model.certificates import CHINA_TZ


@dataclass
class ImportReport:
    source: str
    filename: str
    rows: int
    imported: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    file_error: str | None = None
    import_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.file_error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "filename": self.filename,
            "rows": self.rows,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "ok": self.ok,
            "file_error": self.file_error,
            "errors": [e.to_json() for e in self.errors],
            "import_id": self.import_id,
        }


@dataclass
class TrainReport:
    """`CreditService.train_on_applications`: the models trained, or why nothing was."""

    filename: str
    rows: int
    errors: list[RowError] = field(default_factory=list)
    file_error: str | None = None
    trained: Trained | None = None

    @property
    def ok(self) -> bool:
        return self.trained is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "rows": self.rows,
            "ok": self.ok,
            "file_error": self.file_error,
            "errors": [e.to_json() for e in self.errors],
            **(self.trained.to_json() if self.trained is not None else {}),
        }


@dataclass(frozen=True)
class DecisionRecord:
    id: str
    org_id: str
    decision: CreditDecision
    model_version: str | None
    feature_hash: str
    features: dict[str, Any]
    decision_ms: float
    scope: Scope | None = None  # what the asker may see: None for the business itself and the platform

    def to_json(self) -> dict[str, Any]:
        return {
            "decision_id": self.id,
            "org_id": self.org_id,
            **self.decision.to_json(),
            "model_version": self.model_version,
            "feature_hash": self.feature_hash,
            "features": self.features,
            "decision_ms": round(self.decision_ms, 3),
        }


class CreditService(CreditConsent):
    def __init__(self, engine: Engine, settings: Any, clock: Clock, *, policy: Policy | None = None):
        self.engine = engine
        self.settings: CreditSettings = settings if isinstance(settings, CreditSettings) else from_settings(settings)
        self.clock = clock
        self.policy = policy or load_policy(self.settings.credit_policy_file)
        self._scorer: Scorer | None = None

    # --- data ------------------------------------------------------------------------------------

    def import_file(self, source: str, data: bytes, filename: str) -> ImportReport:
        s = self.settings
        try:
            parsed = parse_file(
                source,
                data,
                filename,
                max_bytes=s.credit_import_max_file_bytes,
                max_rows=s.credit_import_max_rows,
                max_text_chars=s.credit_sentiment_max_chars,
            )
        except FileRefused as exc:
            if exc.field == "source":
                raise InvalidInput(exc.message, field="source") from None
            return ImportReport(source, filename, 0, file_error=exc.message)
        report = ImportReport(source, filename, parsed.rows, errors=list(parsed.errors))
        if parsed.errors:
            return report
        import_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            if source == "firms":
                for firm in parsed.firms:
                    self._upsert_firm(conn, firm)
                report.imported = len(parsed.firms)
            else:
                new, unchanged, conflicts = self._diff(conn, parsed.observations)
                if conflicts:
                    report.errors = conflicts
                    conn.rollback()
                    return report
                self._insert_observations(conn, new, import_id)
                report.imported, report.unchanged = len(new), unchanged
            store.insert_import(
                conn,
                import_id=import_id,
                source=source,
                filename=filename[:255],
                sha256=parsed.sha256,
                rows=parsed.rows,
                observations=report.imported,
                imported_ts_ms=self.clock.now_ms(),
            )
        report.import_id = import_id
        return report

    def _diff(self, conn: Connection, observations: list[Observation]) -> tuple[list[Observation], int, list[RowError]]:
        existing = store.observation_values(conn, {o.org_id for o in observations})
        new, unchanged, conflicts = [], 0, []
        for n, o in enumerate(observations, start=1):
            old = existing.get((o.org_id, o.source, o.metric, o.period, o.item_key))
            if old is None:
                new.append(o)
            elif abs(old - o.value) <= 1e-9 * max(1.0, abs(old)):
                unchanged += 1
            else:
                conflicts.append(
                    RowError(
                        n,
                        o.metric,
                        f"{o.org_id} {o.period} was imported before as {old:g}; "
                        f"a correction must not silently rewrite history",
                    )
                )
        return new, unchanged, conflicts

    def _insert_observations(self, conn: Connection, observations: list[Observation], import_id: str) -> None:
        store.insert_observations(conn, observations, import_id)

    def _upsert_firm(self, conn: Connection, firm: FirmProfile) -> None:
        store.upsert_firm(conn, firm, self.clock.now_ms())

    def load_world(
        self, world: World, firms: list[int] | None = None, *, names: dict[int, tuple[str, str]] | None = None
    ) -> list[str]:
        """Store (some of) a simulated world's firms and observations, as if imported. Returns org ids."""
        chosen = list(range(world.n)) if firms is None else firms
        import_id = str(uuid.uuid4())
        out = []
        with self.engine.begin() as conn:
            for i in chosen:
                firm = world.firms[i]
                obs = world.observations(i, until_month=int(world.apply_month[i]))
                if names and i in names:
                    org, name = names[i]
                    firm = FirmProfile(org, name, firm.founded_on, firm.industry, firm.blacklisted, firm.court_judgment)
                    obs = [
                        Observation(org, o.source, o.metric, o.period, o.available_on, o.value, o.item_key, o.note)
                        for o in obs
                    ]
                self._upsert_firm(conn, firm)
                new, _, conflicts = self._diff(conn, obs)
                if conflicts:
                    raise InvalidInput(conflicts[0].message, field="world")
                self._insert_observations(conn, new, import_id)
                out.append(firm.org_id)
            store.insert_import(
                conn,
                import_id=import_id,
                source="simulated",
                filename=f"simulate seed {world.seed}",
                sha256="",
                rows=len(chosen),
                observations=0,
                imported_ts_ms=self.clock.now_ms(),
            )
        return out

    def features(self, org_id: str, as_of: dt.date, conn: Connection | None = None) -> FeatureVector | None:
        """Point-in-time features from stored data; None when nothing is known about the firm.

        Two prepared statements in one read transaction (the firm, then its observations available
        before ``as_of`` within the look-back), and the rows go to the feature pipeline as they come:
        no object per observation. Measured (docs/CREDIT_MODEL.md): one LEFT JOIN query instead was
        slower, as it repeats and converts the firm's columns on every observation row."""
        if conn is None:
            with self.engine.connect().execution_options(read_only=True) as read:
                return self.features(org_id, as_of, read)
        start = dt.date(as_of.year - (self.settings.credit_lookback_months // 12) - 1, as_of.month, 1)
        firm = store.firm(conn, org_id)
        rows = store.history(conn, org_id, as_of, start)
        if firm is None and not rows:
            return None
        return compute_features_from_rows(firm, rows, as_of, org_id)

    # --- models ------------------------------------------------------------------------------------

    def train_on_world(
        self,
        world: World,
        *,
        seed: int | None = None,
        activate: bool = True,
        params: dict[str, Any] | None = None,
        with_challenger: bool = True,
        validate: bool = True,
    ) -> Trained:
        """Champion and challenger on a simulated world (validated out of time, then fitted on every firm)."""
        vectors = world_vectors(world)
        return self._train(
            matrix(vectors),
            world.bad.astype(int),
            [fv.as_of for fv in vectors],
            trained_on=f"simulated world: {world.n} firms, seed {world.seed}",
            seed=seed,
            activate=activate,
            params=params,
            with_challenger=with_challenger,
            validate=validate,
        )

    def train_on_applications(
        self,
        data: bytes,
        filename: str,
        *,
        target: str = "bad_within_12m",
        seed: int | None = None,
        activate: bool = True,
        params: dict[str, Any] | None = None,
        with_challenger: bool = True,
        validate: bool = True,
    ) -> TrainReport:
        """Champion and challenger on data imported into the store: a file of labelled past applications
        (``org_id, applied_on, <target>``), each one's features computed point-in-time from the stored
        data as of its application day, exactly as a decision on that day would have seen them.
        A file with any bad row (or an applicant with no stored data) trains nothing and lists every bad row."""
        s = self.settings
        try:
            rows = read_rows(
                data, filename, max_bytes=s.credit_import_max_file_bytes, max_rows=s.credit_import_max_rows
            )
            applications, errors = parse_applications(rows, target)
        except FileRefused as exc:
            return TrainReport(filename, 0, file_error=exc.message)
        report = TrainReport(filename, len(rows), errors=list(errors))
        if errors:
            return report
        vectors: list[FeatureVector] = []
        with self.engine.connect().execution_options(read_only=True) as conn:
            for n, a in enumerate(applications, start=1):
                fv = self.features(a.org_id, a.applied_on, conn)
                if fv is None:
                    report.errors.append(
                        RowError(n, "org_id", f"no credit data is stored for {a.org_id}: import its data first")
                    )
                else:
                    vectors.append(fv)
        if report.errors:
            return report
        y = np.array([a.bad for a in applications], dtype=int)
        least = s.credit_evaluate_min_class_rows
        if min(int(y.sum()), int((1 - y).sum())) < least:
            report.file_error = (
                f"{int(y.sum())} bad and {int((1 - y).sum())} good application(s); at least {least} of each are needed"
            )
            return report
        report.trained = self._train(
            matrix(vectors),
            y,
            [a.applied_on for a in applications],
            trained_on=f"imported data: {len(applications)} labelled applications from {filename[:120]}",
            seed=seed,
            activate=activate,
            params=params,
            with_challenger=with_challenger,
            validate=validate,
        )
        return report

    def _train(
        self,
        X: np.ndarray,
        y: np.ndarray,
        days: list[dt.date],
        *,
        trained_on: str,
        seed: int | None,
        activate: bool,
        params: dict[str, Any] | None,
        with_challenger: bool,
        validate: bool,
    ) -> Trained:
        s = self.settings
        trained = train_pair(
            X,
            y,
            days,
            seed=s.credit_seed if seed is None else seed,
            trained_on=trained_on,
            params=params,
            with_challenger=with_challenger,
            validate=validate,
            oot_fraction=s.credit_oot_fraction,
            min_class_rows=s.credit_evaluate_min_class_rows,
            psi_bins=s.credit_psi_bins,
        )
        self.store_pair(trained, activate=activate)
        return trained

    def store_pair(self, trained: Trained, *, activate: bool = True) -> None:
        """Store champion and challenger in one transaction (and make them the active pair)."""
        with self.engine.begin() as conn:
            self._store(conn, trained.champion, activate)
            if trained.challenger is not None:
                self._store(conn, trained.challenger, activate)
        if activate:
            challenger = trained.challenger if trained.challenger is not None else self._active_challenger()
            self._scorer = Scorer(trained.champion, self.policy, challenger)

    def store_model(self, artefact: Artefact | ChallengerArtefact, *, activate: bool = True) -> None:
        """Store one artefact (either kind); activating it retires the active one of its kind."""
        with self.engine.begin() as conn:
            self._store(conn, artefact, activate)
        if activate:
            self._scorer = None  # the next decision loads the active pair

    def _store(self, conn: Connection, artefact: Artefact | ChallengerArtefact, activate: bool) -> None:
        if not store.model_exists(conn, artefact.version):
            store.insert_model(
                conn,
                version=artefact.version,
                kind=artefact.kind,
                data_hash=artefact.data_hash,
                feature_hash=artefact.feature_hash,
                params_hash=artefact.params_hash,
                artefact=artefact.to_json(),
                metrics_json=json.dumps(artefact.metrics),
                created_ts_ms=self.clock.now_ms(),
            )
        if activate:
            store.activate_model(conn, artefact.kind, artefact.version)

    def _active(self, kind: str) -> str | None:
        with self.engine.connect().execution_options(read_only=True) as conn:
            return store.active_artefact(conn, kind)

    def _active_challenger(self) -> ChallengerArtefact | None:
        text = self._active("challenger")
        return None if text is None else ChallengerArtefact.from_json(text)

    def models(self) -> list[dict[str, Any]]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.models(conn)
        return [
            {
                "version": r["version"],
                "kind": r["kind"],
                "active": r["active"],
                "created_ts_ms": r["created_ts_ms"],
                "metrics": json.loads(r["metrics_json"]),
            }
            for r in rows
        ]

    def scorer(self) -> Scorer:
        """The active champion (and challenger, if one is stored) with the policy: loaded once per process
        (start-up cost, not part of a decision) and reused, as they never change once stored."""
        if self._scorer is None:
            text = self._active("champion")
            if text is None:
                raise NotFound("no credit model is active: run `creditflow credit train` first", code="model_not_found")
            self._scorer = Scorer(Artefact.from_json(text), self.policy, self._active_challenger())
        return self._scorer

    # --- decisions ---------------------------------------------------------------------------------

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, CHINA_TZ).date()

    def decide(
        self,
        org_id: str,
        requested_minor: int,
        product: str = "pure_credit",
        as_of: dt.date | None = None,
        *,
        asker: Principal | None = None,
    ) -> DecisionRecord:
        """Decide and record an application about ``org_id``. ``asker`` None is the platform itself (the
        CLI, the demo, certificate financing asking about the holder who requested it); otherwise the
        asker must be the business, a bank it authorised (live), or an overseer (`check_asker`)."""
        if asker is not None:
            with self.engine.connect().execution_options(read_only=True) as read:
                self.check_asker(read, asker, org_id)  # refused before the model is even loaded
        check_amount_minor(requested_minor, field="requested_minor")
        if product not in PRODUCTS:
            raise InvalidInput(f"product must be one of {', '.join(PRODUCTS)}", field="product")
        scorer = self.scorer()  # loaded once per process (start-up cost, not part of a decision)
        started = time.perf_counter()
        day = as_of or self.today()
        with self.engine.begin() as conn:
            grant = None if asker is None else self.check_asker(conn, asker, org_id)  # again, in the transaction
            fv = self.features(org_id, day, conn)
            if fv is None:
                raise NotFound(
                    f"no credit profile for {org_id!r}: import its data first",
                    code="credit_profile_not_found",
                    field="org_id",
                )
            decision, _scored = scorer.decide(fv, requested_minor, product)
            record = DecisionRecord(
                str(uuid.uuid4()), org_id, decision, scorer.artefact.version, fv.digest(), fv.snapshot(), 0.0
            )
            elapsed_us = int((time.perf_counter() - started) * 1e6)
            # the challenger decides too, on the same features and policy; recorded, never binding
            shadow = scorer.shadow(fv, requested_minor, product)
            store.insert_decision(
                conn,
                {
                    "id": record.id,
                    "org_id": org_id,
                    "product": product,
                    "outcome": decision.outcome,
                    "pd": decision.pd,
                    "score": decision.score,
                    "requested_minor": requested_minor,
                    "limit_minor": decision.limit_minor,
                    "granted_minor": decision.granted_minor,
                    "rate_bps": decision.rate_bps,
                    "reasons_json": json.dumps([r.to_json() for r in decision.reasons], ensure_ascii=False),
                    "knockouts_json": json.dumps(list(decision.knockouts)),
                    "policy_version": self.policy.version,
                    "policy_sha256": self.policy.sha256,
                    "model_version": record.model_version,
                    "feature_hash": record.feature_hash,
                    "features_json": json.dumps(record.features),
                    "as_of": day,
                    "decided_ts_ms": self.clock.now_ms(),
                    "decision_us": elapsed_us,
                    "challenger_version": None if shadow is None else scorer.challenger_version,
                    "challenger_pd": None if shadow is None else shadow.pd,
                    "challenger_outcome": None if shadow is None else shadow.outcome,
                    "asked_by": None if asker is None or asker.org_id == org_id else asker.org_id,
                    "authorisation_id": None if grant is None else grant.authorisation_id,
                },
            )
            if asker is not None and asker.org_id != org_id:
                scope = Scope.DECISION_AND_FEATURES if grant is None else grant.scope
                self._log_query(conn, asker, org_id, "application", record.id, grant, scope)
                if grant is not None:
                    identity.notify_admins(
                        conn,
                        org_id=org_id,
                        kind="credit_queried",
                        message=f"{asker.org_id} applied for a credit decision about your organisation "
                        f"({grant.purpose_code}: {grant.purpose}) under authorisation {grant.authorisation_id}",
                        now_ms=self.clock.now_ms(),
                        data={
                            "bank_id": asker.org_id,
                            "authorisation_id": grant.authorisation_id,
                            "decision_id": record.id,
                            "purpose_code": grant.purpose_code,
                            "scope": grant.scope.value,
                        },
                    )
        return DecisionRecord(
            record.id,
            org_id,
            decision,
            record.model_version,
            record.feature_hash,
            record.features,
            (time.perf_counter() - started) * 1000,
            None if grant is None else grant.scope,
        )

    def credit_hook(self, holder: str, amount_minor: int) -> CreditView | None:
        """For certificate financing: the holder's credit view, or None without a profile or a model."""
        if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
            return None  # the financing policy itself reports the bad amount
        try:
            record = self.decide(holder, amount_minor, "certificate_financing")
        except NotFound:  # no profile of this holder, or no active model
            return None
        d = record.decision
        spread = 0
        if d.pd is not None:
            lgd = Decimal(str(self.policy.rate["lgd"]))
            pd = Decimal(str(min(d.pd, 0.999)))
            spread = int((lgd * pd / (1 - pd) * 10_000).to_integral_value(rounding=ROUND_HALF_UP))
        return CreditView(
            approve=d.outcome != "decline",
            score=None if d.score is None else float(d.score),
            pd=d.pd,
            reasons=tuple(r.message for r in d.reasons),
            risk_spread_bps=spread,
        )

    def decision(self, decision_id: str) -> dict[str, Any]:
        """The stored decision, whole (for the platform itself; a party reads through `decision_for`)."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            row = store.decision(conn, decision_id)
            if row is None:
                raise _decision_not_found(decision_id)
            return self._decision_json(conn, row)

    def label(self, decision_id: str, bad: bool) -> None:
        self.decision(decision_id)
        with self.engine.begin() as conn:
            store.upsert_label(conn, decision_id, bad, self.clock.now_ms())

    def monitor(self, since_ms: int = 0) -> dict[str, Any]:
        """PSI of recent decisions' features and scores against the active model's training reference,
        AUC/KS on the decisions labelled since, and the active challenger against the champion on the
        decisions it shadow-scored (`monitoring.challenger_report`)."""
        scorer = self.scorer()
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.decisions_since(conn, since_ms, scorer.artefact.version)
            labels = store.labels(conn)
        recent = {
            n: np.array(
                [np.nan if (v := json.loads(r.features_json)["values"].get(n)) is None else v for r in rows],
                dtype=float,
            )
            for n in FEATURES
        }
        pds = np.array([r.pd for r in rows if r.pd is not None], dtype=float)
        report = stability_report(
            scorer.artefact.reference, recent, pds if len(pds) else None, self.settings.credit_psi_alarm
        )
        pairs = [(bool(labels[r.id]), r.pd) for r in rows if r.id in labels and r.pd is not None]
        report["outcomes"] = outcome_report(
            np.array([p[0] for p in pairs], dtype=bool), np.array([p[1] for p in pairs], dtype=float)
        )
        report["decisions"] = len(rows)
        report["model_version"] = scorer.artefact.version
        report["challenger"] = None
        if scorer.challenger is not None:
            shadowed = [r for r in rows if r.challenger_version == scorer.challenger.version]
            report["challenger"] = {
                "version": scorer.challenger.version,
                **challenger_report(
                    [r.outcome for r in shadowed],
                    [r.pd for r in shadowed],
                    # recorded with the challenger's version, so never None here
                    [cast(str, r.challenger_outcome) for r in shadowed],
                    [r.challenger_pd for r in shadowed],
                    [None if r.id not in labels else bool(labels[r.id]) for r in shadowed],
                ),
            }
        return report
