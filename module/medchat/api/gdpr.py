"""/api/auth/profile/export and DELETE /api/auth/profile: a person's data out, and their erasure."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import query_string, read_json, route
from medchat.gdpr import Gdpr
from medchat.models import ERASE_ACCOUNT_BODY


class GdprServlets:
    def __init__(self, api: ModuleApi, gdpr: Gdpr):
        self._api = api
        self._gdpr = gdpr

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "GET", "/api/auth/profile/export", self.export)
        route(resource, "DELETE", "/api/auth/profile", self.erase)

    async def export(self, request: Any) -> None:
        """Answers with the zip archive itself (no JSON), so returns nothing to the router."""
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        await self._gdpr.export(caller, query_string(request, "user_id", max_length=255), request)

    async def erase(self, request: Any) -> tuple[int, Any]:
        user_id = (await self._api.get_user_by_req(request)).user.to_string()
        body = read_json(request, ERASE_ACCOUNT_BODY)
        await self._gdpr.erase_own_account(user_id, body["password"], request)
        return 200, {"erased": True}
