"""/api/admin/audit: the audit trail for server admins, and its verification."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat.api.http import MAX_PAGE, query_limit, query_string, route
from medchat.audit import Audit


def _query_ms(request: Any, name: str) -> int | None:
    value = query_string(request, name, max_length=20)
    if value is not None and not value.isdigit():
        raise SynapseError(400, f"Invalid parameter {name}: milliseconds since the epoch", "M_INVALID_PARAM")
    return int(value) if value is not None else None


class AdminServlets:
    def __init__(self, api: ModuleApi, audit: Audit):
        self._api = api
        self._audit = audit

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "GET", "/api/admin/audit/verify", self.verify)
        route(resource, "GET", "/api/admin/audit", self.list)

    async def list(self, request: Any) -> tuple[int, Any]:
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        filters = {name: query_string(request, name, max_length=255) for name in ("actor", "action", "target")}
        filters.update(since=_query_ms(request, "since"), until=_query_ms(request, "until"))
        before = _query_ms(request, "cursor")
        return 200, await self._audit.page(caller, filters, before, query_limit(request, default=50, maximum=MAX_PAGE))

    async def verify(self, request: Any) -> tuple[int, Any]:
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        return 200, await self._audit.verify(caller)
