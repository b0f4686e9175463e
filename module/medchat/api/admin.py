"""/api/admin/audit: the audit trail for server admins, and its verification."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat import errors
from medchat.api.http import MAX_PAGE, Query, limit_query, query_limit, query_string, route, text_query
from medchat.api.schemas.responses import AUDIT_PAGE, AUDIT_VERIFIED
from medchat.handlers.audit import Audit


def _query_ms(request: Any, name: str) -> int | None:
    value = query_string(request, name, max_length=20)
    if value is not None and not value.isdigit():
        raise errors.invalid_param(f"Invalid parameter {name}: milliseconds since the epoch")
    return int(value) if value is not None else None


_MS = {"type": "string", "pattern": "^[0-9]{1,20}$"}
_AUDIT_QUERY = (
    text_query("actor", "only entries by this user", 255),
    text_query("action", "only this action", 255),
    text_query("target", "only entries about this object", 255),
    Query("since", _MS, "from this time (ms since the epoch)"),
    Query("until", _MS, "up to this time (ms since the epoch)"),
    Query("cursor", _MS, "the `next_cursor` of the previous page"),
    limit_query(default=50),
)


class AdminServlets:
    def __init__(self, api: ModuleApi, audit: Audit):
        self._api = api
        self._audit = audit

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "GET", "/api/admin/audit/verify", self.verify, responses={200: AUDIT_VERIFIED})
        route(resource, "GET", "/api/admin/audit", self.list, query=_AUDIT_QUERY, responses={200: AUDIT_PAGE})

    async def list(self, request: Any) -> tuple[int, Any]:
        """The audit trail, newest first (server admins; 403 otherwise)."""
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        filters = {name: query_string(request, name, max_length=255) for name in ("actor", "action", "target")}
        filters.update(since=_query_ms(request, "since"), until=_query_ms(request, "until"))
        before = _query_ms(request, "cursor")
        return 200, await self._audit.page(caller, filters, before, query_limit(request, default=50, maximum=MAX_PAGE))

    async def verify(self, request: Any) -> tuple[int, Any]:
        """Recomputes the hash chain and names the first broken entry (server admins)."""
        caller = (await self._api.get_user_by_req(request)).user.to_string()
        return 200, await self._audit.verify(caller)
