"""Bank pages: financing requests and decisions, the portfolio, collateral (loans with LTV gauges, margin
calls, site plans with geofences and device status), live alarms, credit decisions with reason codes.

Every handler calls the services the JSON API calls, with the signed-in bank's identity, and shows only
what the API would show that bank: the requests it received, the agreements and exposure it holds, the
collateral loans it granted and the alarms on the assets pledged to them.

The collateral parts read only `CollateralService`: the bank's loans in one batched read
(`lender_loans`), an asset's site (geofence, last GPS fix, devices judged offline or tampered with) from
`sites`, never the rules engine's stored state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSite
from creditflow.collateral.model import BAND_ORDER, LtvBand
from creditflow.collateral.model import inside as point_inside
from creditflow.http.api.collateral import iot_of
from creditflow.http.api.credit import credit_service
from creditflow.http.pages.common import HOME, NAV, app_of, check_csrf, done, form_error, render, role_pages
from creditflow.identity.access import Principal
from creditflow.identity.sessions import WebUser
from creditflow.kernel.errors import DomainError, InvalidInput
from creditflow.ledger.model.parties import Role

router = APIRouter(include_in_schema=False)
Bank = Annotated[WebUser, role_pages(Role.BANK)]

HOME[Role.BANK] = "/ui/bank"
NAV[Role.BANK].extend(
    [
        ("/ui/bank", "Financing"),
        ("/ui/bank/portfolio", "Portfolio"),
        ("/ui/bank/collateral", "Collateral"),
        ("/ui/bank/alarms", "Alarms"),
        ("/ui/bank/credit", "Credit decisions"),
    ]
)

ALARM_PAGE_MAX = 200  # alarms listed per asset on the alarms page (newest first)
CREDIT_PRODUCTS = ("pure_credit", "certificate_financing")
_AMOUNT = re.compile(r"^(\d{1,15})(?:\.(\d{1,2}))?$")


# --- financing -----------------------------------------------------------------------------------------


@router.get("/ui/bank")
def financing(request: Request, user: Bank) -> HTMLResponse:
    """Requests the bank received (as ``GET /v1/financing/requests``), newest first, with decline reasons."""
    app = app_of(request)
    requests = sorted(
        app.financing.requests(user.org_id, as_bank=True), key=lambda r: (r["requested_ts_ms"], r["id"]), reverse=True
    )
    approved = [r for r in requests if r["status"] == "approved"]
    return render(
        request,
        "bank/financing.html",
        requests=requests,
        approved_count=len(approved),
        declined_count=len(requests) - len(approved),
        approved_minor=sum(r["amount_minor"] for r in approved),
        products=app.financing.products(user.org_id),
    )


# --- portfolio -----------------------------------------------------------------------------------------


@router.get("/ui/bank/portfolio")
def portfolio(request: Request, user: Bank) -> HTMLResponse:
    """Financed pieces (agreements), live exposure per core enterprise, and what is owed on overdue ones."""
    app = app_of(request)
    agreements = app.financing.agreements(bank=user.org_id)
    exposure = [r for r in app.network.exposure() if r["bank"] == user.org_id]
    owed = [r for r in app.clearing.owed_report(None) if user.org_id in (r["holder"], r["recourse_to"])]
    return render(
        request,
        "bank/portfolio.html",
        agreements=agreements,
        face_minor=sum(a["face_minor"] for a in agreements),
        disbursed_minor=sum(a["disbursement_minor"] for a in agreements),
        interest_minor=sum(a["interest_minor"] for a in agreements),
        exposure=exposure,
        exposure_minor=sum(r["exposure_minor"] for r in exposure),
        owed=owed,
    )


# --- collateral ----------------------------------------------------------------------------------------


def _loans(app: App, who: Principal) -> list[dict[str, Any]]:
    """The bank's collateral loans as ``GET /v1/iot/loans/{id}`` answers them, with their LTV bands."""
    return iot_of(app).collateral.lender_loans(who.org_id)


@dataclass(frozen=True, slots=True)
class Marker:
    """A device on a site plan: where it is drawn and what state it is in."""

    device_id: str
    kind: str
    status: str  # online | offline | tampered | retired | silent (never reported)
    x: float
    y: float
    last_rx_ms: int | None
    gps: bool  # drawn at its own last GPS fix (a tracker), not at a slot along the plan's edge


