"""Bank pages: financing requests and decisions, portfolio, collateral site plans, live alarms, LTV,
margin calls, credit decisions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from creditflow.domain.parties import Role
from creditflow.services.sessions import WebUser

from .pages import HOME, NAV, render, role_pages

router = APIRouter(include_in_schema=False)
Bank = Annotated[WebUser, role_pages(Role.BANK)]

HOME[Role.BANK] = "/ui/bank"
NAV[Role.BANK].append(("/ui/bank", "Overview"))


@router.get("/ui/bank")
def overview(request: Request, user: Bank) -> HTMLResponse:
    return render(request, "bank/overview.html")
