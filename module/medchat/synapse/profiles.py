"""Users and their Matrix profiles: existence, display names, avatars, extended (MSC4133) fields."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError
from synapse.api.ratelimiting import Ratelimiter
from synapse.module_api import ModuleApi
from synapse.types import UserID, create_requester
from synapse.util.stringutils import parse_and_validate_server_name

from medchat.synapse import sql
from medchat.synapse._base import Family

if TYPE_CHECKING:
    from synapse.server import HomeServer

logger = logging.getLogger(__name__)


class SynapseProfiles(Family):
    """Users and their Matrix profiles, through Synapse's profile handler and user directory."""

    def __init__(self, api: ModuleApi, hs: HomeServer):
        super().__init__(api, hs)
        self._directory_search_ratelimiter = Ratelimiter(
            store=self._store, clock=self._clock, cfg=hs.config.ratelimiting.rc_user_directory
        )

    async def user_exists(self, user_id: str) -> bool:
        """An active local account, or a remote user whose server answers a profile query.

        An id whose server name is malformed names nobody. A server that cannot be reached
        (Synapse's 502) confirms nothing: 404 naming the server, not a 5xx, since the caller can
        only try again later or correct the id.
        """
        if not UserID.is_valid(user_id):
            return False
        if self.api.is_mine(user_id):
            user = await self._store.get_user_by_id(user_id)
            return user is not None and not user.is_deactivated
        try:
            parse_and_validate_server_name(UserID.from_string(user_id).domain)
        except ValueError:  # no server of that name can exist, so neither can the user
            return False
        try:
            await self._hs.get_profile_handler().get_profile(user_id)
        except SynapseError as e:
            if e.code == 404:
                return False
            if e.code >= 500:
                server = UserID.from_string(user_id).domain
                raise SynapseError(
                    404, f"No such user: {user_id} (their server {server} could not be reached)", Codes.NOT_FOUND
                )
            raise
        return True

    async def check_profile_change(self, user_id: str, display_name: str | None, avatar_url: str | None) -> None:
        """Raises what set_display_name / set_avatar would refuse (with Synapse's own errors), so a
        profile update can be refused before its first write: a change this server's
        `enable_set_displayname` / `enable_set_avatar_url` forbid, or an avatar outside
        `max_avatar_size` / `allowed_avatar_mimetypes` (an upload it cannot find included)."""
        if display_name is None and avatar_url is None:
            return
        registration = self._hs.config.registration
        current = await self._store.get_profileinfo(UserID.from_string(user_id))
        if display_name is not None and not registration.enable_set_displayname and current.display_name:
            raise SynapseError(403, "Changing display name is disabled on this server", Codes.FORBIDDEN)
        if avatar_url is None:
            return
        if not registration.enable_set_avatar_url and current.avatar_url:
            raise SynapseError(403, "Changing avatar is disabled on this server", Codes.FORBIDDEN)
        if not await self._hs.get_profile_handler().check_avatar_size_and_mime_type(avatar_url):
            raise SynapseError(403, "This avatar is not allowed", Codes.FORBIDDEN)

    async def set_display_name(self, user_id: str, display_name: str) -> None:
        await self.api.set_displayname(UserID.from_string(user_id), display_name)

    async def set_avatar(self, user_id: str, avatar_url: str) -> None:
        """Sets the Matrix avatar (an `mxc://` URI); Synapse propagates it to the user's rooms."""
        user = UserID.from_string(user_id)
        await self._hs.get_profile_handler().set_avatar_url(
            target_user=user, requester=create_requester(user), new_avatar_url=avatar_url
        )

    async def directory_profiles(self, user_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """(display name, avatar) of many users in one query on Synapse's user directory.

        It holds every local user and the remote users who share a room with a local one; others
        are missing from the result.
        """
        if not user_ids:
            return {}
        return await self.api.run_db_interaction("medchat_directory_profiles", sql.directory_profiles_txn, user_ids)

    async def get_profile_field(self, user_id: str, field: str) -> Any:
        """A custom profile field of a local user, or None if unset."""
        fields = await self._store.get_profile_fields(UserID.from_string(user_id))
        return fields.get(field)

    async def set_profile_field(self, user_id: str, field: str, value: Any) -> None:
        """Sets a custom profile field as a server admin would, through the profile handler.

        Synapse then notifies modules (`on_profile_update`) and serves the field on
        `/_matrix/client/v3/profile/{user_id}` and over federation.
        """
        user = UserID.from_string(user_id)
        await self._hs.get_profile_handler().dispatch_set_profile_field(
            target_user=user, requester=create_requester(user), field_name=field, new_value=value, by_admin=True
        )

    async def ratelimit_directory_search(self, requester: Any) -> None:
        """Synapse's `rc_user_directory` limit (as on its own user-directory search); 429 if exceeded."""
        await self._directory_search_ratelimiter.ratelimit(requester)