@dataclass(frozen=True, slots=True)
class SitePlan:
    """An asset drawn on a 400 x 260 plan: its geofence polygon (if any), devices and last position."""

    asset: dict[str, Any]
    polygon: str  # SVG points, "" without a geofence
    position: tuple[float, float] | None
    position_ts_ms: int | None
    inside: bool | None
    markers: tuple[Marker, ...]
    active_alarms: tuple[str, ...]


PLAN_W, PLAN_H, PLAN_PAD = 400.0, 260.0, 24.0
PLAN_STRIP = 28.0  # the bottom strip where devices without a GPS fix are drawn


def _projector(points: Sequence[tuple[float, float]]) -> Any:
    """Lat/lon -> plan coordinates: equirectangular around the mean latitude (a site is a few km across,
    flat enough), scaled to fit the plan with its aspect kept, north up."""
    lat0 = sum(p[0] for p in points) / len(points)
    k = math.cos(math.radians(lat0))
    xs = [p[1] * k for p in points]
    ys = [p[0] for p in points]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    scale = min(
        (PLAN_W - 2 * PLAN_PAD) / span_x if span_x else math.inf,
        (PLAN_H - 2 * PLAN_PAD - PLAN_STRIP) / span_y if span_y else math.inf,
    )
    if math.isinf(scale):
        scale = 1.0
    off_x = (PLAN_W - span_x * scale) / 2
    off_y = PLAN_PAD + (PLAN_H - 2 * PLAN_PAD - PLAN_STRIP - span_y * scale) / 2

    def project(lat: float, lon: float) -> tuple[float, float]:
        return (round(off_x + (lon * k - min(xs)) * scale, 1), round(off_y + (max(ys) - lat) * scale, 1))

    return project


def _device_status(device: dict[str, Any], site: AssetSite | None) -> str:
    if device["status"] != "active":
        return "retired"
    if site is not None and device["device_id"] in site.tampered:
        return "tampered"
    if site is not None and device["device_id"] in site.offline:
        return "offline"
    return "online" if device["last_rx_ms"] is not None else "silent"


def site_plans(app: App, asset_ids: Sequence[str]) -> list[SitePlan]:
    """A plan per asset: the geofence drawn to scale with the last GPS fix, devices coloured by status."""
    iot = iot_of(app)
    sites = iot.collateral.sites(asset_ids)
    plans = []
    for asset_id in asset_ids:
        asset = iot.collateral.asset(asset_id)
        site = sites.get(asset_id)
        devices = iot.collateral.devices(asset_id)
        position = site.position if site else None
        points = list(site.geofence or ()) if site else []
        project = _projector(points + ([position] if position else [])) if points or position else None
        polygon = " ".join(f"{x},{y}" for x, y in (project(*p) for p in points)) if project else ""
        at = project(*position) if project and position else None
        inside = point_inside(position, points) if points and position else None
        markers = []
        edge = [d for d in devices if not (d["kind"] == "tracker" and at)]  # drawn in a row along the bottom
        step = (PLAN_W - 2 * PLAN_PAD) / max(len(edge), 1)
        for device in devices:
            status = _device_status(device, site)
            if device["kind"] == "tracker" and at:
                x, y, gps = at[0], at[1], True
            else:
                x, y, gps = round(PLAN_PAD + (edge.index(device) + 0.5) * step, 1), PLAN_H - 10, False
            markers.append(Marker(device["device_id"], device["kind"], status, x, y, device["last_rx_ms"], gps))
        active = tuple(a["alarm_type"] for a in iot.collateral.alarms(asset_id=asset_id, active_only=True))
        plans.append(
            SitePlan(
                asset=asset,
                polygon=polygon,
                position=at,
                position_ts_ms=site.position_ts_ms if site else None,
                inside=inside,
                markers=tuple(markers),
                active_alarms=active,
            )
        )
    return plans


