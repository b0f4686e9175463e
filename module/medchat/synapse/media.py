"""The media repository: store, inspect and delete local media (S3 included), thumbnails."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import IO, TypeVar

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from s3_storage_provider import S3StorageProviderBackend
from synapse.api.errors import Codes, NotFoundError, SynapseError
from synapse.media._base import FileInfo
from synapse.media.filepath import MediaFilePaths
from synapse.types import UserID

from medchat.media.body import ReadableFile
from medchat.synapse._base import Family

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SynapseMedia(Family):
    """Synapse's media repository and its storage providers (S3)."""

    async def store_media(
        self, media_type: str, upload_name: str | None, content: IO, length: int, user_id: str
    ) -> str:
        """Stores a file through Synapse's media repository; returns its `mxc://` URI.

        The repository writes the local store and every storage provider (S3), records the uploader
        in `local_media_repository.user_id`, applies upload limits and quarantine, and generates
        thumbnails, exactly as for `/_matrix/media/v3/upload`.
        """
        try:
            mxc = await self._hs.get_media_repository().create_or_update_content(
                media_type, upload_name, content, length, UserID.from_string(user_id)
            )
        except (S3UploadFailedError, BotoCoreError, ClientError) as e:
            logger.error("MedChat: the object store refused an upload: %s", e)
            raise SynapseError(502, "The file store is unavailable; try again later.", Codes.UNKNOWN)
        return str(mxc)

    async def local_media_uploader(self, media_id: str) -> tuple[bool, str | None]:
        """(exists, uploader's user id) of a media id of this server."""
        media = await self._store.get_local_media(media_id)
        return (media is not None, media.user_id if media else None)

    async def local_upload_name(self, media_id: str) -> str | None:
        """The file name a local media id was uploaded with (`?filename=`), which downloads carry."""
        media = await self._store.get_local_media(media_id)
        return media.upload_name if media is not None else None

    async def delete_local_media(self, media_id: str) -> None:
        """Deletes a local file from the object stores, then the local store and database.

        Synapse's own deletion (the admin API's) removes only the local copy; with a storage
        provider the object would stay in the bucket and could be served again, so the S3 objects
        (content and thumbnails) are removed first.
        """
        repository = self._hs.get_media_repository()
        for provider in repository.media_storage.storage_providers:
            backend = getattr(provider, "backend", provider)
            if isinstance(backend, S3StorageProviderBackend):
                await self.api.defer_to_thread(_delete_s3_media, backend, repository.filepaths, media_id)
        await repository.delete_local_media_ids([media_id])

    async def inspect_local_media(self, media_id: str, inspect: Callable[[ReadableFile], T]) -> T | None:
        """`inspect(file)` run in a thread on a local media file's bytes, fetched back from the
        storage providers (S3) if the local copy was cleaned up or this process has none; None if
        there is no such media or its content has not been uploaded yet (MSC2246)."""
        media = await self._store.get_local_media(media_id)
        if media is None or media.media_length is None:
            return None
        storage = self._hs.get_media_repository().media_storage
        try:
            async with storage.ensure_media_is_in_local_cache(FileInfo(None, media_id)) as path:
                return await self.api.defer_to_thread(_inspect_file, path, inspect)
        except (NotFoundError, FileNotFoundError):
            return None

    def thumbnail_url(self, media_id: str, width: int, height: int) -> str:
        """Synapse's authenticated thumbnail endpoint for a local media id."""
        return (
            f"{self._hs.config.server.public_baseurl}_matrix/client/v1/media/thumbnail/"
            f"{self.server_name}/{media_id}?width={width}&height={height}&method=scale"
        )


def _inspect_file(path: str, inspect: Callable[[ReadableFile], T]) -> T:
    with open(path, "rb") as f:
        return inspect(f)


def _delete_s3_media(backend: S3StorageProviderBackend, filepaths: MediaFilePaths, media_id: str) -> None:
    """Removes a local media file and its thumbnails from the provider's bucket (in a thread)."""
    client = backend._get_s3_client()
    content_key = backend.prefix + filepaths.local_media_filepath_rel(media_id)
    thumbnails = backend.prefix + os.path.dirname(filepaths.local_media_thumbnail_rel(media_id, 1, 1, "a/b", "x")) + "/"
    keys = [content_key]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=thumbnails):
        keys += [item["Key"] for item in page.get("Contents", [])]
    for key in keys:
        client.delete_object(Bucket=backend.bucket, Key=key)
