"""All HTTP routes, gathered from their modules.

| module                   | paths                                                         |
| ------------------------ | ------------------------------------------------------------- |
| `routes_parties`         | /v1/me, /v1/organisations, /v1/api-keys, /v1/notifications    |
| `routes_sessions`        | /v1/users/{id}/password-reset, /v1/users/{id}/unlock, /v1/me/password |
| `routes_certificates`    | /v1/payables, /v1/certificates                                |
| `routes_pieces`          | /v1/pieces, /v1/operations                                    |
| `routes_log`             | /healthz, /v1/issuers/{org_id}/liability, /v1/circulation, /v1/log |
| `routes_tlog`            | /log/checkpoint, /log/tile/... (C2SP tlog-tiles)              |
| `routes_erp`             | /v1/erp/{kind}/import, /v1/erp/documents, /v1/erp/invoices/{id}/match |
| `routes_credit`          | /v1/credit/applications, /v1/credit/decisions/{id}            |
| `routes_iot`             | /v1/iot/... assets, devices, prices, loans, telemetry batches, alarms, SSE stream |
| `routes_users`           | /v1/users, /v1/users/{user_id}/roles (admins manage people and roles) |
| `routes_finance`         | approvals, credit lines, ratings, products, financing, accounts, clearing, network |

Endpoints are plain ``def``: FastAPI runs them in its thread pool, where they may block on the
sequencer's group commit without holding up the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter

from creditflow.http.api import certificates as routes_certificates
from creditflow.http.api import collateral as routes_iot
from creditflow.http.api import credit as routes_credit
from creditflow.http.api import financing as routes_finance
from creditflow.http.api import log as routes_log
from creditflow.http.api import parties as routes_parties
from creditflow.http.api import pieces as routes_pieces
from creditflow.http.api import sessions as routes_sessions
from creditflow.http.api import tlog as routes_tlog
from creditflow.http.api import trade as routes_erp
from creditflow.http.api import users as routes_users


def build_router() -> APIRouter:
    router = APIRouter()
    # The busiest paths (pieces and signed operations) first: routes are matched in order.
    for module in (
        routes_pieces,
        routes_log,
        routes_tlog,
        routes_parties,
        routes_sessions,
        routes_certificates,
        routes_users,
        routes_finance,
        routes_erp,
        routes_credit,
        routes_iot,
    ):
        router.include_router(module.router)
    return router
