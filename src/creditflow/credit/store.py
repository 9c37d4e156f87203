"""SQL for the credit context: plain functions over a Connection the calling service opened (one unit of work
per command); nothing here commits on its own. Only this module and `tables.py` import SQLAlchemy here.

A decision's read is two prepared statements (the firm, then its observations in a look-back window),
built once so that SQLAlchemy reuses their compiled form; the observation rows go to the feature
pipeline as they come (`features.ObservationRow`), no object per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, bindparam, insert, or_, select, update

from creditflow.credit.features import ObservationRow
from creditflow.credit.sources import FirmProfile, Observation
from creditflow.credit.tables import (
    credit_authorisations,
    credit_decisions,
    credit_firms,
    credit_imports,
    credit_labels,
    credit_manual_decisions,
    credit_models,
    credit_observations,
    credit_queries,
)
from creditflow.kernel.engine import before_key

_ORG_CHUNK = 500  # org ids per IN list (stays under SQLite's bound-parameter limit)
_INSERT_CHUNK = 5000  # observation rows per executemany

# the two statements of one decision's read, built once (SQLAlchemy then reuses their compiled form)
_FIRM_QUERY = select(
    credit_firms.c.name,
    credit_firms.c.founded_on,
    credit_firms.c.industry,
    credit_firms.c.blacklisted,
    credit_firms.c.court_judgment,
).where(credit_firms.c.org_id == bindparam("org_id"))
_obs = credit_observations.c
# the columns in `features.ObservationRow` order
_HISTORY_QUERY = select(_obs.source, _obs.metric, _obs.period, _obs.available_on, _obs.value).where(
    _obs.org_id == bindparam("org_id"), _obs.available_on < bindparam("as_of"), _obs.available_on >= bindparam("start")
)

ObservationKey = tuple[str, str, str, dt.date, str]
"""``(org_id, source, metric, period, item_key)``: the primary key of one observation."""


class MonitoredDecision(NamedTuple):
    """What `CreditService.monitor` reads of one recorded decision."""

    id: str
    pd: float | None
    outcome: str
    features_json: str
    challenger_version: str | None
    challenger_pd: float | None
    challenger_outcome: str | None


# --- firms and observations -------------------------------------------------------------------------


def firm(conn: Connection, org_id: str) -> FirmProfile | None:
    row = conn.execute(_FIRM_QUERY, {"org_id": org_id}).first()
    if row is None:
        return None
    return FirmProfile(org_id, row.name, row.founded_on, row.industry, bool(row.blacklisted), bool(row.court_judgment))


def history(conn: Connection, org_id: str, as_of: dt.date, start: dt.date) -> Sequence[ObservationRow]:
    """The firm's observations available on ``[start, as_of)``, as `ObservationRow`-shaped rows (the driver's
    rows themselves: a database row with these five columns in this order serves as one)."""
    rows = conn.execute(_HISTORY_QUERY, {"org_id": org_id, "as_of": as_of, "start": start}).all()
    return cast(Sequence[ObservationRow], rows)


def observation_values(conn: Connection, org_ids: Iterable[str]) -> dict[ObservationKey, float]:
    """The stored value of every observation of these firms, by primary key."""
    orgs = sorted(set(org_ids))
    existing: dict[ObservationKey, float] = {}
    for chunk in range(0, len(orgs), _ORG_CHUNK):
        rows = conn.execute(
            select(_obs.org_id, _obs.source, _obs.metric, _obs.period, _obs.item_key, _obs.value).where(
                _obs.org_id.in_(orgs[chunk : chunk + _ORG_CHUNK])
            )
        )
        for r in rows:
            existing[(r.org_id, r.source, r.metric, r.period, r.item_key)] = r.value
    return existing


def insert_observations(conn: Connection, observations: Sequence[Observation], import_id: str) -> None:
    rows = [
        {
            "org_id": o.org_id,
            "source": o.source,
            "metric": o.metric,
            "period": o.period,
            "item_key": o.item_key,
            "available_on": o.available_on,
            "value": o.value,
            "note": o.note,
            "import_id": import_id,
        }
        for o in observations
    ]
    for start in range(0, len(rows), _INSERT_CHUNK):
        conn.execute(insert(credit_observations), rows[start : start + _INSERT_CHUNK])


def upsert_firm(conn: Connection, firm: FirmProfile, updated_ts_ms: int) -> None:
    values = {
        "name": firm.name,
        "founded_on": firm.founded_on,
        "industry": firm.industry,
        "blacklisted": firm.blacklisted,
        "court_judgment": firm.court_judgment,
        "updated_ts_ms": updated_ts_ms,
    }
    done = conn.execute(update(credit_firms).where(credit_firms.c.org_id == firm.org_id).values(**values)).rowcount
    if not done:
        conn.execute(insert(credit_firms).values(org_id=firm.org_id, **values))


def insert_import(
    conn: Connection,
    *,
    import_id: str,
    source: str,
    filename: str,
    sha256: str,
    rows: int,
    observations: int,
    imported_ts_ms: int,
) -> None:
    conn.execute(
        insert(credit_imports).values(
            id=import_id,
            source=source,
            filename=filename,
            sha256=sha256,
            rows=rows,
            observations=observations,
            imported_ts_ms=imported_ts_ms,
        )
    )


# --- models ------------------------------------------------------------------------------------------


def model_exists(conn: Connection, version: str) -> bool:
    return conn.execute(select(credit_models.c.version).where(credit_models.c.version == version)).first() is not None


def insert_model(
    conn: Connection,
    *,
    version: str,
    kind: str,
    data_hash: str,
    feature_hash: str,
    params_hash: str,
    artefact: str,
    metrics_json: str,
    created_ts_ms: int,
) -> None:
    """A new artefact, stored inactive (`activate_model` makes it the active one of its kind)."""
    conn.execute(
        insert(credit_models).values(
            version=version,
            kind=kind,
            data_hash=data_hash,
            feature_hash=feature_hash,
            params_hash=params_hash,
            artefact=artefact,
            metrics_json=metrics_json,
            active=False,
            created_ts_ms=created_ts_ms,
        )
    )


def activate_model(conn: Connection, kind: str, version: str) -> None:
    """Retire the active artefact of ``kind`` and activate ``version``."""
    conn.execute(update(credit_models).where(credit_models.c.kind == kind).values(active=False))
    conn.execute(update(credit_models).where(credit_models.c.version == version).values(active=True))


def active_artefact(conn: Connection, kind: str) -> str | None:
    """The JSON of the active artefact of ``kind``, if any."""
    text: str | None = conn.execute(
        select(credit_models.c.artefact).where(credit_models.c.kind == kind, credit_models.c.active.is_(True))
    ).scalar()
    return text


def models(conn: Connection) -> list[dict[str, Any]]:
    """Every stored artefact's version, kind, active flag, creation time and metrics JSON, oldest first."""
    rows = conn.execute(
        select(
            credit_models.c.version,
            credit_models.c.kind,
            credit_models.c.active,
            credit_models.c.created_ts_ms,
            credit_models.c.metrics_json,
        ).order_by(credit_models.c.created_ts_ms)
    ).all()
    return [
        {
            "version": r.version,
            "kind": r.kind,
            "active": bool(r.active),
            "created_ts_ms": r.created_ts_ms,
            "metrics_json": r.metrics_json,
        }
        for r in rows
    ]


