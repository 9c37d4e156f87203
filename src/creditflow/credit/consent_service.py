"""The consent half of the credit service (issue 13): who may look up a business's credit, the
authorisations a business grants, the query log, and four eyes on a bank's manual decisions.

`CreditConsent` is mixed into `creditflow.credit.service.CreditService`; every command here is one
transaction. The rules themselves (scopes, redaction, when a manual decision applies) are pure, in
`creditflow.credit.consent`.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from creditflow.credit import store
from creditflow.credit.consent import (
    PURPOSE_CODES,
    Authorisation,
    ManualStatus,
    Scope,
    manual_allowed,
    shape_for_scope,
    widest,
)
from creditflow.credit.decisions import Policy
from creditflow.credit.settings import CreditSettings
from creditflow.identity.access import Principal
from creditflow.identity.roles import UserRole, require_user_role
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger import reads as ledger
from creditflow.ledger.model.parties import Role
from creditflow.ledger.queries import Page, decode_cursor, page_from

if TYPE_CHECKING:
    from creditflow.credit.service import DecisionRecord


def _decision_not_found(decision_id: str) -> NotFound:
    return NotFound(f"decision {decision_id!r} does not exist", code="decision_not_found", field="decision_id")


def _authorisation_not_found(authorisation_id: str) -> NotFound:
    return NotFound(
        f"authorisation {authorisation_id!r} does not exist",
        code="credit_authorisation_not_found",
        field="authorisation_id",
    )


def _authorisation(row: dict[str, Any]) -> Authorisation:
    return Authorisation(
        authorisation_id=row["id"],
        org_id=row["org_id"],
        bank_id=row["bank_id"],
        purpose_code=row["purpose_code"],
        purpose=row["purpose"],
        scope=Scope(row["scope"]),
        granted_by=row["granted_by"],
        granted_auth=row["granted_auth"],
        granted_ts_ms=row["granted_ts_ms"],
        expires_ts_ms=row["expires_ts_ms"],
        revoked_ts_ms=row["revoked_ts_ms"],
        revoked_by=row["revoked_by"],
        revoked_auth=row["revoked_auth"],
    )


def _manual_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "manual_id": row["id"],
        "status": row["status"],
        "action": row["action"],
        "granted_minor": row["granted_minor"],
        "rate_bps": row["rate_bps"],
        "note": row["note"],
        "proposed_by": row["proposed_by"],
        "proposed_auth": row["proposed_auth"],
        "proposed_ts_ms": row["proposed_ts_ms"],
        "confirmed_by": row["confirmed_by"],
        "confirmed_auth": row["confirmed_auth"],
        "confirmed_ts_ms": row["confirmed_ts_ms"],
        "rejected_by": row["rejected_by"],
        "rejected_auth": row["rejected_auth"],
        "rejected_ts_ms": row["rejected_ts_ms"],
    }


def _query_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "query_id": row["id"],
        "org_id": row["org_id"],
        "asker_id": row["asker_id"],
        "asker_role": row["asker_role"],
        "kind": row["kind"],
        "decision_id": row["decision_id"],
        "authorisation_id": row["authorisation_id"],
        "purpose_code": row["purpose_code"],
        "purpose": row["purpose"],
        "scope": row["scope"],
        "user_id": row["user_id"],
        "auth": row["auth"],
        "ts_ms": row["ts_ms"],
    }


_BUSINESSES = (Role.SUPPLIER, Role.CORE_ENTERPRISE)
_OVERSEERS = (Role.OPERATOR, Role.AUDITOR)


class CreditConsent:
    """The consent half of `CreditService` (mixed in): authorisations, the query log, the checks a
    look-up passes, and four eyes on a bank's manual decisions. Every command is one transaction."""

    engine: Engine
    settings: CreditSettings
    clock: Clock
    policy: Policy

    def answer(self, record: DecisionRecord) -> dict[str, Any]:
        """The decision as its asker may see it (a bank without the features scope: no feature values)."""
        doc = record.to_json()
        if record.scope is None:
            return doc
        return shape_for_scope(doc, record.scope, self._knockout_features())

    def _knockout_features(self) -> dict[str, str]:
        return {str(r["code"]): str(r["feature"]) for r in self.policy.knockouts if "feature" in r}

    def _decision_json(self, conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
        manual = self._open_manual(conn, row["id"])
        final = row["outcome"]
        if manual is not None and manual["status"] == ManualStatus.EFFECTIVE:
            final = manual["action"]
        return {
            "decision_id": row["id"],
            "org_id": row["org_id"],
            "product": row["product"],
            "outcome": row["outcome"],
            "pd": row["pd"],
            "score": row["score"],
            "requested_minor": row["requested_minor"],
            "limit_minor": row["limit_minor"],
            "granted_minor": row["granted_minor"],
            "rate_bps": row["rate_bps"],
            "reasons": json.loads(row["reasons_json"]),
            "knockouts": json.loads(row["knockouts_json"]),
            "policy_version": row["policy_version"],
            "model_version": row["model_version"],
            "feature_hash": row["feature_hash"],
            "features": json.loads(row["features_json"]),
            "as_of": row["as_of"].isoformat(),
            "decision_ms": row["decision_us"] / 1000,
            "challenger": None
            if row["challenger_version"] is None
            else {
                "version": row["challenger_version"],
                "pd": row["challenger_pd"],
                "outcome": row["challenger_outcome"],
            },
            "asked_by": row["asked_by"],
            "authorisation_id": row["authorisation_id"],
            "manual": None if manual is None else _manual_json(manual),
            "final_outcome": final,
        }

    # --- who may ask --------------------------------------------------------------------------------

    def check_asker(self, conn: Connection, who: Principal, org_id: str) -> Authorisation | None:
        """May ``who`` apply for a decision about ``org_id``? The business itself and the overseers may
        (None); a bank under a live authorisation (returned: the widest); anyone else is refused: a bank
        403 ``credit_authorisation_required`` (whether or not ``org_id`` exists), another business 403
        ``not_allowed``."""
        if who.org_id == org_id or who.role in _OVERSEERS:
            return None
        if who.role != Role.BANK:
            raise Forbidden(
                "a business may apply only for itself (banks it authorised and the operator may ask about it)",
                code="not_allowed",
            )
        grant = self._live_grant(conn, org_id, who.org_id)
        if grant is None:
            raise Forbidden(
                f"{org_id!r} has not authorised {who.org_id!r} to look up its credit (or the authorisation "
                "expired or was revoked): ask the business for an authorisation",
                code="credit_authorisation_required",
                field="org_id",
            )
        return grant

    def _live_grant(self, conn: Connection, org_id: str, bank_id: str) -> Authorisation | None:
        now = self.clock.now_ms()
        grants = [_authorisation(r) for r in store.authorisations_for(conn, org_id, bank_id)]
        return widest([g for g in grants if g.live(now)])

    def _log_query(
        self,
        conn: Connection,
        who: Principal,
        org_id: str,
        kind: str,
        decision_id: str,
        grant: Authorisation | None,
        scope: Scope,
    ) -> None:
        store.insert_query(
            conn,
            {
                "id": str(uuid.uuid4()),
                "org_id": org_id,
                "asker_id": who.org_id,
                "asker_role": who.role.value,
                "kind": kind,
                "decision_id": decision_id,
                "authorisation_id": None if grant is None else grant.authorisation_id,
                "purpose_code": None if grant is None else grant.purpose_code,
                "purpose": None if grant is None else grant.purpose,
                "scope": scope.value,
                "user_id": who.user_id,
                "auth": who.auth.value,
                "ts_ms": self.clock.now_ms(),
            },
        )

    # --- authorisations -------------------------------------------------------------------------------

    def grant_authorisation(
        self,
        who: Principal,
        *,
        bank_id: str,
        purpose_code: str,
        purpose: str,
        scope: str,
        valid_days: int,
    ) -> dict[str, Any]:
        """A business's admin (a person) authorises ``bank_id`` to look up the business's credit for
        ``valid_days`` days (at most ``credit_authorisation_max_days``)."""
        if who.role not in _BUSINESSES:
            raise Forbidden(
                "only a business (supplier or core enterprise) authorises credit look-ups about itself",
                code="role_not_allowed",
            )
        user_id = require_user_role(who, UserRole.ADMIN, what="authorise a bank's credit look-ups")
        s = self.settings
        if purpose_code not in PURPOSE_CODES:
            raise InvalidInput(f"purpose_code is one of {', '.join(PURPOSE_CODES)}", field="purpose_code")
        text = purpose.strip()
        if not text or len(text) > s.credit_purpose_max_chars or any(ord(c) < 32 for c in text):
            raise InvalidInput(
                f"purpose: 1-{s.credit_purpose_max_chars} characters, no control characters", field="purpose"
            )
        try:
            chosen = Scope(scope)
        except ValueError:
            raise InvalidInput("scope is decision or decision_and_features", field="scope") from None
        if isinstance(valid_days, bool) or not isinstance(valid_days, int):
            raise InvalidInput("valid_days must be a whole number of days", field="valid_days")
        if not 1 <= valid_days <= s.credit_authorisation_max_days:
            raise InvalidInput(
                f"valid_days: 1 to {s.credit_authorisation_max_days} (the longest an authorisation may last)",
                code="authorisation_too_long" if valid_days > 0 else "invalid_input",
                field="valid_days",
            )
        now = self.clock.now_ms()
        row = {
            "id": str(uuid.uuid4()),
            "org_id": who.org_id,
            "bank_id": bank_id,
            "purpose_code": purpose_code,
            "purpose": text,
            "scope": chosen.value,
            "granted_by": user_id,
            "granted_auth": who.auth.value,
            "granted_ts_ms": now,
            "expires_ts_ms": now + valid_days * 86_400_000,
            "revoked_ts_ms": None,
            "revoked_by": None,
            "revoked_auth": None,
        }
        with self.engine.begin() as conn:
            party = ledger.parties(conn, [bank_id])
            if not party or party[0].role != Role.BANK:
                raise NotFound(f"bank {bank_id!r} is not registered", code="bank_not_found", field="bank_id")
            store.insert_authorisation(conn, row)
        return _authorisation(row).to_json(now)

    def revoke_authorisation(self, who: Principal, authorisation_id: str) -> dict[str, Any]:
        """The business's admin ends an authorisation now; another party's answers as a missing one."""
        with self.engine.begin() as conn:
            row = store.authorisation(conn, authorisation_id)
            if row is None or row["org_id"] != who.org_id or who.role not in _BUSINESSES:
                raise _authorisation_not_found(authorisation_id)
            user_id = require_user_role(who, UserRole.ADMIN, what="revoke a bank's credit authorisation")
            if row["revoked_ts_ms"] is not None:
                raise Conflict(
                    f"authorisation {authorisation_id!r} was revoked already",
                    code="credit_authorisation_revoked",
                    field="authorisation_id",
                )
            now = self.clock.now_ms()
            if not store.revoke_authorisation(conn, authorisation_id, by=user_id, auth=who.auth.value, ts_ms=now):
                raise Conflict(
                    f"authorisation {authorisation_id!r} was revoked already",
                    code="credit_authorisation_revoked",
                    field="authorisation_id",
                )
            after = store.authorisation(conn, authorisation_id)
        assert after is not None
        return _authorisation(after).to_json(now)

    def authorisations(self, who: Principal, *, limit: int = 50, cursor: str | None = None) -> Page:
        """A business its grants, a bank those granted to it, the overseers all; others none. Newest first."""
        before = _cursor_key(cursor)
        org_id = bank_id = None
        if who.role in _BUSINESSES:
            org_id = who.org_id
        elif who.role == Role.BANK:
            bank_id = who.org_id
        elif who.role not in _OVERSEERS:
            return Page([], None)
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.authorisations_list(conn, org_id=org_id, bank_id=bank_id, limit=limit + 1, before=before)
        now = self.clock.now_ms()
        return page_from(
            [_authorisation(r).to_json(now) for r in rows], limit, lambda a: (a["granted_ts_ms"], a["authorisation_id"])
        )

    def authorisation(self, who: Principal, authorisation_id: str) -> dict[str, Any]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            row = store.authorisation(conn, authorisation_id)
        if row is None or not (who.org_id in (row["org_id"], row["bank_id"]) or who.role in _OVERSEERS):
            raise _authorisation_not_found(authorisation_id)
        return _authorisation(row).to_json(self.clock.now_ms())

    def queries(self, who: Principal, *, limit: int = 50, cursor: str | None = None) -> Page:
        """The query log, newest first: a business who looked at it (and, for a bank, what it looked at
        itself); the overseers all."""
        before = _cursor_key(cursor)
        org_id = asker_id = None
        if who.role not in _OVERSEERS:
            org_id = who.org_id
            asker_id = who.org_id
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.queries_list(conn, org_id=org_id, asker_id=asker_id, limit=limit + 1, before=before)
        return page_from([_query_json(r) for r in rows], limit, lambda q: (q["ts_ms"], q["query_id"]))

    # --- reading a decision ------------------------------------------------------------------------------

    def decision_for(self, who: Principal, decision_id: str) -> dict[str, Any]:
        """A stored decision as ``who`` may see it: the business whole; the overseers whole (logged); the
        bank that asked while an authorisation of the business is live, shaped by its scope (logged);
        anyone else 404, as a missing one."""
        with self.engine.begin() as conn:
            row = store.decision(conn, decision_id)
            if row is None:
                raise _decision_not_found(decision_id)
            org_id = row["org_id"]
            if who.org_id == org_id:
                return self._decision_json(conn, row)
            if who.role in _OVERSEERS:
                self._log_query(conn, who, org_id, "read", decision_id, None, Scope.DECISION_AND_FEATURES)
                return self._decision_json(conn, row)
            grant = self._live_grant(conn, org_id, who.org_id) if who.role == Role.BANK else None
            if grant is None or row["asked_by"] != who.org_id:
                raise _decision_not_found(decision_id)
            self._log_query(conn, who, org_id, "read", decision_id, grant, grant.scope)
            doc = self._decision_json(conn, row)
            return shape_for_scope(doc, grant.scope, self._knockout_features())

    # --- four eyes ---------------------------------------------------------------------------------------

    def _open_manual(self, conn: Connection, decision_id: str) -> dict[str, Any] | None:
        """The manual decision proposed or in effect, else the last one (rejected), else None."""
        rows = store.manual_decisions(conn, decision_id)
        live = [r for r in rows if r["status"] != ManualStatus.REJECTED]
        return live[-1] if live else (rows[-1] if rows else None)

    def _bank_decision(self, conn: Connection, who: Principal, decision_id: str) -> dict[str, Any]:
        """A decision the calling bank asked for (anyone else's answers as a missing one)."""
        row = store.decision(conn, decision_id)
        if row is None or who.role != Role.BANK or row["asked_by"] != who.org_id:
            raise _decision_not_found(decision_id)
        return row

    def propose_manual(
        self,
        who: Principal,
        decision_id: str,
        *,
        action: str,
        note: str,
        granted_minor: int | None = None,
        rate_bps: int | None = None,
    ) -> dict[str, Any]:
        """Person A of the bank (maker or approver) decides a referred application, or overrides an
        automatic decline. With ``credit_four_eyes`` it waits for a second person (`confirm_manual`);
        without, it takes effect now."""
        text = note.strip()
        if action not in ("approve", "decline"):
            raise InvalidInput("action is approve or decline", field="action")
        if not text or len(text) > 1000:
            raise InvalidInput("note: 1-1000 characters (why the bank decides so)", field="note")
        if action == "approve":
            if granted_minor is None:
                raise InvalidInput("an approval names the amount granted", field="granted_minor")
            check_amount_minor(granted_minor, field="granted_minor")
            if rate_bps is None or isinstance(rate_bps, bool) or not 1 <= rate_bps <= 10_000:
                raise InvalidInput("an approval names its rate: 1 to 10000 basis points a year", field="rate_bps")
        elif granted_minor not in (None, 0) or rate_bps is not None:
            raise InvalidInput("a decline grants nothing: no amount, no rate", field="granted_minor")
        with self.engine.begin() as conn:
            row = self._bank_decision(conn, who, decision_id)
            user_id = require_user_role(who, UserRole.MAKER, UserRole.APPROVER, what="propose a manual credit decision")
            if not manual_allowed(row["outcome"], action):
                raise Conflict(
                    f"a manual {action} is not for an application the engine decided {row['outcome']!r} "
                    "(manual decisions are for referrals and overriding declines)",
                    code="manual_decision_not_allowed",
                    field="action",
                )
            if action == "approve" and granted_minor is not None and granted_minor > row["requested_minor"]:
                raise InvalidInput("the amount granted exceeds the amount requested", field="granted_minor")
            if any(r["status"] != ManualStatus.REJECTED for r in store.manual_decisions(conn, decision_id)):
                raise Conflict(
                    "a manual decision on this application is proposed or in effect already",
                    code="manual_decision_exists",
                )
            now = self.clock.now_ms()
            four_eyes = self.settings.credit_four_eyes
            store.insert_manual(
                conn,
                {
                    "id": str(uuid.uuid4()),
                    "decision_id": decision_id,
                    "bank_id": who.org_id,
                    "action": action,
                    "granted_minor": granted_minor or 0,
                    "rate_bps": rate_bps,
                    "note": text,
                    "status": ManualStatus.PROPOSED if four_eyes else ManualStatus.EFFECTIVE,
                    "proposed_by": user_id,
                    "proposed_auth": who.auth.value,
                    "proposed_ts_ms": now,
                    "confirmed_by": None,
                    "confirmed_auth": None,
                    "confirmed_ts_ms": None,
                    "rejected_by": None,
                    "rejected_auth": None,
                    "rejected_ts_ms": None,
                },
            )
            manual = self._open_manual(conn, decision_id)
        assert manual is not None
        return _manual_json(manual)

    def _pending(self, conn: Connection, decision_id: str) -> dict[str, Any]:
        pending = [r for r in store.manual_decisions(conn, decision_id) if r["status"] == ManualStatus.PROPOSED]
        if not pending:
            raise Conflict("no manual decision is waiting for confirmation", code="no_manual_proposal")
        return pending[-1]

    def confirm_manual(self, who: Principal, decision_id: str) -> dict[str, Any]:
        """Person B, a different person of the bank with the approver role, confirms the proposal: it
        takes effect. The proposer confirming their own: 409 ``four_eyes_same_person``."""
        with self.engine.begin() as conn:
            self._bank_decision(conn, who, decision_id)
            user_id = require_user_role(who, UserRole.APPROVER, what="confirm a manual credit decision")
            pending = self._pending(conn, decision_id)
            if pending["proposed_by"] == user_id:
                raise Conflict(
                    "four eyes: the person who proposed a manual decision may not confirm it; another approver must",
                    code="four_eyes_same_person",
                )
            values = {
                "status": ManualStatus.EFFECTIVE.value,
                "confirmed_by": user_id,
                "confirmed_auth": who.auth.value,
                "confirmed_ts_ms": self.clock.now_ms(),
            }
            if not store.update_manual(conn, pending["id"], from_status=ManualStatus.PROPOSED, values=values):
                raise Conflict("no manual decision is waiting for confirmation", code="no_manual_proposal")
            manual = self._open_manual(conn, decision_id)
        assert manual is not None
        return _manual_json(manual)

    def reject_manual(self, who: Principal, decision_id: str) -> dict[str, Any]:
        """An approver of the bank (or the proposer, withdrawing it) rejects the waiting proposal; a new
        one may then be made."""
        with self.engine.begin() as conn:
            self._bank_decision(conn, who, decision_id)
            pending = self._pending(conn, decision_id)
            if pending["proposed_by"] == who.user_id:
                user_id = require_user_role(
                    who, UserRole.MAKER, UserRole.APPROVER, what="withdraw a manual credit decision"
                )
            else:
                user_id = require_user_role(who, UserRole.APPROVER, what="reject a manual credit decision")
            values = {
                "status": ManualStatus.REJECTED.value,
                "rejected_by": user_id,
                "rejected_auth": who.auth.value,
                "rejected_ts_ms": self.clock.now_ms(),
            }
            if not store.update_manual(conn, pending["id"], from_status=ManualStatus.PROPOSED, values=values):
                raise Conflict("no manual decision is waiting for confirmation", code="no_manual_proposal")
            rows = store.manual_decisions(conn, decision_id)
        return _manual_json(next(r for r in rows if r["id"] == pending["id"]))


def _cursor_key(cursor: str | None) -> tuple[int, str] | None:
    """The (time, id) key of a cursor this API returned (422 ``cursor`` otherwise)."""
    if not cursor:
        return None
    ts, row_id = decode_cursor(cursor, int, str)
    return int(ts), str(row_id)