@router.get("/ui/bank/collateral")
def collateral(request: Request, user: Bank) -> HTMLResponse:
    """Collateral loans with LTV gauges, margin calls, and a site plan of every pledged asset."""
    app = app_of(request)
    loans = _loans(app, user.principal)
    asset_ids = [a for loan in loans for a in loan["assets"]]
    calls = [loan for loan in loans if BAND_ORDER.index(LtvBand(loan["band"])) >= BAND_ORDER.index(LtvBand.MARGIN_CALL)]
    gauges = [
        {"loan_id": loan["loan_id"], "ltv_bps": loan["ltv_bps"], "band": loan["band"], **loan["bands"]}
        for loan in loans
    ]
    return render(
        request,
        "bank/collateral.html",
        loans=loans,
        margin_calls=calls,
        gauges=gauges,
        plans=site_plans(app, asset_ids),
    )


# --- alarms ----------------------------------------------------------------------------------------------


def pledged_assets(app: App, who: Principal) -> dict[str, str]:
    """asset id -> loan id, for the assets pledged to the bank's loans."""
    return {
        asset_id: loan["loan_id"]
        for loan in iot_of(app).collateral.lender_loans(who.org_id)
        for asset_id in loan["assets"]
    }


def bank_alarms(app: App, assets: dict[str, str], *, open_only: bool) -> list[dict[str, Any]]:
    """Alarms on the bank's pledged assets, newest first. ``open_only``: the console view (still active,
    or not yet acknowledged), as in mature IoT platforms."""
    iot = iot_of(app)
    alarms = [
        {**alarm, "loan_id": assets[alarm["asset_id"]]}
        for alarm in iot.collateral.alarms_of_assets(list(assets), limit_per_asset=ALARM_PAGE_MAX)
    ]
    if open_only:
        alarms = [a for a in alarms if a["status"] == "active" or not a["acknowledged"]]
    alarms.sort(key=lambda a: (a["raised_ts_ms"], a["alarm_id"]), reverse=True)
    return alarms


@router.get("/ui/bank/alarms")
def alarms(request: Request, user: Bank, show: str = "open") -> HTMLResponse:
    """The alarm console: listed at load, then kept current by the live stream (``/v1/iot/stream``)."""
    app = app_of(request)
    open_only = show != "all"
    assets = pledged_assets(app, user.principal)
    return render(
        request,
        "bank/alarms.html",
        alarms=bank_alarms(app, assets, open_only=open_only),
        asset_loans=assets,
        open_only=open_only,
    )


# --- credit decisions ------------------------------------------------------------------------------------


def parse_yuan(text: str, field: str) -> int:
    """``"1,234.5"`` -> 123450 fen, exactly (no float on the way); a clear error otherwise."""
    found = _AMOUNT.match(text.strip().replace(",", ""))
    if not found:
        raise InvalidInput(
            "the amount must be a number of yuan with at most 2 decimals, e.g. 150000.00",
            code="invalid_amount",
            field=field,
        )
    whole, fen = found.group(1), (found.group(2) or "").ljust(2, "0")
    amount = int(whole) * 100 + int(fen)
    if amount <= 0:
        raise InvalidInput("the amount must be more than 0", code="invalid_amount", field=field)
    return amount


def _credit_page(request: Request, user: WebUser, *, status: int = 200, **context: Any) -> HTMLResponse:
    """The bank's authorisations (it may apply only about businesses with a live one), and its look-ups."""
    app = app_of(request)
    service = credit_service(app)
    names = {p.org_id: p.name for p in app.queries.parties()}
    grants = service.authorisations(user.principal).items
    authorised = sorted({a["org_id"] for a in grants if a["status"] == "live"})
    return render(
        request,
        "bank/credit.html",
        status=status,
        businesses=[(org, names.get(org, org)) for org in authorised],
        authorisations=grants,
        lookups=[q for q in service.queries(user.principal).items if q["asker_id"] == user.org_id],
        names=names,
        products=CREDIT_PRODUCTS,
        **context,
    )


@router.get("/ui/bank/credit")
def credit(request: Request, user: Bank) -> HTMLResponse:
    return _credit_page(request, user)


