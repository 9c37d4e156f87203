"""Helpers for the web-page tests: users with passwords, signing in through the form."""

from __future__ import annotations

import re
from collections.abc import Iterable

from fastapi.testclient import TestClient

from creditflow.bootstrap import App

PASSWORD = "correct horse battery 9"


def add_user(
    app: App,
    org_id: str,
    user_id: str,
    password: str = PASSWORD,
    roles: Iterable[str] = ("maker", "approver"),
) -> None:
    app.people.add(org_id, user_id, user_id.replace(".", " ").title(), list(roles))
    app.sessions.set_password(user_id, password)


def sign_in_form_token(client: TestClient) -> str:
    page = client.get("/ui/sign-in")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def sign_in(client: TestClient, user_id: str, password: str = PASSWORD) -> str:
    """Sign in through the form; return the session's CSRF token (from the page's meta tag)."""
    token = sign_in_form_token(client)
    response = client.post(
        "/ui/sign-in", data={"user_id": user_id, "password": password, "csrf_token": token, "next": "/ui"}
    )
    assert response.status_code == 200, response.text  # redirected to the role's home page
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', response.text)
    assert found, response.text
    return found.group(1)
