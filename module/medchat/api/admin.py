"""/api/admin/audit: the audit trail for server admins, and its verification."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import read_query, route
from medchat.api.schemas.queries import AuditQuery
from medchat.api.schemas.responses import AUDIT_PAGE, AUDIT_VERIFIED
from medchat.handlers.audit import Audit


class AdminServlets:
    def __init__(self, api: ModuleApi, audit: Audit):
        self._api = api
        self._audit = audit

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "GET", "/api/admin/audit/verify", self.verify, responses={200: AUDIT_VERIFIED})
        route(resource, "GET", "/api/admin/audit", self.list, query=AuditQuery, responses={200: AUDIT_PAGE})

    async def list(self, request: Any) -> tuple[int, Any]:
        """The audit trail, newest first (server admins; 403 otherwise)."""
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        query = read_query(request, AuditQuery)
        return 200, await self._audit.page(caller, query.filters(), query.cursor, query.limit)

    async def verify(self, request: Any) -> tuple[int, Any]:
        """Recomputes the hash chain and names the first broken entry (server admins)."""
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        return 200, await self._audit.verify(caller)
