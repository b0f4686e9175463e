"""Requests: Synapse's router, access-token authentication, file responses."""

from __future__ import annotations

import logging

from synapse.api.auth.base import BaseAuth
from synapse.api.errors import SynapseError
from synapse.http.server import JsonResource
from synapse.http.site import SynapseRequest
from synapse.media._base import respond_with_file
from synapse.types import Requester

from medchat.synapse._base import Family

logger = logging.getLogger(__name__)


class SynapseHttp(Family):
    """Synapse's servlet router, access-token checks and file responses."""

    def json_resource(self) -> JsonResource:
        """Synapse's own servlet router: JSON errors, metrics per servlet, cancellation."""
        return JsonResource(self._hs)

    async def authenticate(self, request: SynapseRequest) -> tuple[Requester, str]:
        """The requester behind the request's access token (header or `access_token` query), and
        the token itself, for re-checking on a long-lived connection."""
        return await self.api.get_user_by_req(request), BaseAuth.get_access_token_from_request(request)

    async def token_still_valid(self, access_token: str) -> bool:
        """Whether a token checked earlier still works (logout, expiry, deactivation end it)."""
        try:
            await self._hs.get_auth().get_user_by_access_token(access_token)
            return True
        except SynapseError:
            return False

    async def send_file(self, request: SynapseRequest, path: str, media_type: str, file_name: str) -> None:
        """Streams a file as the response, with the media repository's download headers
        (`Content-Disposition: attachment` for anything not shown inline)."""
        await respond_with_file(self._hs, request, media_type, path, upload_name=file_name)
