"""Every /api route (the route table, medchat.api.openapi.all_routes): it checks the token, and
bad ids or bodies get a 4xx JSON error, never a 500."""

from __future__ import annotations

import re

import pytest

from harness import Api
from medchat.api.openapi import all_routes

# Endpoints that work without an access token (kept by hand: the routes' `public=` must agree).
PUBLIC = {
    ("GET", "/api/health"),
    ("POST", "/api/auth/register"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh"),
    ("POST", "/api/auth/forgot-password"),
    ("POST", "/api/auth/reset-password"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/api/docs/{asset}"),
}
_PARAM = re.compile(r"\{(\w+)\}")


def _fill(pattern: str) -> str:
    """A concrete path with made-up ids of the right kind for each `{name}` segment."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if "room" in name:
            return "%21nope%3Amedchat.test"
        if name in ("message_id", "event_id", "notification_id"):
            return "%24nope"
        if "user" in name or name in ("id", "target"):
            return "%40nobody%3Amedchat.test"
        return "nope"

    return _PARAM.sub(value, pattern)


ROUTES = [(r.method, r.path) for r in all_routes()]


def test_the_surface_is_found() -> None:
    assert len(ROUTES) >= 60
    assert ("POST", "/api/auth/register") in ROUTES and ("GET", "/api/chat/notifications") in ROUTES
    assert {(r.method, r.path) for r in all_routes() if r.public} == PUBLIC


@pytest.mark.parametrize(("method", "pattern"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_checks_the_token_and_never_fails_with_a_500(api: Api, method: str, pattern: str) -> None:
    path = _fill(pattern)
    anonymous = api.call(method, path, data=b"{}")
    if (method, pattern) not in PUBLIC:
        assert anonymous.status_code == 401, f"{method} {path}: {anonymous.status_code} {anonymous.text}"
        assert anonymous.json()["errcode"] == "M_MISSING_TOKEN"
    # Logging out would spend the shared session the other routes are tried with.
    user = api.register()["access_token"] if (method, pattern) == ("POST", "/api/auth/logout") else _user(api)
    for body in (b"{}", b"{not json", b'{"unexpected": [1, {"deep": null}]}', b"[]"):
        response = api.call(method, path, token=user, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code < 500, f"{method} {path} {body!r}: {response.status_code} {response.text}"
        if response.status_code >= 400:
            error = response.json()
            assert error["errcode"].startswith(("M_", "ORG_MEDCHAT_")) and error["error"], error


_token: list[str] = []


def _user(api: Api) -> str:
    """One registered user for the whole parametrised test (registration is the slow part); it
    must stay logged in, or the routes after would only be tried as far as the token check."""
    if not _token:
        _token.append(api.register()["access_token"])
    assert api.call("GET", "/_matrix/client/v3/account/whoami", token=_token[0]).status_code == 200
    return _token[0]
