"""/api/chat/verification/*: credential verification requests and decisions.

    POST /api/chat/verification/requests                 the caller asks for a level (201)
    GET  /api/chat/verification/requests?status=pending  verifiers: requests they may decide
    POST /api/chat/verification/requests/{id}/approve    verifiers; body {"reason"} optional
    POST /api/chat/verification/requests/{id}/reject     verifiers; body {"reason"} required
    GET  /api/chat/verification/me                      the caller's level, requests, history
"""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import query_params, read_json, route
from medchat.models import VERIFICATION_DECISION_BODY, VERIFICATION_REQUEST_BODY
from medchat.verification import Verification


class VerificationServlets:
    def __init__(self, api: ModuleApi, verification: Verification):
        self._api = api
        self._verification = verification

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "POST", "/api/chat/verification/requests", self.submit)
        route(resource, "GET", "/api/chat/verification/requests", self.list)
        route(resource, "POST", "/api/chat/verification/requests/{request_id}/approve", self.approve)
        route(resource, "POST", "/api/chat/verification/requests/{request_id}/reject", self.reject)
        route(resource, "GET", "/api/chat/verification/me", self.me)

    async def _caller(self, request: Any) -> str:
        return (await self._api.get_user_by_req(request)).user.to_string()

    async def submit(self, request: Any) -> tuple[int, Any]:
        caller = await self._caller(request)
        return 201, await self._verification.submit(caller, read_json(request, VERIFICATION_REQUEST_BODY))

    async def list(self, request: Any) -> tuple[int, Any]:
        caller = await self._caller(request)
        return 200, await self._verification.list_requests(caller, query_params(request).get("status", "pending"))

    async def approve(self, request: Any, request_id: str) -> tuple[int, Any]:
        return await self._decide(request, request_id, approve=True)

    async def reject(self, request: Any, request_id: str) -> tuple[int, Any]:
        return await self._decide(request, request_id, approve=False)

    async def _decide(self, request: Any, request_id: str, approve: bool) -> tuple[int, Any]:
        caller = await self._caller(request)
        body = read_json(request, VERIFICATION_DECISION_BODY)
        return 200, await self._verification.decide(caller, request_id, approve, body.get("reason"))

    async def me(self, request: Any) -> tuple[int, Any]:
        return 200, await self._verification.status_of(await self._caller(request))
