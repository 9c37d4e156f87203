"""Auditor (and operator) pages: the latest signed tree head, proofs checked in the browser, exports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from creditflow.domain.parties import Role
from creditflow.services.sessions import WebUser

from .pages import HOME, NAV, render, role_pages

router = APIRouter(include_in_schema=False)
Auditor = Annotated[WebUser, role_pages(Role.AUDITOR, Role.OPERATOR)]

for _role in (Role.AUDITOR, Role.OPERATOR):
    HOME[_role] = "/ui/audit"
    NAV[_role].append(("/ui/audit", "Log"))


@router.get("/ui/audit")
def log_page(request: Request, user: Auditor) -> HTMLResponse:
    return render(request, "auditor/log.html")
