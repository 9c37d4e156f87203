"""Core-enterprise pages: payables awaiting confirmation (maker-checker approval by the signed-in approver),
certificates issued, liability against the credit line, and how far the credit reaches: the network
penetration by tier and a Sankey of value flowing from the issuer through the tiers.

Every handler calls the same services and visibility rules as the JSON API, as the signed-in user's
organisation; approving a payable is done by the signed-in user in person (its session is the person), under
the same rules as ``POST /v1/payables/{id}/approvals`` (`ConfirmationService.approve`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from creditflow.bootstrap import App
from creditflow.http.pages.common import HOME, NAV, app_of, check_csrf, done, render, role_pages
from creditflow.http.pages.supplier import names_of, page_error, page_limit, pager
from creditflow.http.security import credential_of
from creditflow.http.templating import yuan
from creditflow.http.visibility import visible_certificate, visible_payable
from creditflow.identity.roles import UserRole
from creditflow.identity.sessions import WebUser
from creditflow.kernel.errors import DomainError, Forbidden, NotFound
from creditflow.ledger.model.parties import Role

router = APIRouter(include_in_schema=False)
Core = Annotated[WebUser, role_pages(Role.CORE_ENTERPRISE)]

HOME[Role.CORE_ENTERPRISE] = "/ui/core"
NAV[Role.CORE_ENTERPRISE].extend(
    [
        ("/ui/core", "Overview"),
        ("/ui/core/payables", "Payables to confirm"),
        ("/ui/core/certificates", "Certificates issued"),
        ("/ui/core/network", "Credit reach"),
    ]
)

# A Sankey with hundreds of suppliers per tier is unreadable: the largest few of each tier are drawn
# by name, the rest of that tier as one node.
SANKEY_HOLDERS_PER_TIER = 12
GAUGE_WIDTH = 480


def _not_found(request: Request, error: DomainError) -> HTMLResponse:
    return render(request, "core/not_found.html", status=error.status, message=error.message)


def _credit_line(app: App, org_id: str) -> dict[str, int] | None:
    try:
        line = app.confirmation.credit_line(org_id)
    except NotFound:
        return None
    limit = line["limit_minor"]
    used = min(line["used_minor"], limit)
    # Widths of the gauge in whole pixels, from integers (no float near money).
    line["used_width"] = used * GAUGE_WIDTH // limit if limit else GAUGE_WIDTH
    line["used_permille"] = line["used_minor"] * 1000 // limit if limit else 1000
    return line


# --- overview ------------------------------------------------------------------------------------


@router.get("/ui/core")
def overview(request: Request, user: Core) -> HTMLResponse:
    """Outstanding liability against the credit line, and the value circulating at each tier."""
    app = app_of(request)
    return render(
        request,
        "core/overview.html",
        liability=app.queries.liability(user.org_id),
        line=_credit_line(app, user.org_id),
        tiers=app.queries.circulation_by_tier(user.org_id),
        gauge_width=GAUGE_WIDTH,
    )


# --- payables awaiting confirmation ------------------------------------------------------------------


def _payables_page(request: Request, user: WebUser, *, status: int = 200, **context: Any) -> HTMLResponse:
    app = app_of(request)
    cursor = request.query_params.get("cursor")
    try:
        page = app.payables.awaiting_confirmation(user.org_id, cursor=cursor, limit=page_limit(request))
    except DomainError as error:
        return render(request, "core/payables.html", status=error.status, payables=[], **page_error(error))
    return render(
        request,
        "core/payables.html",
        status=status,
        payables=page.items,
        **pager(request, page.next_cursor),
        names=names_of(app),
        required=app.settings.approvals_required,
        may_approve=UserRole.APPROVER in user.roles,
        **context,
    )


@router.get("/ui/core/payables")
def payables(request: Request, user: Core) -> HTMLResponse:
    return _payables_page(request, user)


@router.post("/ui/core/payables/{payable_id}/approve", response_model=None)
def approve(
    request: Request, payable_id: str, user: Core, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """The signed-in user approves in person, under the API's rules: the approver role, never the payable's
    maker, never twice; the `approvals_required`-th distinct approver confirms (maker-checker)."""
    check_csrf(user, csrf_token)
    app = app_of(request)
    try:
        payable = visible_payable(app, user.principal, payable_id)
        if payable.debtor != user.org_id:
            raise Forbidden("only the debtor confirms its payables", code="not_debtor_user")
        result = app.confirmation.approve(payable.id, user.principal, credential=credential_of(request, user.principal))
    except DomainError as error:
        return _payables_page(request, user, status=error.status, **page_error(error))
    if result["status"] == "confirmed":
        message = f"Payable {payable_id} is confirmed: certificates may now be issued on it."
    else:
        message = (
            f"You approved payable {payable_id} ({result['approvals']} of {result['required']}); "
            "another approver must approve to confirm it."
        )
    return done("/ui/core/payables", message)


# --- certificates issued -----------------------------------------------------------------------------


@router.get("/ui/core/certificates")
def certificates(request: Request, user: Core) -> HTMLResponse:
    app = app_of(request)
    cursor = request.query_params.get("cursor")
    try:
        page = app.queries.certificates_by_issuer(user.org_id, cursor=cursor, limit=page_limit(request))
    except DomainError as error:
        return render(request, "core/certificates.html", status=error.status, certs=[], **page_error(error))
    payable_of = {}
    for cert in page.items:
        payable_of[cert.id] = app.payables.get_payable(cert.payable_id)
    return render(
        request,
        "core/certificates.html",
        certs=page.items,
        payable_of=payable_of,
        **pager(request, page.next_cursor),
        names=names_of(app),
    )


@router.get("/ui/core/certificates/{certificate_id}")
def certificate(request: Request, certificate_id: str, user: Core) -> HTMLResponse:
    """Every piece of one certificate: who holds what, at which tier (the issuer sees its whole tree)."""
    app = app_of(request)
    try:
        cert = visible_certificate(app, user.principal, certificate_id)
        if cert.issuer != user.org_id:
            raise Forbidden(
                "only the issuer, the operator and the auditor see a certificate's whole tree",
                code="role_not_allowed",
            )
        tree = app.queries.tree(cert.id)
    except DomainError as error:
        return _not_found(request, error)
    return render(request, "core/certificate.html", cert=cert, tree=tree, names=names_of(app))


# --- how far the credit reaches ----------------------------------------------------------------------


def sankey_data(flows: dict[str, Any], names: dict[str, str], issuer: str) -> dict[str, Any]:
    """Plotly Sankey arrays from `NetworkService.flows`: a node per holder and tier (the largest
    `SANKEY_HOLDERS_PER_TIER` of each tier by name, the rest of the tier as one node), links in fen with
    their amounts in yuan for the hover text."""
    nodes = flows["nodes"]
    inflow: dict[int, int] = defaultdict(int)
    for link in flows["links"]:
        inflow[link["target"]] += link["amount_minor"]
    by_tier: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        if n["org_id"] == issuer and n["tier"] == 0:
            continue
        by_tier[(n["tier"], "bank" if n["role"] == Role.BANK.value else "supplier")].append(i)
    key_of: dict[int, tuple[Any, ...]] = {}
    for i, n in enumerate(nodes):
        if n["tier"] == 0 and n["org_id"] == issuer:
            key_of[i] = ("issuer",)
    for (tier, kind), members in by_tier.items():
        members.sort(key=lambda i: (-inflow[i], nodes[i]["org_id"]))
        for rank, i in enumerate(members):
            if rank < SANKEY_HOLDERS_PER_TIER:
                key_of[i] = ("org", tier, nodes[i]["org_id"])
            else:
                key_of[i] = ("rest", tier, kind, len(members) - SANKEY_HOLDERS_PER_TIER)
    merged: dict[tuple[tuple[Any, ...], tuple[Any, ...]], int] = defaultdict(int)
    for link in flows["links"]:
        merged[(key_of[link["source"]], key_of[link["target"]])] += link["amount_minor"]
    keys = sorted({k for pair in merged for k in pair}, key=lambda k: (k[1] if len(k) > 1 else -1, k))
    index = {k: i for i, k in enumerate(keys)}
    labels: list[str] = []
    colors: list[str] = []
    node_in: dict[tuple[Any, ...], int] = defaultdict(int)
    for (_a, b), v in merged.items():
        node_in[b] += v
    issued = sum(v for (a, _b), v in merged.items() if a == ("issuer",))
    for k in keys:
        if k[0] == "issuer":
            labels.append(f"{names.get(issuer, issuer)} (issuer)")
            colors.append("#14213d")
        elif k[0] == "org":
            tier, org = k[1], k[2]
            bank = any(n["org_id"] == org and n["role"] == Role.BANK.value for n in nodes)
            labels.append(f"Tier {tier} · {names.get(org, org)}{' (bank)' if bank else ''}")
            colors.append("#b26a00" if bank else "#1f5fbf")
        else:
            tier, kind, count = k[1], k[2], k[3]
            labels.append(f"Tier {tier} · {count} other {kind}s")
            colors.append("#8a94a8")
    node_yuan = [yuan(issued if k[0] == "issuer" else node_in[k]) for k in keys]
    links = sorted(merged.items(), key=lambda kv: (index[kv[0][0]], index[kv[0][1]]))
    return {
        "labels": labels,
        "colors": colors,
        "node_yuan": node_yuan,
        "source": [index[a] for (a, _b), _v in links],
        "target": [index[b] for (_a, b), _v in links],
        "value_minor": [v for _k, v in links],
        "link_yuan": [yuan(v) for _k, v in links],
    }


@router.get("/ui/core/network")
def network(request: Request, user: Core) -> HTMLResponse:
    """Penetration by tier (value reached, suppliers reached, share financed, days to cash) and the
    Sankey of value flowing from the issuer down the tiers."""
    app = app_of(request)
    names = names_of(app)
    penetration = app.network.penetration(user.org_id)
    flows = app.network.flows(user.org_id)
    return render(
        request,
        "core/network.html",
        penetration=penetration,
        sankey=sankey_data(flows, names, user.org_id),
        flow_count=len(flows["links"]),
    )
