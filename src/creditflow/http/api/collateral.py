"""IoT-monitored collateral over HTTP: telemetry batches (the same pipeline as MQTT), assets, devices,
prices, loans, releases, alarms, a live server-sent-events stream and Prometheus metrics.

Telemetry authenticates by each message's HMAC (the device's secret), not by API key: a device is not an
organisation. Everything else takes an API key.

Who sees what (as in `visibility`: what a caller may not see answers 404 with the very message a missing
object gets; a visible object the caller may not act on answers 403):

- an asset, its devices and its alarms: the asset's owner, the bank whose loan it is pledged to (once the
  owner accepted the pledge), the operator and the auditor; an absent asset and another's answer alike;
- a loan (with its pledges and band history): its borrower and its lender, the operator and the auditor.

Owners register their assets and devices and manage the devices' secrets (the operator may too); banks
propose loans and pledges, which bind only once the borrower (the asset's owner) accepts them, both
parties signing the terms; banks record repayments, approve releases and acknowledge alarms on their own
loans' accepted collateral; each bank keeps its own price book (it values only its loans) and the
operator keeps the feed used where a bank has no price of its own. Lists are pages:
``limit`` and ``cursor`` in, ``{"items": [...], "next_cursor": ...}`` out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec, asset_not_found, device_not_found
from creditflow.collateral.model import AssetKind, DeviceKind
from creditflow.collateral.system import IotSystem
from creditflow.http.common import Cursor, Limit, error_responses
from creditflow.http.idempotency import carries_secret
from creditflow.http.schemas import Page
from creditflow.http.security import AppDep, Caller, is_overseer, require_role
from creditflow.identity.access import Principal
from creditflow.kernel.errors import Forbidden, LimitExceeded, Unavailable
from creditflow.ledger.model.parties import Role

router = APIRouter(tags=["collateral"])
_W = error_responses(401, 403, 404, 409, 422)
_R = error_responses(401, 404)
_L = error_responses(401, 422)


def iot_of(app: App) -> IotSystem:
    """The wired IoT capability (``App.iot``)."""
    iot = getattr(app, "iot", None)
    if not isinstance(iot, IotSystem):
        raise Unavailable("IoT collateral is not enabled on this server", code="iot_disabled")
    return iot


def viewer(who: Principal) -> str | None:
    """Whose objects the caller may see: None (everything) for the operator and the auditor."""
    return None if is_overseer(who) else who.org_id


def _not_allowed(what: str) -> Forbidden:
    return Forbidden(what, code="not_allowed")


# --- request bodies ---------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


SIG_EXAMPLE = "5f0c6d2a9b1e4f7083d6a1c2e9b4f7a0c3d6e9f2a5b8c1d4e7f0a3b6c9d2e5f8"


class TelemetryBatchIn(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {
                            "device_id": "scale-1",
                            "ts": 1772460000000,
                            "seq": 42,
                            "values": {"weight_kg": 49875.5, "battery_pct": 88},
                            "sig": SIG_EXAMPLE,
                        }
                    ]
                }
            ]
        },
    )
    messages: list[dict[str, Any]] = Field(
        min_length=1,
        description="{device_id, ts, seq, values, sig} each; sig = hex HMAC-SHA256 of the canonical payload "
        "under the device's secret (see ADR 0009)",
    )


class AssetIn(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "asset_id": "lot-7",
                    "kind": "warehouse_lot",
                    "name": "HRB400 rebar, bay 7",
                    "commodity": "steel",
                    "quantity_kg": 200_000,
                    "receipt_no": "WR-2026-0007",
                },
                {
                    "asset_id": "excavator-3",
                    "kind": "equipment",
                    "name": "XE215 excavator",
                    "serial_no": "XE215-88301",
                    "geofence": [[34.26, 117.18], [34.26, 117.19], [34.27, 117.19], [34.27, 117.18]],
                    "appraised_minor": 80_000_000,
                },
                {
                    "asset_id": "tea-garden-1",
                    "kind": "crop_field",
                    "name": "Longjing terrace",
                    "crop": "tea",
                    "area_m2": 40_000,
                    "expected_yield_kg": 3_000,
                },
            ]
        },
    )
    asset_id: str = Field(min_length=1, max_length=64)
    kind: AssetKind
    name: str = Field(min_length=1, max_length=200)
    commodity: str | None = None
    quantity_kg: StrictFloat | StrictInt | None = Field(None, description="warehouse lot: pledged quantity")
    receipt_no: str | None = Field(None, description="warehouse lot: the receipt, unique across the platform")
    serial_no: str | None = None
    geofence: list[list[float]] | None = Field(None, description="equipment: the allowed site, [lat, lon] points")
    appraised_minor: StrictInt | None = Field(None, description="equipment: appraised value in fen")
    area_m2: StrictInt | None = None
    crop: str | None = None
    expected_yield_kg: StrictFloat | StrictInt | None = None


class DeviceIn(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"device_id": "scale-1", "asset_id": "lot-7", "kind": "scale"}]}
    )
    device_id: str = Field(min_length=1, max_length=64)
    asset_id: str = Field(min_length=1, max_length=64)
    kind: DeviceKind


class PriceIn(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"commodity": "steel", "price_minor_per_kg": 380}]}
    )
    commodity: str = Field(min_length=1, max_length=32)
    price_minor_per_kg: Annotated[StrictInt, Field(ge=0, description="fen per kilogram")]
    book: str | None = Field(
        None,
        max_length=64,
        description="whose price book: only the caller's own (a bank's id for a bank, `operator` for the "
        "operator's feed); omitted, the caller's own",
    )


class LoanIn(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"loan_id": "L-2026-031", "borrower": "steel", "outstanding_minor": 40_000_000, "bands_key": "steel"}
            ]
        },
    )
    loan_id: str = Field(min_length=1, max_length=64)
    borrower: str = Field(min_length=1, max_length=64)
    outstanding_minor: StrictInt
    bands_key: str = Field("default", description="the commodity whose LTV bands apply")


class PledgeIn(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"asset_id": "lot-7", "haircut_bps": 1000}]}
    )
    asset_id: str = Field(min_length=1, max_length=64, description="an asset of the loan's borrower")
    haircut_bps: StrictInt


class RepayIn(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount_minor": 2_000_000}]})
    amount_minor: StrictInt


class ReleaseIn(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"quantity_kg": 10_000}]})
    quantity_kg: StrictFloat | StrictInt


class AckIn(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user": "li.wei"}]})
    user: str = Field(min_length=1, max_length=64, description="who, at the caller's organisation")


class ClearIn(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user": "li.wei", "note": "checked on site: the scale was recalibrated"}]},
    )
    user: str = Field(min_length=1, max_length=64, description="who, at the caller's organisation")
    note: str = Field(min_length=1, max_length=500, description="why the alarm is cleared")


# --- responses -------------------------------------------------------------------------------------------


class AssetOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "asset_id": "lot-7",
                    "kind": "warehouse_lot",
                    "owner": "steel",
                    "name": "HRB400 rebar, bay 7",
                    "commodity": "steel",
                    "expected_g": 200_000_000,
                    "measured_g": 199_870_000,
                    "receipt_no": "WR-2026-0007",
                    "serial_no": None,
                    "crop": None,
                    "health_index": 100,
                    "value_minor": 68_355_540,
                    "loan_id": "L-2026-031",
                    "haircut_bps": 1000,
                }
            ]
        }
    )
    asset_id: str
    kind: AssetKind
    owner: str
    name: str
    commodity: str | None
    expected_g: int = Field(description="pledged (lot) or expected (crop) quantity, grams")
    measured_g: int | None = Field(description="what the scales report now, grams")
    receipt_no: str | None
    serial_no: str | None
    crop: str | None
    health_index: int
    value_minor: int = Field(description="lendable value after the haircut, fen")
    loan_id: str | None
    haircut_bps: int | None


class DeviceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device_id": "scale-1",
                    "asset_id": "lot-7",
                    "kind": "scale",
                    "status": "active",
                    "secret_version": 1,
                    "last_rx_ms": 1772460000321,
                }
            ]
        }
    )
    device_id: str
    asset_id: str
    kind: DeviceKind
    status: str = Field(description="active or retired")
    secret_version: int
    last_rx_ms: int | None = Field(description="receive time of its newest message")


class DeviceSecretOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"device_id": "scale-1", "secret": "ab" * 32}]})
    device_id: str
    secret: str = Field(description="the HMAC key, hex; shown only this once (stored encrypted)")


class LoanEventOut(BaseModel):
    ts_ms: int
    from_band: str
    to_band: str
    ltv_bps: int | None
    cause: str


class SignatureOut(BaseModel):
    key_id: str
    signature: str = Field(description="hex Ed25519 over the consent context and the canonical terms")


class PledgeProposalOut(BaseModel):
    proposal_id: str
    asset_id: str = Field(description="as the lender named it; checked against its owner only on acceptance")
    haircut_bps: int
    status: str = Field(description="proposed, accepted or refused (by the asset's owner)")
    proposed_ts_ms: int
    decided_ts_ms: int | None
    terms_digest: str | None
    lender_signature: SignatureOut | None
    owner_signature: SignatureOut | None


class PriceUsedOut(BaseModel):
    commodity: str
    price_minor_per_kg: int
    ts_ms: int
    book: str = Field(description="the lender's id (its own price book) or `operator` (the operator's feed)")
    source: str


class LoanOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "loan_id": "L-2026-031",
                    "borrower": "steel",
                    "lender": "bank",
                    "outstanding_minor": 40_000_000,
                    "value_minor": 68_355_540,
                    "ltv_bps": 5852,
                    "band": "NORMAL",
                    "assets": ["lot-7"],
                    "financing_blocked": False,
                    "events": [],
                    "status": "accepted",
                    "proposed_ts_ms": 1772460000000,
                    "decided_ts_ms": 1772460600000,
                    "terms_digest": "9f" * 32,
                    "lender_signature": {"key_id": "k1", "signature": "ab" * 64},
                    "borrower_signature": {"key_id": "k1", "signature": "cd" * 64},
                    "pledge_proposals": [],
                    "prices": [
                        {
                            "commodity": "steel",
                            "price_minor_per_kg": 380,
                            "ts_ms": 1772460000000,
                            "book": "bank",
                            "source": "bank",
                        }
                    ],
                }
            ]
        }
    )
    loan_id: str
    borrower: str
    lender: str
    status: str = Field(description="proposed (by the lender), accepted or refused (by the borrower)")
    outstanding_minor: int
    value_minor: int
    ltv_bps: int | None = Field(description="loan-to-value, basis points; null when the collateral has no value")
    band: str = Field(description="NORMAL, WARNING, MARGIN_CALL or LIQUIDATION")
    assets: list[str] = Field(description="the pledged assets")
    financing_blocked: bool = Field(
        description="a margin call on an accepted loan stops new financing for the borrower"
    )
    events: list[LoanEventOut]
    proposed_ts_ms: int
    decided_ts_ms: int | None = Field(description="when the borrower accepted or refused it")
    terms_digest: str | None = Field(description="SHA-256 of the consent message of the signed terms")
    lender_signature: SignatureOut | None
    borrower_signature: SignatureOut | None
    pledge_proposals: list[PledgeProposalOut] = Field(description="every pledge the lender proposed, and its state")
    prices: list[PriceUsedOut] = Field(description="the price that values each commodity of the pledged assets")


class AlarmOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "alarm_id": "3f6c1a2e-8d4b-4e1f-9a7c-2b5d8e0f1a3c",
                    "asset_id": "lot-7",
                    "alarm_type": "unauthorised_outbound",
                    "severity": "CRITICAL",
                    "status": "active",
                    "acknowledged": False,
                    "ack_by": None,
                    "ack_ts_ms": None,
                    "raised_ts_ms": 1772470800000,
                    "stored_ms": 1772470800012,
                    "cleared_ts_ms": None,
                    "details": {"drop_g": 3_000_000, "confidence": "high"},
                }
            ]
        }
    )
    alarm_id: str
    asset_id: str
    alarm_type: str
    severity: str
    status: str = Field(description="active or cleared")
    acknowledged: bool
    ack_by: str | None
    ack_ts_ms: int | None
    raised_ts_ms: int
    stored_ms: int
    cleared_ts_ms: int | None
    details: dict[str, Any]


# --- helpers: the object, if the caller may see it ------------------------------------------------------


def _asset_parties(iot: IotSystem, who: Principal, asset_id: str) -> tuple[str, str | None]:
    """(owner, lender) of an asset the caller may see; 404 otherwise."""
    parties = iot.collateral.asset_owner_and_lender(asset_id)
    if parties is None or not (is_overseer(who) or who.org_id in parties):
        raise asset_not_found(asset_id)
    return parties


def _device_parties(iot: IotSystem, who: Principal, device_id: str) -> tuple[str, str | None]:
    device = iot.collateral.device(device_id, viewer=viewer(who))
    parties = iot.collateral.asset_owner_and_lender(device["asset_id"])
    if parties is None:
        raise device_not_found(device_id)
    return parties


def _owner_or_operator(who: Principal, owner: str, what: str) -> None:
    if who.org_id != owner and who.role is not Role.OPERATOR:
        raise _not_allowed(f"only the asset's owner or the operator may {what}")


# --- telemetry and metrics -------------------------------------------------------------------------------


@router.post("/v1/iot/telemetry", responses=error_responses(413, 422, 503))
async def telemetry(body: TelemetryBatchIn, app: AppDep) -> dict[str, Any]:
    """A batch of signed device messages; each is accepted or rejected with its reason (never all-or-nothing)."""
    iot = iot_of(app)
    if len(body.messages) > iot.settings.http_batch_max:
        raise LimitExceeded(f"at most {iot.settings.http_batch_max} messages per batch", code="batch_too_large")
    futures = [iot.pipeline.submit(json.dumps(m).encode(), source="http", block=False) for m in body.messages]
    results = [await asyncio.wrap_future(f) for f in futures]
    return {
        "accepted": sum(r.accepted for r in results),
        "rejected": sum(not r.accepted for r in results),
        "results": [r.to_json() for r in results],
    }


@router.get("/v1/iot/metrics", response_class=PlainTextResponse, tags=["health"])
def iot_metrics(app: AppDep) -> str:
    """Ingest counters, consumer lag and throughput in the Prometheus text format (no authentication)."""
    return iot_of(app).pipeline.prometheus()


# --- assets and devices ----------------------------------------------------------------------------------


@router.post("/v1/iot/assets", status_code=201, response_model=AssetOut, responses=_W)
def register_asset(body: AssetIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """Register collateral owned by the caller."""
    require_role(who, Role.SUPPLIER, Role.CORE_ENTERPRISE, Role.OPERATOR, what="register collateral")
    spec = AssetSpec(owner=who.org_id, **body.model_dump())
    return iot_of(app).collateral.register_asset(spec)


@router.get("/v1/iot/assets", response_model=Page[AssetOut], responses=_L)
def list_assets(app: AppDep, who: Caller, limit: Limit = None, cursor: Cursor = None) -> Page[AssetOut]:
    """Assets by id: the caller's own and those pledged to its loans (every asset for operator and auditor)."""
    page = iot_of(app).collateral.assets_page(viewer=viewer(who), size=app.queries.page_size(limit), cursor=cursor)
    return Page[AssetOut](items=[AssetOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor)


@router.get("/v1/iot/assets/{asset_id}", response_model=AssetOut, responses=_R)
def get_asset(asset_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """An asset with its pledge, for its owner, the bank it is pledged to, the operator and the auditor."""
    return iot_of(app).collateral.asset(asset_id, viewer=viewer(who))


@router.post(
    "/v1/iot/devices",
    status_code=201,
    response_model=DeviceSecretOut,
    responses=_W,
    dependencies=[carries_secret("the device was registered; rotate its secret (POST /v1/iot/devices/{id}/rotate)")],
)
def register_device(body: DeviceIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """Bind a new device to one of the caller's assets; its secret is returned once."""
    iot = iot_of(app)
    owner, _lender = _asset_parties(iot, who, body.asset_id)
    _owner_or_operator(who, owner, "bind devices to it")
    secret = iot.collateral.register_device(body.device_id, body.asset_id, body.kind)
    return {"device_id": body.device_id, "secret": secret}


@router.get("/v1/iot/devices", response_model=Page[DeviceOut], responses=_L)
def list_devices(
    app: AppDep,
    who: Caller,
    asset_id: Annotated[str | None, Query(max_length=64, description="only this asset's devices")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Page[DeviceOut]:
    """Devices by id, on the assets the caller may see."""
    page = iot_of(app).collateral.devices_page(
        viewer=viewer(who), size=app.queries.page_size(limit), cursor=cursor, asset_id=asset_id
    )
    return Page[DeviceOut](items=[DeviceOut.model_validate(d) for d in page.items], next_cursor=page.next_cursor)


@router.get("/v1/iot/devices/{device_id}", response_model=DeviceOut, responses=_R)
def get_device(device_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """A device (never its secret), for those who may see its asset."""
    return iot_of(app).collateral.device(device_id, viewer=viewer(who))


@router.post(
    "/v1/iot/devices/{device_id}/rotate",
    response_model=DeviceSecretOut,
    responses=_W,
    dependencies=[carries_secret("the secret was rotated; rotate it again (POST /v1/iot/devices/{id}/rotate)")],
)
def rotate(device_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """Give a device a new secret (returned once); the old one stops working at once."""
    iot = iot_of(app)
    owner, _lender = _device_parties(iot, who, device_id)
    _owner_or_operator(who, owner, "rotate its devices' secrets")
    return {"device_id": device_id, "secret": iot.collateral.rotate_secret(device_id)}


@router.post("/v1/iot/devices/{device_id}/retire", status_code=204, responses=_W)
def retire(device_id: str, app: AppDep, who: Caller) -> None:
    """Retire a device: its messages are refused from now on."""
    iot = iot_of(app)
    owner, _lender = _device_parties(iot, who, device_id)
    _owner_or_operator(who, owner, "retire its devices")
    iot.collateral.retire_device(device_id)


# --- prices, loans, pledges, repayments, releases --------------------------------------------------------


OPERATOR_FEED = "operator"


@router.post("/v1/iot/prices", responses=_W)
def set_price(body: PriceIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """A commodity price into the caller's own price book: a bank's values only the loans it granted, the
    operator's feed values unpledged assets and the loans of every bank without a price of its own. No one
    writes into another's book (403 ``price_book_not_yours``)."""
    require_role(who, Role.BANK, Role.OPERATOR, what="set commodity prices")
    own = who.org_id if who.role is Role.BANK else OPERATOR_FEED
    if body.book is not None and body.book != own:
        raise Forbidden(
            f"you keep only your own price book ({own!r}); another's prices are theirs to set",
            code="price_book_not_yours",
            field="book",
        )
    book = who.org_id if who.role is Role.BANK else None
    events = iot_of(app).collateral.set_price(body.commodity, body.price_minor_per_kg, source=who.org_id, book=book)
    return {"book": own, "loan_events": [e.to_json() for e in events]}


@router.post("/v1/iot/loans", status_code=201, response_model=LoanOut, responses=_W)
def create_loan(body: LoanIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """A bank proposes a loan to a borrower, signing its terms. It binds nothing (counts no collateral,
    restricts no financing) until the borrower accepts it."""
    require_role(who, Role.BANK, what="grant collateral loans")
    c = iot_of(app).collateral
    c.create_loan(body.loan_id, body.borrower, who.org_id, body.outstanding_minor, body.bands_key)
    return c.loan(body.loan_id)


@router.get("/v1/iot/loans", response_model=Page[LoanOut], responses=_L)
def list_loans(app: AppDep, who: Caller, limit: Limit = None, cursor: Cursor = None) -> Page[LoanOut]:
    """Loans by id that the caller borrowed or granted (every loan for operator and auditor)."""
    page = iot_of(app).collateral.loans_page(viewer=viewer(who), size=app.queries.page_size(limit), cursor=cursor)
    return Page[LoanOut](items=[LoanOut.model_validate(x) for x in page.items], next_cursor=page.next_cursor)


@router.get("/v1/iot/loans/{loan_id}", response_model=LoanOut, responses=_R)
def get_loan(loan_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """A loan with its pledged assets, LTV band and band history, for its borrower, lender and overseers."""
    return iot_of(app).collateral.loan(loan_id, viewer=viewer(who))


def _lent_loan(iot: IotSystem, who: Principal, loan_id: str, what: str, *, operator_too: bool = False) -> None:
    """The loan must be visible (404) and the caller its lender (or the operator when allowed): 403."""
    loan = iot.collateral.loan(loan_id, viewer=viewer(who))
    if loan["lender"] != who.org_id and not (operator_too and who.role is Role.OPERATOR):
        raise _not_allowed(f"only the lender{' or the operator' if operator_too else ''} may {what}")


def _borrowed_loan(iot: IotSystem, who: Principal, loan_id: str, what: str) -> None:
    """The loan must be visible (404) and the caller its borrower (403)."""
    loan = iot.collateral.loan(loan_id, viewer=viewer(who))
    if loan["borrower"] != who.org_id:
        raise _not_allowed(f"only the borrower may {what}")


@router.post("/v1/iot/loans/{loan_id}/accept", response_model=LoanOut, responses=_W)
def accept_loan(loan_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """The borrower accepts a proposed loan and signs its terms (the lender signed them when proposing)."""
    iot = iot_of(app)
    _borrowed_loan(iot, who, loan_id, "accept this loan")
    iot.collateral.accept_loan(loan_id, who.org_id)
    return iot.collateral.loan(loan_id)


@router.post("/v1/iot/loans/{loan_id}/refuse", response_model=LoanOut, responses=_W)
def refuse_loan(loan_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """The borrower refuses a proposed loan: it stays on record as refused and never binds."""
    iot = iot_of(app)
    _borrowed_loan(iot, who, loan_id, "refuse this loan")
    iot.collateral.refuse_loan(loan_id, who.org_id)
    return iot.collateral.loan(loan_id)


@router.post("/v1/iot/loans/{loan_id}/pledges", response_model=LoanOut, responses=_W)
def pledge(loan_id: str, body: PledgeIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """The lender proposes that an asset the borrower named secure its loan, signing the terms. The proposal
    is recorded the same way whatever the asset id (the answer reveals nothing about which assets exist);
    only the asset's owner, accepting it, makes it a pledge (one asset secures one loan)."""
    iot = iot_of(app)
    c = iot.collateral
    _lent_loan(iot, who, loan_id, "propose pledges for this loan")
    c.propose_pledge(loan_id, body.asset_id, body.haircut_bps, who.org_id)
    return c.loan(loan_id)


@router.post("/v1/iot/loans/{loan_id}/pledges/{asset_id}/accept", response_model=LoanOut, responses=_W)
def accept_pledge(loan_id: str, asset_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """The borrower accepts the proposed pledge of its own asset to its accepted loan, and signs it: the
    asset's value now counts for the loan and the lender sees the asset."""
    iot = iot_of(app)
    _borrowed_loan(iot, who, loan_id, "accept pledges to this loan")
    iot.collateral.accept_pledge(loan_id, asset_id, who.org_id)
    return iot.collateral.loan(loan_id)


@router.post("/v1/iot/loans/{loan_id}/pledges/{asset_id}/refuse", response_model=LoanOut, responses=_W)
def refuse_pledge(loan_id: str, asset_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    """The borrower refuses a proposed pledge: it stays on record as refused and binds nothing."""
    iot = iot_of(app)
    _borrowed_loan(iot, who, loan_id, "refuse pledges to this loan")
    iot.collateral.refuse_pledge(loan_id, asset_id, who.org_id)
    return iot.collateral.loan(loan_id)


@router.post("/v1/iot/loans/{loan_id}/repayments", response_model=LoanOut, responses=_W)
def repay(loan_id: str, body: RepayIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """A repayment lowers the outstanding amount (the lender or the operator records it)."""
    iot = iot_of(app)
    _lent_loan(iot, who, loan_id, "record repayments", operator_too=True)
    iot.collateral.repay(loan_id, body.amount_minor)
    return iot.collateral.loan(loan_id)


@router.post("/v1/iot/assets/{asset_id}/releases", responses=_W)
def release(asset_id: str, body: ReleaseIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """The lender lets ``quantity_kg`` leave a pledged lot: the matching weight drop raises nothing."""
    iot = iot_of(app)
    _owner, lender = _asset_parties(iot, who, asset_id)
    if who.org_id != lender:
        raise _not_allowed("only the bank the asset is pledged to may approve releases")
    return iot.collateral.approve_release(asset_id, body.quantity_kg, who.org_id)


# --- alarms ------------------------------------------------------------------------------------------------


@router.get("/v1/iot/alarms", response_model=Page[AlarmOut], responses=_L)
def alarms(
    app: AppDep,
    who: Caller,
    asset_id: Annotated[str | None, Query(max_length=64, description="only this asset's alarms")] = None,
    active: Annotated[bool, Query(description="only active (not yet cleared) alarms")] = False,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Page[AlarmOut]:
    """Alarms newest first, on the assets the caller may see."""
    page = iot_of(app).collateral.alarms_page(
        viewer=viewer(who), size=app.queries.page_size(limit), cursor=cursor, asset_id=asset_id, active_only=active
    )
    return Page[AlarmOut](items=[AlarmOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor)


@router.post("/v1/iot/alarms/{alarm_id}/ack", response_model=AlarmOut, responses=_W)
def acknowledge(alarm_id: str, body: AckIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """Acknowledge an alarm: the bank the asset is pledged to, or the operator; who and when are recorded."""
    iot = iot_of(app)
    alarm = iot.collateral.alarm(alarm_id, viewer=viewer(who))
    if who.role is not Role.OPERATOR:
        parties = iot.collateral.asset_owner_and_lender(alarm["asset_id"])
        if parties is None or who.org_id != parties[1]:
            raise _not_allowed("only the bank the asset is pledged to, or the operator, may acknowledge its alarms")
    return iot.collateral.acknowledge(alarm_id, f"{who.org_id}:{body.user}")


@router.post("/v1/iot/alarms/{alarm_id}/clear", response_model=AlarmOut, responses=_W)
def clear_alarm(alarm_id: str, body: ClearIn, app: AppDep, who: Caller) -> dict[str, Any]:
    """Clear an active alarm by hand (a false positive, or dealt with on site), saying why: the bank the
    asset is pledged to, or the operator. It is acknowledged at the same time if it was not."""
    iot = iot_of(app)
    alarm = iot.collateral.alarm(alarm_id, viewer=viewer(who))
    if who.role is not Role.OPERATOR:
        parties = iot.collateral.asset_owner_and_lender(alarm["asset_id"])
        if parties is None or who.org_id != parties[1]:
            raise _not_allowed("only the bank the asset is pledged to, or the operator, may clear its alarms")
    return iot.collateral.clear(alarm_id, f"{who.org_id}:{body.user}", body.note)


@router.get(
    "/v1/iot/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}, **_R},
)
async def stream(request: Request, app: AppDep, who: Caller) -> StreamingResponse:
    """Server-sent events: alarm and loan-band events concerning the caller (everything for overseers)."""
    broadcaster = iot_of(app).broadcaster
    sub = broadcaster.subscribe(None if is_overseer(who) else [who.org_id])

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while True:
                with anyio.move_on_after(15) as scope:
                    event = await sub.queue.get()
                if scope.cancelled_caught:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {event.get('event', 'message')}\ndata: {json.dumps(event, sort_keys=True)}\n\n"
                if event.get("event") == "overflow":
                    return
        finally:
            broadcaster.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream")
