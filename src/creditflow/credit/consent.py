"""Consent for credit look-ups and four eyes on manual decisions (issue 13): the rules, no storage.

A business (supplier or core enterprise) grants a named bank an *authorisation* with a purpose and an
expiry; while it is live (not expired, not revoked) the bank may apply for credit decisions about the
business, and read the decisions it asked for. The authorisation's *scope* says what the bank receives:

- ``decision``: outcome, PD, score, limit, rate and the reasons, each reason with its code and its
  contribution to the log-odds of default, and a message that names the feature but not its value
  (`redact_reason`); no feature snapshot.
- ``decision_and_features``: also the raw feature values (the snapshot the decision was made on) and the
  reasons' messages as the decision engine wrote them (they quote values: "sales fell 32 %").

A bank's manual decision on a referred application, and any override of an automatic decline, is a
*proposal* by one person; with four eyes on (the default) a second person of the same bank with the
approver role confirms it before it takes effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from creditflow.credit.features import SPECS


class Scope(StrEnum):
    DECISION = "decision"
    DECISION_AND_FEATURES = "decision_and_features"


# why a bank asks (the free-text purpose says more)
PURPOSE_CODES = ("loan_application", "credit_line_review", "financing_request", "monitoring", "other")


@dataclass(frozen=True, slots=True)
class Authorisation:
    authorisation_id: str
    org_id: str  # the business
    bank_id: str
    purpose_code: str
    purpose: str
    scope: Scope
    granted_by: str
    granted_auth: str
    granted_ts_ms: int
    expires_ts_ms: int
    revoked_ts_ms: int | None = None
    revoked_by: str | None = None
    revoked_auth: str | None = None

    def live(self, now_ms: int) -> bool:
        return self.revoked_ts_ms is None and now_ms < self.expires_ts_ms

    def status(self, now_ms: int) -> str:
        if self.revoked_ts_ms is not None:
            return "revoked"
        return "live" if now_ms < self.expires_ts_ms else "expired"

    def to_json(self, now_ms: int) -> dict[str, Any]:
        return {
            "authorisation_id": self.authorisation_id,
            "org_id": self.org_id,
            "bank_id": self.bank_id,
            "purpose_code": self.purpose_code,
            "purpose": self.purpose,
            "scope": self.scope.value,
            "status": self.status(now_ms),
            "granted_by": self.granted_by,
            "granted_auth": self.granted_auth,
            "granted_ts_ms": self.granted_ts_ms,
            "expires_ts_ms": self.expires_ts_ms,
            "revoked_ts_ms": self.revoked_ts_ms,
            "revoked_by": self.revoked_by,
            "revoked_auth": self.revoked_auth,
        }


def widest(authorisations: list[Authorisation]) -> Authorisation | None:
    """Of several live authorisations for one bank, the one that allows the most (features first),
    then the one that lasts longest."""
    if not authorisations:
        return None
    return max(
        authorisations, key=lambda a: (a.scope == Scope.DECISION_AND_FEATURES, a.expires_ts_ms, a.authorisation_id)
    )


# --- what a bank receives ---------------------------------------------------------------------------

_GENERIC = {
    "limit_too_small": "verified revenue supports a limit below the minimum loan",
}


def redact_reason(reason: Mapping[str, Any], knockout_features: Mapping[str, str]) -> dict[str, Any]:
    """A reason without the feature value its message quotes: the code, the contribution (a property of
    the model's answer, not of the business's data) and a message naming only what the reason is about.
    ``knockout_features``: knock-out rule code -> the feature it tests."""
    code = str(reason.get("code", ""))
    out: dict[str, Any] = {"code": code}
    if code in SPECS:
        spec = SPECS[code]
        direction = reason.get("contribution")
        if isinstance(direction, int | float):
            verb = "raises" if direction > 0 else "lowers"
            out["message"] = f"{spec.description}: {verb} the estimated risk"
        else:
            out["message"] = spec.description
    elif code in knockout_features:
        feature = knockout_features[code]
        about = SPECS[feature].description if feature in SPECS else feature
        out["message"] = f"a knock-out rule of the policy fired (on: {about})"
    elif code in _GENERIC:
        out["message"] = _GENERIC[code]
    else:  # policy codes that quote no value of the business (referred, pd_too_high, blacklisted, ...)
        out["message"] = str(reason.get("message", ""))
    if "contribution" in reason:
        out["contribution"] = reason["contribution"]
    return out


def shape_for_scope(decision: Mapping[str, Any], scope: Scope, knockout_features: Mapping[str, str]) -> dict[str, Any]:
    """The decision as a bank with ``scope`` may see it: without ``features`` (null) and with redacted
    reasons unless the scope includes the features."""
    out = dict(decision)
    out["scope"] = scope.value
    if scope == Scope.DECISION_AND_FEATURES:
        return out
    out["features"] = None
    out["reasons"] = [redact_reason(r, knockout_features) for r in decision.get("reasons", [])]
    return out


# --- four eyes ----------------------------------------------------------------------------------------

MANUAL_ACTIONS = ("approve", "decline")


class ManualStatus(StrEnum):
    PROPOSED = "proposed"  # waiting for the second person
    EFFECTIVE = "effective"  # confirmed (or four eyes off): the bank's decision
    REJECTED = "rejected"  # the second person (or the proposer) withdrew it


def manual_allowed(outcome: str, action: str) -> bool:
    """A manual decision is for a referred application (approve or decline it) or the override of an
    automatic decline (approve it); an approved application needs none."""
    return (outcome == "refer" and action in MANUAL_ACTIONS) or (outcome == "decline" and action == "approve")
