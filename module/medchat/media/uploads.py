"""Upload and deletion rules: type by magic bytes, per-kind allow-lists and limits, clean images."""

from __future__ import annotations

import os
import re
from typing import Any

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.handlers.audit import Audit
from medchat.media.body import FileRange
from medchat.media.policy import KindRules, upload_rules
from medchat.media.sniff import sniff
from medchat.media.strip import ImageError, clean_image
from medchat.models import JsonDict
from medchat.synapse import SynapseMedia

THUMBNAIL_SIZE = 320
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_EXTENSIONS = {"image": "jpg", "audio": "ogg", "video": "mp4", "file": "bin"}
_TYPE_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "audio/ogg": "ogg",
    "audio/mp4": "m4a",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/csv": "csv",
    "application/dicom": "dcm",
}


class MediaUploads:
    def __init__(self, api: ModuleApi, synapse_media: SynapseMedia, configured: dict[str, Any], audit: Audit):
        self._api = api
        self._synapse_media = synapse_media
        self._rules = upload_rules(configured)
        self._audit = audit

    def rules(self, kind: str) -> KindRules:
        """The rules of an upload kind; 404 for a kind that does not exist."""
        if kind not in self._rules:
            raise SynapseError(
                404, f"Unknown upload kind '{kind}'; use one of: {', '.join(self._rules)}.", Codes.NOT_FOUND
            )
        return self._rules[kind]

    def oversize(self, kind: str, length: int) -> SynapseError | None:
        """The 413 for `length` bytes of an upload of `kind`, if over its limit (None for unknown kinds).

        Asked by the request guard while the body arrives, so an oversized one is never read.
        """
        rules = self._rules.get(kind)
        if rules is None or length <= rules.max_bytes:
            return None
        return SynapseError(413, f"A {rules.kind} may be at most {rules.max_bytes} bytes.", Codes.TOO_LARGE)

    def check_size(self, rules: KindRules, length: int | None) -> None:
        """400 for an empty body, 413 above the kind's limit (called with Content-Length first)."""
        if length == 0:
            raise errors.invalid_param("The upload is empty.")
        if length is not None and (error := self.oversize(rules.kind, length)):
            raise error

    async def upload(
        self, rules: KindRules, user_id: str, source: FileRange, file_name: str | None, declared_type: str | None
    ) -> JsonDict:
        self.check_size(rules, len(source))
        mime = _refine(sniff(source), declared_type, file_name)
        if mime not in rules.allowed_types:
            raise SynapseError(
                415,
                f"The file is {mime}, which is not accepted as {rules.kind} "
                f"(accepted: {', '.join(sorted(rules.allowed_types))}).",
                Codes.INVALID_PARAM,
            )
        content: Any = source
        size = len(source)
        extra: JsonDict = {}
        if rules.kind == "image":
            try:
                image = await self._api.defer_to_thread(clean_image, mime, source)
            except ImageError as e:
                raise SynapseError(400, str(e), Codes.INVALID_PARAM)
            if image.mime != mime:  # HEIC arrives as JPEG: the name says so
                file_name = file_name and os.path.splitext(file_name)[0] + "." + _TYPE_EXTENSIONS[image.mime]
            content, size, mime = image.content, image.size, image.mime
            extra = {"width": image.width, "height": image.height}
        name = _safe_name(file_name) or f"{rules.kind}.{_TYPE_EXTENSIONS.get(mime, _EXTENSIONS[rules.kind])}"
        mxc = await self._synapse_media.store_media(mime, name, content, size, user_id)
        media_id = mxc.rsplit("/", 1)[1]
        if extra:
            extra["thumbnail_url"] = self._synapse_media.thumbnail_url(media_id, THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        return {"file_id": media_id, "media_url": mxc, "file_name": name, "file_size": size, "mime_type": mime, **extra}

    async def delete(self, user_id: str, file_id: str) -> None:
        """Only the uploader or a server admin may delete; the file goes from every store."""
        exists, uploader = (False, None)
        if _MEDIA_ID.match(file_id):
            exists, uploader = await self._synapse_media.local_media_uploader(file_id)
        if not exists:
            raise errors.not_found("No such file.")
        if uploader != user_id and not await self._api.is_user_admin(user_id):
            raise errors.forbidden("Only the uploader or an admin may delete this file.")
        await self._synapse_media.delete_local_media(file_id)
        await self._audit.record(user_id, "media.deleted", file_id, {"uploader": uploader})


def _refine(sniffed: str, declared_type: str | None, file_name: str | None) -> str:
    """CSV has no magic number: text the client calls CSV (by type or .csv name) is text/csv."""
    if sniffed == "text/plain":
        declared = (declared_type or "").split(";")[0].strip().lower()
        if declared == "text/csv" or (file_name or "").lower().endswith(".csv"):
            return "text/csv"
    return sniffed


def _safe_name(file_name: str | None) -> str | None:
    """The base name only, without control characters, at most 200 characters (the plan's column)."""
    if not file_name:
        return None
    name = os.path.basename(file_name.replace("\\", "/"))
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or None
