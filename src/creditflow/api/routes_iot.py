"""IoT-monitored collateral over HTTP: telemetry batches (the same pipeline as MQTT), assets, devices,
prices, loans, releases, alarms, a live server-sent-events stream and Prometheus metrics.

Telemetry authenticates by each message's HMAC (the device's secret), not by API key: a device is not an
organisation. Everything else takes an API key. Banks (lenders) approve releases and set prices with the
operator; owners register their assets and devices.
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
from creditflow.domain.collateral import AssetKind, DeviceKind
from creditflow.domain.errors import LimitExceeded, Unavailable
from creditflow.domain.parties import Role
from creditflow.services.iot_registry import AssetSpec
from creditflow.services.iot_system import IotSystem

from .common import error_responses
from .security import AppDep, Caller, is_overseer, require_role

router = APIRouter(tags=["collateral"])
_W = error_responses(401, 403, 404, 409, 422)
_R = error_responses(401, 403, 404)


def iot_of(app: App) -> IotSystem:
    """The wired IoT capability (``App.iot``)."""
    iot = getattr(app, "iot", None)
    if not isinstance(iot, IotSystem):
        raise Unavailable("IoT collateral is not enabled on this server", code="iot_disabled")
    return iot


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TelemetryBatchIn(_Body):
    messages: list[dict[str, Any]] = Field(min_length=1, description="{device_id, ts, seq, values, sig} each")


class AssetIn(_Body):
    asset_id: str = Field(min_length=1, max_length=64)
    kind: AssetKind
    name: str = Field(min_length=1, max_length=200)
    commodity: str | None = None
    quantity_kg: StrictFloat | StrictInt | None = None
    receipt_no: str | None = None
    serial_no: str | None = None
    geofence: list[list[float]] | None = None
    appraised_minor: StrictInt | None = None
    area_m2: StrictInt | None = None
    crop: str | None = None
    expected_yield_kg: StrictFloat | StrictInt | None = None


class DeviceIn(_Body):
    device_id: str = Field(min_length=1, max_length=64)
    asset_id: str = Field(min_length=1, max_length=64)
    kind: DeviceKind


class PriceIn(_Body):
    commodity: str = Field(min_length=1, max_length=32)
    price_minor_per_kg: Annotated[StrictInt, Field(ge=0)]


class LoanIn(_Body):
    loan_id: str = Field(min_length=1, max_length=64)
    borrower: str = Field(min_length=1, max_length=64)
    outstanding_minor: StrictInt
    bands_key: str = "default"


class PledgeIn(_Body):
    asset_id: str = Field(min_length=1, max_length=64)
    haircut_bps: StrictInt


class RepayIn(_Body):
    amount_minor: StrictInt


class ReleaseIn(_Body):
    quantity_kg: StrictFloat | StrictInt


class AckIn(_Body):
    user: str = Field(min_length=1, max_length=64)


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


@router.post("/v1/iot/assets", status_code=201, responses=_W)
def register_asset(body: AssetIn, app: AppDep, who: Caller) -> dict[str, Any]:
    require_role(who, Role.SUPPLIER, Role.CORE_ENTERPRISE, Role.OPERATOR, what="register collateral")
    spec = AssetSpec(owner=who.org_id, **body.model_dump())
    return iot_of(app).collateral.register_asset(spec)


@router.get("/v1/iot/assets/{asset_id}", responses=_R)
def get_asset(asset_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    return iot_of(app).collateral.asset(asset_id)


@router.post("/v1/iot/devices", status_code=201, responses=_W)
def register_device(body: DeviceIn, app: AppDep, who: Caller) -> dict[str, Any]:
    c = iot_of(app).collateral
    asset = c.asset(body.asset_id)
    if asset["owner"] != who.org_id and who.role is not Role.OPERATOR:
        require_role(who, Role.OPERATOR, what="bind devices to another organisation's asset")
    secret = c.register_device(body.device_id, body.asset_id, body.kind)
    return {"device_id": body.device_id, "secret": secret}


@router.post("/v1/iot/devices/{device_id}/rotate", responses=_W)
def rotate(device_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    require_role(who, Role.OPERATOR, Role.SUPPLIER, Role.CORE_ENTERPRISE, what="rotate device secrets")
    return {"device_id": device_id, "secret": iot_of(app).collateral.rotate_secret(device_id)}


@router.post("/v1/iot/devices/{device_id}/retire", status_code=204, responses=_W)
def retire(device_id: str, app: AppDep, who: Caller) -> None:
    require_role(who, Role.OPERATOR, Role.SUPPLIER, Role.CORE_ENTERPRISE, what="retire devices")
    iot_of(app).collateral.retire_device(device_id)


@router.post("/v1/iot/prices", responses=_W)
def set_price(body: PriceIn, app: AppDep, who: Caller) -> dict[str, Any]:
    require_role(who, Role.BANK, Role.OPERATOR, what="set commodity prices")
    events = iot_of(app).collateral.set_price(body.commodity, body.price_minor_per_kg, source=who.org_id)
    return {"loan_events": [e.to_json() for e in events]}


@router.post("/v1/iot/loans", status_code=201, responses=_W)
def create_loan(body: LoanIn, app: AppDep, who: Caller) -> dict[str, Any]:
    require_role(who, Role.BANK, what="grant collateral loans")
    c = iot_of(app).collateral
    c.create_loan(body.loan_id, body.borrower, who.org_id, body.outstanding_minor, body.bands_key)
    return c.loan(body.loan_id)


@router.get("/v1/iot/loans/{loan_id}", responses=_R)
def get_loan(loan_id: str, app: AppDep, who: Caller) -> dict[str, Any]:
    loan = iot_of(app).collateral.loan(loan_id)
    if who.org_id not in (loan["borrower"], loan["lender"]) and not is_overseer(who):
        from creditflow.domain.errors import NotFound

        raise NotFound(f"no loan {loan_id}", code="loan_not_found")
    return loan


@router.post("/v1/iot/loans/{loan_id}/pledges", responses=_W)
def pledge(loan_id: str, body: PledgeIn, app: AppDep, who: Caller) -> dict[str, Any]:
    require_role(who, Role.BANK, what="take pledges")
    c = iot_of(app).collateral
    c.pledge(body.asset_id, loan_id, body.haircut_bps)
    return c.loan(loan_id)


@router.post("/v1/iot/loans/{loan_id}/repayments", responses=_W)
def repay(loan_id: str, body: RepayIn, app: AppDep, who: Caller) -> dict[str, Any]:
    require_role(who, Role.BANK, Role.OPERATOR, what="record repayments")
    c = iot_of(app).collateral
    c.repay(loan_id, body.amount_minor)
    return c.loan(loan_id)


@router.post("/v1/iot/assets/{asset_id}/releases", responses=_W)
def release(asset_id: str, body: ReleaseIn, app: AppDep, who: Caller) -> dict[str, Any]:
    require_role(who, Role.BANK, what="approve releases")
    return iot_of(app).collateral.approve_release(asset_id, body.quantity_kg, who.org_id)


@router.get("/v1/iot/alarms", responses=_R)
def alarms(
    app: AppDep,
    who: Caller,
    asset_id: str | None = None,
    active: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return {"items": iot_of(app).collateral.alarms(asset_id=asset_id, active_only=active, limit=limit)}


@router.post("/v1/iot/alarms/{alarm_id}/ack", responses=_W)
def acknowledge(alarm_id: str, body: AckIn, app: AppDep, who: Caller) -> dict[str, Any]:
    require_role(who, Role.BANK, Role.OPERATOR, what="acknowledge alarms")
    return iot_of(app).collateral.acknowledge(alarm_id, f"{who.org_id}:{body.user}")


@router.get("/v1/iot/stream", response_class=StreamingResponse, responses=_R)
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
