"""Requests: Synapse's router, access-token authentication, file responses."""

from __future__ import annotations

import logging
import time
from typing import Any

from synapse.api.auth.base import BaseAuth
from synapse.api.errors import SynapseError
from synapse.http.server import JsonResource
from synapse.http.site import SynapseRequest
from synapse.logging.context import PreserveLoggingContext
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
        answers 400 M_INVALID_PARAM for a path that is not UTF-8 text (medchat.wellformed). Its
        JSON is encoded as Synapse's client API encodes it (not canonical JSON: sorting every
        object's keys made a history page's encoding cost twice a native page's)."""
        return _CheckedJsonResource(self._hs, canonical_json=False)

    async def authenticate(self, request: SynapseRequest) -> tuple[Requester, str]:
        """The requester behind the request's access token (header or `access_token` query), and
        the token itself, for re-checking on a long-lived connection."""
        return await self.api.get_user_by_req(request), BaseAuth.get_access_token_from_request(request)

    def release_upgraded(self, request: SynapseRequest) -> None:
        """Ends Synapse's bookkeeping of a request that became a WebSocket, once the socket has
        read what it needs from it (token, query): the access-log line (101) is written and the
        in-flight request metrics stop, and the HTTP channel, which now only carries the socket,
        forgets the request. Twisted's upgrade never tells the request that the connection ended,
        so otherwise the request, its headers and log context are held as long as the socket is
        open, and its metrics entry for good."""
        if request.logcontext is not None:  # set when Synapse started rendering it: always, here
            request.code = 101
            request.finish_time = time.time()
            with PreserveLoggingContext(request.logcontext):
                request._finished_processing()
        pending = getattr(request.channel, "requests", None)
        if pending is not None and request in pending:
            pending.remove(request)

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
