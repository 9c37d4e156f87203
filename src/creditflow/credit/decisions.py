"""The decision engine. Pure: the features, the model's PD and its per-feature contributions come in;
a decision with reasons goes out. The policy is data (`policy/credit_policy.json`, versioned by its
``version`` field and its SHA-256), not code.

Rule order, fixed:
1. Knock-outs, in the order the policy lists them. Every knock-out that fires is reported; any one
   declines, and the model is not consulted.
2. PD bands of the product: PD < approve_below_pd approves; PD >= decline_from_pd declines; in between
   is referred to a human.
3. For an approval: the limit = min(cap, share x verified revenue of 12 months x max(0, 1 - haircut x PD)),
   rounded down to ``round_to_minor``; below ``min_minor`` the application is declined
   (``limit_too_small``). The amount granted is min(requested, limit).
4. The risk-based annual rate = funding + LGD x PD / (1 - PD) + margin, within [min, max] bps.
Reasons: for a decline or referral, the features that raise the risk most (largest positive contribution
to the log-odds of default, LightGBM ``pred_contrib``); for an approval, the ones that lower it most.
Each is a plain sentence from the feature catalogue with the applicant's own value.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from creditflow.credit.features import SPECS, FeatureVector, format_value

APPROVE, REFER, DECLINE = "approve", "refer", "decline"
PRODUCTS = ("pure_credit", "certificate_financing")
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class PolicyError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    sha256: str
    knockouts: tuple[dict[str, Any], ...]
    products: dict[str, dict[str, float]]
    limit: dict[str, float]
    rate: dict[str, float]
    max_reasons: int

    @classmethod
    def from_json(cls, text: str) -> Policy:
        try:
            doc = json.loads(text)
            policy = cls(
                version=str(doc["version"]),
                sha256=hashlib.sha256(text.encode()).hexdigest(),
                knockouts=tuple(doc["knockouts"]),
                products={
                    k: {
                        "approve_below_pd": float(v["approve_below_pd"]),
                        "decline_from_pd": float(v["decline_from_pd"]),
                    }
                    for k, v in doc["products"].items()
                },
                limit={k: float(v) for k, v in doc["limit"].items()},
                rate={k: float(v) for k, v in doc["rate"].items()},
                max_reasons=int(doc["reasons"]["max"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyError(f"the policy is not valid: {exc!r}") from None
        for rule in policy.knockouts:
            if "flag" not in rule and not (rule.get("feature") in SPECS and rule.get("op") in _OPS):
                raise PolicyError(
                    f"knock-out {rule.get('code')!r} needs a flag, or a catalogue feature and an operator"
                )
        for name, band in policy.products.items():
            if not 0 < band["approve_below_pd"] <= band["decline_from_pd"] <= 1:
                raise PolicyError(f"product {name}: need 0 < approve_below_pd <= decline_from_pd <= 1")
        return policy


def load_policy(path: str | Path | None = None) -> Policy:
    if path is None:
        text = resources.files("creditflow.credit").joinpath("policy", "credit_policy.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return Policy.from_json(text)


@dataclass(frozen=True, slots=True)
class ReasonCode:
    code: str
    message: str
    contribution: float | None = None  # log-odds of default this feature adds (+ raises risk)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.contribution is not None:
            out["contribution"] = round(self.contribution, 4)
        return out


@dataclass(frozen=True, slots=True)
class CreditDecision:
    outcome: str
    product: str
    pd: float | None
    score: int | None
    requested_minor: int
    limit_minor: int
    granted_minor: int
    rate_bps: int | None
    reasons: tuple[ReasonCode, ...]
    knockouts: tuple[str, ...]
    policy_version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "product": self.product,
            "pd": None if self.pd is None else round(self.pd, 6),
            "score": self.score,
            "requested_minor": self.requested_minor,
            "limit_minor": self.limit_minor,
            "granted_minor": self.granted_minor,
            "rate_bps": self.rate_bps,
            "reasons": [r.to_json() for r in self.reasons],
            "knockouts": list(self.knockouts),
            "policy_version": self.policy_version,
        }


def score_points(pd: float) -> int:
    """The PD on the scorecard's scale: 600 points at odds 50:1 (good:bad), 20 points to double the odds."""
    pd = min(max(pd, 1e-6), 1 - 1e-6)
    return round(600 + 20 / math.log(2) * (math.log((1 - pd) / pd) - math.log(50)))


