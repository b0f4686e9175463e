"""/api/chat/upload/*: files into Synapse's media repository, checked and cleaned on the way in.

Downloads are not here: they are Synapse's authenticated media endpoints
(`/_matrix/client/v1/media/download/...`), so Matrix clients and the app read the same files.
"""

from __future__ import annotations

from typing import Any

from synapse.api.errors import Codes
from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat.api.http import BINARY, Content, read_query, route
from medchat.api.schemas.queries import UploadQuery
from medchat.api.schemas.responses import EMPTY, UPLOADED, obj
from medchat.media.body import BodyError, multipart_field, whole_body
from medchat.media.policy import KINDS
from medchat.media.uploads import MediaUploads
from medchat.metrics import UPLOAD_REJECTIONS
from medchat.synapse.upload_guard import guard_uploads

PREFIX = "/api/chat/upload/"


class UploadServlets:
    def __init__(self, api: ModuleApi, uploads: MediaUploads):
        self._api = api
        self._uploads = uploads
        self._content_type = guard_uploads(PREFIX.encode(), self._refuse_early)

    def register_routes(self, resource: JsonResource) -> None:
        # One pattern for both methods (Synapse's router answers 405 when the first matching
        # pattern lacks the method): the segment is the kind for POST and the file id for DELETE.
        raw = Content({"application/octet-stream": BINARY, "multipart/form-data": obj({"file": BINARY})})
        route(
            resource, "POST", PREFIX + "{target}", self.upload, body=raw, query=UploadQuery, responses={201: UPLOADED}
        )
        route(resource, "DELETE", PREFIX + "{target}", self.delete, responses={200: EMPTY})

    def _refuse_early(self, kind: str, length: int) -> SynapseError | None:
        """The guard's size check while the body arrives; its refusals never reach `upload`."""
        error = self._uploads.oversize(kind, length)
        if error is not None:
            UPLOAD_REJECTIONS.labels(kind=kind, status=str(error.code), server_name=self._api.server_name).inc()
        return error

    async def upload(self, request: Any, target: str) -> tuple[int, Any]:
        """Uploads a file of a kind (`image`, `audio`, `video`, `file`) into Synapse's media repository.

        A raw body (`Content-Type`, `?filename=`) or multipart field `file`. The type is decided by
        magic bytes (415 names it), 413 over the kind's limit; images are stripped of metadata.
        """
        try:
            return await self._upload(request, target)
        except SynapseError as e:
            UPLOAD_REJECTIONS.labels(
                kind=target if target in KINDS else "unknown", status=str(e.code), server_name=self._api.server_name
            ).inc()
            raise

    async def _upload(self, request: Any, target: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        rules = self._uploads.rules(target)
        file_name = read_query(request, UploadQuery).filename
        self._uploads.check_size(rules, _content_length(request))
        content_type = self._content_type(request)
        if content_type and content_type.lower().lstrip().startswith("multipart/form-data"):
            try:
                part = multipart_field(request.content, content_type, "file")
            except BodyError as e:
                raise SynapseError(400, str(e), Codes.INVALID_PARAM)
            source, file_name, declared = part.content, part.filename or file_name, part.content_type
        else:
            source, declared = whole_body(request.content), content_type
        return 201, await self._uploads.upload(rules, requester.user.to_string(), source, file_name, declared)

    async def delete(self, request: Any, target: str) -> tuple[int, Any]:
        """Deletes an upload (`{target}` is the file id): the uploader or an admin."""
        requester = await self._api.get_user_by_req(request)
        await self._uploads.delete(requester.user.to_string(), target)
        return 200, {}


def _content_length(request: Any) -> int | None:
    value = request.getHeader("Content-Length")
    return int(value) if value and value.isdigit() else None
