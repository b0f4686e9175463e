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

from medchat.api.http import read_json, read_query, route
from medchat.api.schemas.queries import VerificationListQuery
from medchat.api.schemas.requests import ApprovalBody, RejectionBody, VerificationRequestBody
from medchat.api.schemas.responses import VERIFICATION_REQUEST, VERIFICATION_REQUESTS, VERIFICATION_STATUS
from medchat.handlers.verification import Verification


class VerificationServlets:
    def __init__(self, api: ModuleApi, verification: Verification):
        self._api = api
        self._verification = verification

    def register_routes(self, resource: JsonResource) -> None:
        base = "/api/chat/verification"
        route(
            resource,
            "POST",
            f"{base}/requests",
            self.submit,
            body=VerificationRequestBody,
            responses={201: VERIFICATION_REQUEST},
        )
        route(
            resource,
            "GET",
            f"{base}/requests",
            self.list,
            query=VerificationListQuery,
            responses={200: VERIFICATION_REQUESTS},
        )
        decided = {200: VERIFICATION_REQUEST}
        route(
            resource,
            "POST",
            f"{base}/requests/{{request_id}}/approve",
            self.approve,
            body=ApprovalBody,
            responses=decided,
        )
        route(
            resource,
            "POST",
            f"{base}/requests/{{request_id}}/reject",
            self.reject,
            body=RejectionBody,
            responses=decided,
        )
        route(resource, "GET", f"{base}/me", self.me, responses={200: VERIFICATION_STATUS})

    async def _caller(self, request: Any) -> str:
        return (await self._api.get_user_by_req(request)).user.to_string()

    async def submit(self, request: Any) -> tuple[int, Any]:
        """Asks for a verification level; one pending request per user."""
        caller = await self._caller(request)
        return 201, await self._verification.submit(caller, read_json(request, VerificationRequestBody))

    async def list(self, request: Any) -> tuple[int, Any]:
        """The requests the caller may decide (admins: all; institution verifiers: theirs)."""
        caller = await self._caller(request)
        query = read_query(request, VerificationListQuery)
        return 200, await self._verification.list_requests(caller, query.status, query.offset(), query.limit)

    async def approve(self, request: Any, request_id: str) -> tuple[int, Any]:
        """Approves a request (verifiers only; 409 if already decided)."""
        caller = await self._caller(request)
        reason = read_json(request, ApprovalBody).reason
        return 200, await self._verification.decide(caller, request_id, True, reason)

    async def reject(self, request: Any, request_id: str) -> tuple[int, Any]:
        """Rejects a request with a reason (verifiers only; 409 if already decided)."""
        caller = await self._caller(request)
        reason = read_json(request, RejectionBody).reason
        return 200, await self._verification.decide(caller, request_id, False, reason)

    async def me(self, request: Any) -> tuple[int, Any]:
        """The caller's level, requests and verification history."""
        return 200, await self._verification.status_of(await self._caller(request))
