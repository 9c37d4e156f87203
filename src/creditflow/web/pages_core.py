"""Core-enterprise pages: payables awaiting confirmation, certificates issued, liability against the
credit line, and the Sankey of value flowing through the tiers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from creditflow.domain.parties import Role
from creditflow.services.sessions import WebUser

from .pages import HOME, NAV, app_of, render, role_pages

router = APIRouter(include_in_schema=False)
Core = Annotated[WebUser, role_pages(Role.CORE_ENTERPRISE)]

HOME[Role.CORE_ENTERPRISE] = "/ui/core"
NAV[Role.CORE_ENTERPRISE].append(("/ui/core", "Overview"))


@router.get("/ui/core")
def overview(request: Request, user: Core) -> HTMLResponse:
    liability = app_of(request).queries.liability(user.org_id)
    return render(request, "core/overview.html", liability=liability)
