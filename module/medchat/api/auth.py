"""/api/auth/*: registration, login, logout, token refresh, password reset, own profile."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.accounts import Accounts
from medchat.api.http import read_json, route
from medchat.models import (
    FORGOT_PASSWORD_BODY,
    LOGIN_BODY,
    PROFILE_UPDATE_BODY,
    REFRESH_BODY,
    REGISTER_BODY,
    RESET_PASSWORD_BODY,
)

_RESET_SENT = {"message": "If that address belongs to an account, a reset link is on its way."}


class AuthServlets:
    def __init__(self, api: ModuleApi, accounts: Accounts):
        self._api = api
        self._accounts = accounts

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "POST", "/api/auth/register", self.register)
        route(resource, "POST", "/api/auth/login", self.login)
        route(resource, "POST", "/api/auth/logout", self.logout)
        route(resource, "POST", "/api/auth/refresh", self.refresh)
        route(resource, "GET", "/api/auth/profile", self.get_profile)
        route(resource, "PUT", "/api/auth/profile", self.put_profile)
        route(resource, "POST", "/api/auth/forgot-password", self.forgot_password)
        route(resource, "POST", "/api/auth/reset-password", self.reset_password)

    async def register(self, request: Any) -> tuple[int, Any]:
        return 201, await self._accounts.register(read_json(request, REGISTER_BODY), request)

    async def login(self, request: Any) -> tuple[int, Any]:
        return 200, await self._accounts.login(read_json(request, LOGIN_BODY), request)

    async def logout(self, request: Any) -> tuple[int, Any]:
        await self._accounts.logout(request)
        return 200, {}

    async def refresh(self, request: Any) -> tuple[int, Any]:
        body = read_json(request, REFRESH_BODY)
        return 200, await self._accounts.refresh(body["refresh_token"])

    async def get_profile(self, request: Any) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._accounts.view(requester.user.to_string(), show_email=True)

    async def put_profile(self, request: Any) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, PROFILE_UPDATE_BODY)
        return 200, await self._accounts.update_own_profile(requester.user.to_string(), body)

    async def forgot_password(self, request: Any) -> tuple[int, Any]:
        body = read_json(request, FORGOT_PASSWORD_BODY)
        await self._accounts.forgot_password(body["email"], request)
        return 202, _RESET_SENT

    async def reset_password(self, request: Any) -> tuple[int, Any]:
        await self._accounts.reset_password(read_json(request, RESET_PASSWORD_BODY))
        return 200, {"message": "Password changed; every session of the account has been logged out."}
