"""/api/auth/*: registration, login, logout, token refresh, password reset, own profile."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import read_json, route
from medchat.api.schemas.requests import (
    ForgotPasswordBody,
    LoginBody,
    ProfileUpdateBody,
    RefreshBody,
    RegisterBody,
    ResetPasswordBody,
)
from medchat.api.schemas.responses import CHAT_USER, EMPTY, MESSAGE_TEXT, REFRESHED, SESSION
from medchat.handlers.accounts import Accounts

_RESET_SENT = {"message": "If that address belongs to an account, a reset link is on its way."}


class AuthServlets:
    def __init__(self, api: ModuleApi, accounts: Accounts):
        self._api = api
        self._accounts = accounts

    def register_routes(self, resource: JsonResource) -> None:
        route(
            resource,
            "POST",
            "/api/auth/register",
            self.register,
            public=True,
            body=RegisterBody,
            responses={201: SESSION},
        )
        route(resource, "POST", "/api/auth/login", self.login, public=True, body=LoginBody, responses={200: SESSION})
        route(resource, "POST", "/api/auth/logout", self.logout, responses={200: EMPTY})
        route(
            resource,
            "POST",
            "/api/auth/refresh",
            self.refresh,
            public=True,
            body=RefreshBody,
            responses={200: REFRESHED},
        )
        route(resource, "GET", "/api/auth/profile", self.get_profile, responses={200: CHAT_USER})
        route(
            resource, "PUT", "/api/auth/profile", self.put_profile, body=ProfileUpdateBody, responses={200: CHAT_USER}
        )
        route(
            resource,
            "POST",
            "/api/auth/forgot-password",
            self.forgot_password,
            public=True,
            body=ForgotPasswordBody,
            responses={202: MESSAGE_TEXT},
        )
        route(
            resource,
            "POST",
            "/api/auth/reset-password",
            self.reset_password,
            public=True,
            body=ResetPasswordBody,
            responses={200: MESSAGE_TEXT},
        )

    async def register(self, request: Any) -> tuple[int, Any]:
        """Creates an account (a Matrix user plus the medical profile) and logs it in.

        409 `M_USER_IN_USE` / `M_THREEPID_IN_USE`; 400 for an unknown role or a password that fails
        Synapse's policy. A refused registration writes nothing.
        """
        return 201, await self._accounts.register(read_json(request, RegisterBody), request)

    async def login(self, request: Any) -> tuple[int, Any]:
        """Logs in with a username or an e-mail address (Synapse's login: rate limits, locks).

        Bad credentials are 403 `M_FORBIDDEN`.
        """
        return 200, await self._accounts.login(read_json(request, LoginBody), request)

    async def logout(self, request: Any) -> tuple[int, Any]:
        """Ends the calling session (deletes its device, as a Matrix logout does)."""
        await self._accounts.logout(request)
        return 200, {}

    async def refresh(self, request: Any) -> tuple[int, Any]:
        """Swaps a refresh token for a new token pair; the old refresh token is spent once the new pair is used."""
        return 200, await self._accounts.refresh(read_json(request, RefreshBody).refresh_token)

    async def get_profile(self, request: Any) -> tuple[int, Any]:
        """The caller's ChatUser, with their e-mail address."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._accounts.view(requester.user.to_string(), show_email=True)

    async def put_profile(self, request: Any) -> tuple[int, Any]:
        """Changes the caller's profile; `full_name` and `profile_image` go to the Matrix profile."""
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, ProfileUpdateBody)
        return 200, await self._accounts.update_own_profile(requester.user.to_string(), body)

    async def forgot_password(self, request: Any) -> tuple[int, Any]:
        """Mails a single-use password-reset link if the address is registered (same answer either way)."""
        await self._accounts.forgot_password(read_json(request, ForgotPasswordBody).email, request)
        return 202, _RESET_SENT

    async def reset_password(self, request: Any) -> tuple[int, Any]:
        """Sets a new password from the mailed link's parameters and logs out every session."""
        await self._accounts.reset_password(read_json(request, ResetPasswordBody))
        return 200, {"message": "Password changed; every session of the account has been logged out."}
