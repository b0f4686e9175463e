"""/api/auth/profile/export and DELETE /api/auth/profile: a person's data out, and their erasure."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import BINARY, Content, query_string, read_json_dict, route, text_query
from medchat.api.schemas.responses import obj
from medchat.handlers.gdpr import Gdpr
from medchat.models import ERASE_ACCOUNT_BODY


class GdprServlets:
    def __init__(self, api: ModuleApi, gdpr: Gdpr):
        self._api = api
        self._gdpr = gdpr

    def register_routes(self, resource: JsonResource) -> None:
        subject = text_query("user_id", "whose data (server admins only; default: the caller)", max_length=255)
        zip_file = Content({"application/zip": BINARY})
        route(resource, "GET", "/api/auth/profile/export", self.export, query=(subject,), responses={200: zip_file})
        erased = obj({"erased": {"const": True}}, title="Erased")
        route(resource, "DELETE", "/api/auth/profile", self.erase, body=ERASE_ACCOUNT_BODY, responses={200: erased})

    async def export(self, request: Any) -> None:
        """The caller's data as one zip archive (GDPR access and portability).

        Profile, verification history, contacts, contact permissions, notifications and the
        messages they sent (through Synapse's data export). Answers with the archive itself, not
        JSON, so it returns nothing to the router."""
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        await self._gdpr.export(caller, query_string(request, "user_id", max_length=255), request)

    async def erase(self, request: Any) -> tuple[int, Any]:
        """Erase the caller's account (GDPR erasure), confirmed with their password.

        Synapse deactivates and erases the account; the module deletes its rows for the user and
        pseudonymises them in the audit trail."""
        user_id = (await self._api.get_user_by_req(request)).user.to_string()
        body = read_json_dict(request)
        await self._gdpr.erase_own_account(user_id, body["password"], request)
        return 200, {"erased": True}