@router.post("/ui/bank/credit", response_model=None)
def ask_credit(
    request: Request,
    user: Bank,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    org_id: Annotated[str, Form(max_length=64)] = "",
    requested: Annotated[str, Form(max_length=40)] = "",
    product: Annotated[str, Form(max_length=40)] = "pure_credit",
) -> Response:
    """Ask the decision engine about a business that authorised the bank (``POST /v1/credit/applications``:
    without a live authorisation 403 ``credit_authorisation_required``, nothing stored)."""
    check_csrf(user, csrf_token)
    form = {"org_id": org_id, "requested": requested, "product": product}
    try:
        amount = parse_yuan(requested, "requested")
        record = credit_service(app_of(request)).decide(org_id, amount, product, asker=user.principal)
    except DomainError as error:
        return _credit_page(request, user, status=error.status, form=form, **form_error(error))
    return done(f"/ui/bank/credit/decisions/{record.id}", f"Decision {record.decision.outcome} for {org_id}.")


def _decision_page(request: Request, user: WebUser, decision_id: str, *, status: int = 200, **context: Any) -> Response:
    try:
        decision = credit_service(app_of(request)).decision_for(user.principal, decision_id)
    except DomainError as error:
        return _credit_page(request, user, status=error.status, **form_error(error))
    return render(
        request,
        "bank/decision.html",
        status=status,
        decision=decision,
        four_eyes=credit_service(app_of(request)).settings.credit_four_eyes,
        **context,
    )


@router.get("/ui/bank/credit/decisions/{decision_id}", response_model=None)
def credit_decision(request: Request, decision_id: str, user: Bank) -> Response:
    """A decision the bank asked for, as its authorisation's scope shows it (``GET /v1/credit/decisions/{id}``:
    the read is logged for the business), with its manual-decision state and forms."""
    return _decision_page(request, user, decision_id)


def _optional_yuan(text: str, field: str) -> int | None:
    return parse_yuan(text, field) if text.strip() else None


def _optional_bps(text: str) -> int | None:
    """A rate typed in percent a year ("6.5") as basis points, exactly."""
    if not text.strip():
        return None
    found = re.fullmatch(r"(\d{1,3})(?:\.(\d{1,2}))?", text.strip())
    if not found:
        raise InvalidInput("the rate is a percentage a year with at most 2 decimals, e.g. 6.50", field="rate")
    return int(found.group(1)) * 100 + int((found.group(2) or "").ljust(2, "0"))


@router.post("/ui/bank/credit/decisions/{decision_id}/manual", response_model=None)
def propose_manual(
    request: Request,
    decision_id: str,
    user: Bank,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    action: Annotated[str, Form(max_length=16)] = "",
    granted: Annotated[str, Form(max_length=40)] = "",
    rate: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Person A proposes a manual decision (``POST /v1/credit/decisions/{id}/manual``)."""
    check_csrf(user, csrf_token)
    form = {"action": action, "granted": granted, "rate": rate, "note": note}
    try:
        manual = credit_service(app_of(request)).propose_manual(
            user.principal,
            decision_id,
            action=action,
            note=note,
            granted_minor=_optional_yuan(granted, "granted") if action == "approve" else None,
            rate_bps=_optional_bps(rate) if action == "approve" else None,
        )
    except DomainError as error:
        if error.field == "granted_minor":
            error.field = "granted"
        elif error.field == "rate_bps":
            error.field = "rate"
        return _decision_page(request, user, decision_id, status=error.status, form=form, **form_error(error))
    said = "waits for a second approver" if manual["status"] == "proposed" else "is in effect"
    return done(f"/ui/bank/credit/decisions/{decision_id}", f"Manual {manual['action']} {said}.")


@router.post("/ui/bank/credit/decisions/{decision_id}/manual/{step}", response_model=None)
def settle_manual(
    request: Request,
    decision_id: str,
    step: str,
    user: Bank,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Person B confirms (or rejects) the proposal (``.../manual/confirm``, ``.../manual/reject``)."""
    check_csrf(user, csrf_token)
    service = credit_service(app_of(request))
    try:
        if step == "confirm":
            manual = service.confirm_manual(user.principal, decision_id)
        elif step == "reject":
            manual = service.reject_manual(user.principal, decision_id)
        else:
            raise InvalidInput("the step is confirm or reject", field="step")
    except DomainError as error:
        return _decision_page(request, user, decision_id, status=error.status, **form_error(error))
    return done(f"/ui/bank/credit/decisions/{decision_id}", f"Manual decision {manual['status']}.")