# --- decisions and labels ----------------------------------------------------------------------------


def insert_decision(conn: Connection, row: Mapping[str, Any]) -> None:
    """One recorded decision: ``row`` holds every column of `credit_decisions`."""
    conn.execute(insert(credit_decisions).values(**row))


def decision(conn: Connection, decision_id: str) -> dict[str, Any] | None:
    """The recorded decision's columns by name, or None."""
    row = conn.execute(select(credit_decisions).where(credit_decisions.c.id == decision_id)).first()
    return None if row is None else dict(row._mapping)


def decisions_since(conn: Connection, since_ms: int, model_version: str) -> list[MonitoredDecision]:
    d = credit_decisions.c
    rows = conn.execute(
        select(
            d.id, d.pd, d.outcome, d.features_json, d.challenger_version, d.challenger_pd, d.challenger_outcome
        ).where(d.decided_ts_ms >= since_ms, d.model_version == model_version)
    )
    return [MonitoredDecision(*r) for r in rows]


def labels(conn: Connection) -> dict[str, bool]:
    """Every labelled decision's outcome (True: it went bad)."""
    return {str(k): bool(v) for k, v in conn.execute(select(credit_labels.c.decision_id, credit_labels.c.bad))}


def upsert_label(conn: Connection, decision_id: str, bad: bool, labelled_ts_ms: int) -> None:
    done = conn.execute(
        update(credit_labels)
        .where(credit_labels.c.decision_id == decision_id)
        .values(bad=bad, labelled_ts_ms=labelled_ts_ms)
    ).rowcount
    if not done:
        conn.execute(insert(credit_labels).values(decision_id=decision_id, bad=bad, labelled_ts_ms=labelled_ts_ms))


