"""Requests: Synapse's router, access-token authentication, file responses."""

from __future__ import annotations

import logging
from typing import Any

from synapse.api.auth.base import BaseAuth
from synapse.api.errors import SynapseError
from synapse.http.server import JsonResource
from synapse.http.site import SynapseRequest
from synapse.media._base import respond_with_file
from synapse.types import Requester

from medchat import errors
from medchat.synapse._base import Family
from medchat.wellformed import path_problem

logger = logging.getLogger(__name__)


class _CheckedJsonResource(JsonResource):
    """Synapse's router, refusing a path that cannot be text before it is matched: Synapse would
    turn escapes of no UTF-8 into U+FFFD (another path than the one sent) and pass U+0000 on."""

    async def _async_render(self, request: SynapseRequest) -> tuple[int, Any]:
        problem = path_problem(request.path)
        if problem is not None:
            raise errors.invalid_param(f"Invalid path: it {problem}.")
        return await super()._async_render(request)


class SynapseHttp(Family):
    """Synapse's servlet router, access-token checks and file responses."""

    def json_resource(self) -> JsonResource:
        """Synapse's own servlet router (JSON errors, metrics per servlet, cancellation) that
        answers 400 M_INVALID_PARAM for a path that is not UTF-8 text (medchat.wellformed)."""
        return _CheckedJsonResource(self._hs)

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
