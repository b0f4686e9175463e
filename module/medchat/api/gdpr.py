"""/api/auth/profile/export and DELETE /api/auth/profile: a person's data out, and their erasure."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import BINARY, Content, read_json, read_query, route
from medchat.api.schemas.queries import ExportQuery
from medchat.api.schemas.requests import EraseAccountBody
from medchat.api.schemas.responses import obj
from medchat.handlers.gdpr import Gdpr


class GdprServlets:
    def __init__(self, api: ModuleApi, gdpr: Gdpr):
        self._api = api
        self._gdpr = gdpr

    def register_routes(self, resource: JsonResource) -> None:
        zip_file = Content({"application/zip": BINARY})
        route(resource, "GET", "/api/auth/profile/export", self.export, query=ExportQuery, responses={200: zip_file})
        erased = obj({"erased": {"const": True}}, title="Erased")
        route(resource, "DELETE", "/api/auth/profile", self.erase, body=EraseAccountBody, responses={200: erased})

    async def export(self, request: Any) -> None:
        """The caller's data as one zip archive (GDPR access and portability).

        Profile, verification history, contacts, contact permissions, notifications and the
        messages they sent (through Synapse's data export). Answers with the archive itself, not
        JSON, so it returns nothing to the router."""
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        await self._gdpr.export(caller, read_query(request, ExportQuery).user_id, request)

    async def erase(self, request: Any) -> tuple[int, Any]:
        """Erase the caller's account (GDPR erasure), confirmed with their password.

        Synapse deactivates and erases the account; the module deletes its rows for the user and
        pseudonymises them in the audit trail."""
        user_id = (await self._api.get_user_by_req(request)).user.to_string()
        password = read_json(request, EraseAccountBody).password
        await self._gdpr.erase_own_account(user_id, password, request)
        return 200, {"erased": True}