def knockouts(fv: FeatureVector, policy: Policy) -> list[ReasonCode]:
    fired: list[ReasonCode] = []
    for rule in policy.knockouts:
        if "flag" in rule:
            if getattr(fv, rule["flag"]):
                fired.append(ReasonCode(rule["code"], rule["message"]))
            continue
        value = fv.values[rule["feature"]]
        if not math.isnan(value) and _OPS[rule["op"]](value, float(rule["value"])):
            fired.append(ReasonCode(rule["code"], rule["message"].format(v=value)))
    return fired


def explain(
    fv: FeatureVector, features: Sequence[str], contributions: Sequence[float], *, risk_up: bool, n: int
) -> list[ReasonCode]:
    pairs = [(f, float(c)) for f, c in zip(features, contributions, strict=False) if f in SPECS]
    pairs.sort(key=lambda fc: -fc[1] if risk_up else fc[1])
    out = []
    for name, c in pairs:
        if (risk_up and c <= 0) or (not risk_up and c >= 0):
            break
        spec = SPECS[name]
        if math.isnan(fv.values[name]):
            text = f"no data on file for: {spec.description}"
        else:
            text = (spec.risk_up if risk_up else spec.risk_down).format(v=format_value(spec, fv.values[name]))
        out.append(ReasonCode(name, text, c))
        if len(out) == n:
            break
    return out


def limit_minor(verified_revenue_minor: int, pd: float, policy: Policy) -> int:
    lim = policy.limit
    factor = Decimal(str(lim["share_of_verified_revenue_12m"])) * Decimal(
        str(max(0.0, 1 - lim["pd_haircut_per_pd"] * pd))
    )
    raw = Decimal(verified_revenue_minor) * factor
    step = Decimal(int(lim["round_to_minor"]))
    rounded = int((raw / step).to_integral_value(rounding=ROUND_DOWN) * step)
    return min(rounded, int(lim["cap_minor"]))


def rate_bps(pd: float, policy: Policy) -> int:
    r = policy.rate
    expected_loss = Decimal(str(r["lgd"])) * Decimal(str(pd)) / Decimal(str(1 - min(pd, 0.999)))
    bps = Decimal(int(r["funding_bps"])) + expected_loss * 10_000 + Decimal(int(r["margin_bps"]))
    return int(
        min(max(bps.to_integral_value(rounding=ROUND_HALF_UP), Decimal(int(r["min_bps"]))), Decimal(int(r["max_bps"])))
    )


def decide(
    fv: FeatureVector,
    pd: float | None,
    contributions: Mapping[str, float] | None,
    policy: Policy,
    requested_minor: int,
    product: str = "pure_credit",
) -> CreditDecision:
    """Apply the policy (see the module docstring for the order). ``pd`` may be None only when a
    knock-out fires (the caller may skip the model then)."""
    if product not in policy.products:
        raise PolicyError(f"the policy has no product {product!r}")
    fired = knockouts(fv, policy)
    if fired:
        return CreditDecision(
            DECLINE,
            product,
            pd,
            None if pd is None else score_points(pd),
            requested_minor,
            0,
            0,
            None,
            tuple(fired),
            tuple(r.code for r in fired),
            policy.version,
        )
    assert pd is not None and contributions is not None, "no knock-out fired: the model's PD is needed"
    band = policy.products[product]
    names, values = list(contributions), list(contributions.values())
    if pd >= band["decline_from_pd"]:
        outcome = DECLINE
    elif pd >= band["approve_below_pd"]:
        outcome = REFER
    else:
        outcome = APPROVE
    reasons = explain(fv, names, values, risk_up=outcome != APPROVE, n=policy.max_reasons)
    limit = granted = 0
    rate = None
    if outcome == APPROVE:
        limit = limit_minor(fv.verified_revenue_12m_minor, pd, policy)
        if limit < int(policy.limit["min_minor"]):
            outcome = DECLINE
            reasons = [
                ReasonCode(
                    "limit_too_small",
                    f"verified revenue supports a limit of {limit / 100:,.2f} yuan, below the minimum loan",
                ),
                *explain(fv, names, values, risk_up=True, n=policy.max_reasons),
            ]
            limit = 0
        else:
            granted = min(requested_minor, limit)
            rate = rate_bps(pd, policy)
    if outcome == REFER:
        reasons = [
            ReasonCode(
                "referred", f"the estimated probability of default ({pd:.1%}) is in the band a credit officer reviews"
            ),
            *reasons,
        ]
    elif outcome == DECLINE and not any(r.code == "limit_too_small" for r in reasons):
        reasons = [
            ReasonCode("pd_too_high", f"the estimated probability of default ({pd:.1%}) is above the policy's limit"),
            *reasons,
        ]
    return CreditDecision(
        outcome,
        product,
        pd,
        score_points(pd),
        requested_minor,
        limit,
        granted,
        rate,
        tuple(reasons),
        (),
        policy.version,
    )
