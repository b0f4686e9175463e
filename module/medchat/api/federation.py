"""/_medchat/federation/...: what other homeservers ask this one (never a client); and the
client's check of an attestation.

Served on every HTTP listener (Synapse attaches module resources to all of them), including the
TLS federation listener; every request must be signed by an allowed server (`X-Matrix`).
"""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import read_json, read_query, route
from medchat.api.schemas.queries import PeerSearchQuery
from medchat.api.schemas.requests import AttestationCheckBody
from medchat.api.schemas.responses import ATTESTATION_RESULT, USER_PAGE
from medchat.federation.attestation import Attestations
from medchat.federation.directory import PEER_PATH, FederatedDirectory
from medchat.levels import is_verified
from medchat.synapse import SynapseFederation, SynapseHttp


class FederationServlets:
    def __init__(self, server: SynapseFederation, directory: FederatedDirectory):
        self._server = server
        self._directory = directory

    def resource(self, http: SynapseHttp) -> JsonResource:
        resource = http.json_resource()
        route(resource, "GET", PEER_PATH, self.search, query=PeerSearchQuery, responses={200: USER_PAGE})
        return resource

    async def search(self, request: Any) -> tuple[int, Any]:
        """An allow-listed server searches this server's directory (signed with `X-Matrix`)."""
        origin = await self._server.authenticate_server(request)
        return 200, await self._directory.answer(origin, read_query(request, PeerSearchQuery))


class AttestationServlets:
    """POST /api/chat/verification/attestations/check: what an attestation proves (one shown as
    a QR code, pasted, or read from a profile), checked against its server's published key."""

    def __init__(self, api: ModuleApi, attestations: Attestations):
        self._api = api
        self._attestations = attestations

    def register_routes(self, resource: JsonResource) -> None:
        route(
            resource,
            "POST",
            "/api/chat/verification/attestations/check",
            self.check,
            body=AttestationCheckBody,
            responses={200: ATTESTATION_RESULT},
        )

    async def check(self, request: Any) -> tuple[int, Any]:
        """Checks a licence attestation against its server's published key; what level it proves."""
        await self._api.get_user_by_req(request)
        attestation = read_json(request, AttestationCheckBody).attestation
        level = await self._attestations.level_from(attestation.user_id, attestation.model_dump())
        return 200, {"user_id": attestation.user_id, "verification_level": level, "is_verified": is_verified(level)}