# --- consent: authorisations, the query log, manual decisions (issue 13) -------------------------------


def insert_authorisation(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(insert(credit_authorisations).values(**row))


def authorisation(conn: Connection, authorisation_id: str) -> dict[str, Any] | None:
    a = credit_authorisations
    row = conn.execute(select(a).where(a.c.id == authorisation_id)).first()
    return None if row is None else dict(row._mapping)


def authorisations_for(conn: Connection, org_id: str, bank_id: str) -> list[dict[str, Any]]:
    """Every authorisation ``org_id`` gave ``bank_id`` (live or not)."""
    a = credit_authorisations
    rows = conn.execute(select(a).where(a.c.org_id == org_id, a.c.bank_id == bank_id))
    return [dict(r._mapping) for r in rows]


def authorisations_list(
    conn: Connection, *, org_id: str | None, bank_id: str | None, limit: int, before: tuple[int, str] | None
) -> list[dict[str, Any]]:
    """Newest first; ``org_id`` / ``bank_id`` None means any (an overseer's view)."""
    a = credit_authorisations
    query = select(a)
    if org_id is not None:
        query = query.where(a.c.org_id == org_id)
    if bank_id is not None:
        query = query.where(a.c.bank_id == bank_id)
    if before is not None:
        query = query.where(before_key([a.c.granted_ts_ms, a.c.id], before))
    rows = conn.execute(query.order_by(a.c.granted_ts_ms.desc(), a.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def revoke_authorisation(conn: Connection, authorisation_id: str, *, by: str, auth: str, ts_ms: int) -> bool:
    """Revoke it unless it already is (False then: a concurrent revocation won)."""
    a = credit_authorisations
    done = conn.execute(
        update(a)
        .where(a.c.id == authorisation_id, a.c.revoked_ts_ms.is_(None))
        .values(revoked_ts_ms=ts_ms, revoked_by=by, revoked_auth=auth)
    ).rowcount
    return bool(done)


def insert_query(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(insert(credit_queries).values(**row))


def queries_list(
    conn: Connection, *, org_id: str | None, asker_id: str | None, limit: int, before: tuple[int, str] | None
) -> list[dict[str, Any]]:
    """The query log, newest first: about ``org_id``, by ``asker_id`` (None: any)."""
    q = credit_queries
    query = select(q)
    if org_id is not None and asker_id is not None:
        query = query.where(or_(q.c.org_id == org_id, q.c.asker_id == asker_id))
    elif org_id is not None:
        query = query.where(q.c.org_id == org_id)
    elif asker_id is not None:
        query = query.where(q.c.asker_id == asker_id)
    if before is not None:
        query = query.where(before_key([q.c.ts_ms, q.c.id], before))
    rows = conn.execute(query.order_by(q.c.ts_ms.desc(), q.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def insert_manual(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(insert(credit_manual_decisions).values(**row))


def manual_decisions(conn: Connection, decision_id: str) -> list[dict[str, Any]]:
    """Every manual decision of ``decision_id``, oldest first (at most one proposed or effective)."""
    m = credit_manual_decisions
    rows = conn.execute(select(m).where(m.c.decision_id == decision_id).order_by(m.c.proposed_ts_ms, m.c.id))
    return [dict(r._mapping) for r in rows]


def update_manual(conn: Connection, manual_id: str, *, from_status: str, values: Mapping[str, Any]) -> bool:
    """Move a manual decision on from ``from_status`` (False: it was not in that state any more)."""
    m = credit_manual_decisions
    done = conn.execute(update(m).where(m.c.id == manual_id, m.c.status == from_status).values(**values)).rowcount
    return bool(done)
