"""The practitioner directory: who appears, listing with filters, ranked search, institutions.

Who appears is decided here once (not hidden, verification level at least
`directory_listing_level`) and applied to the REST listings, to GET of another user, and — through
medchat.rules.directory — to Matrix's own user-directory search.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.config import MedChatConfig
from medchat.handlers.accounts import Accounts
from medchat.handlers.verification import Verification
from medchat.levels import LICENSE_VERIFIED, UNVERIFIED, at_least, levels_from
from medchat.models import JsonDict, MatrixIdentity, Profile, chat_user, positional_page
from medchat.store import DirectoryStore
from medchat.store.directory import Filters, query_words
from medchat.synapse import SynapseAccounts, SynapseStream
from medchat.wellformed import bad_string, load_json

if TYPE_CHECKING:
    from medchat.api.schemas.queries import DirectoryQuery, DirectorySearchQuery
    from medchat.federation.profiles import RemoteProfiles


class Directory:
    def __init__(
        self,
        config: MedChatConfig,
        api: ModuleApi,
        synapse_accounts: SynapseAccounts,
        synapse_stream: SynapseStream,
        accounts: Accounts,
        store: DirectoryStore,
        verification: Verification,
        remote_profiles: RemoteProfiles,
    ):
        self._config = config
        self._api = api
        self._synapse_accounts = synapse_accounts
        self._synapse_stream = synapse_stream
        self._accounts = accounts
        self._store = store
        self._verification = verification
        self._remote_profiles = remote_profiles

    def is_listed(self, hidden: bool, level: str) -> bool:
        return not hidden and at_least(level, self._config.directory_listing_level)

    async def may_search(self, user_id: str) -> bool:
        if self._config.directory_search_level == UNVERIFIED:
            return True
        return at_least(
            await self._verification.level_of(user_id), self._config.directory_search_level
        ) or await self._api.is_user_admin(user_id)

    # --- endpoints --------------------------------------------------------------------------------

    async def browse(self, viewer: str, query: DirectoryQuery) -> JsonDict:
        """GET /api/chat/users and /users/filter: name order, cursor pagination."""
        await self._check_may_search(viewer)
        filters = self._filters(query)
        limit = self._limit(query.limit)
        profiles, next_after = await self._store.page(filters, _decode_after(query.cursor), limit)
        return {
            "results": await self._render(viewer, profiles),
            "next_cursor": _encode_cursor("after", list(next_after)) if next_after else None,
        }

    async def search(self, viewer: str | None, query: DirectorySearchQuery) -> JsonDict:
        """GET /api/chat/users/search?q=: best match first; combines with the listing filters.

        `viewer` None is an allow-listed server searching for its user (medchat.federation):
        no e-mail addresses, and that server has applied its own search level.
        """
        if not query_words(query.q):
            raise errors.invalid_param("Invalid parameter q: it has no letters or digits to search for")
        if viewer is not None:
            await self._check_may_search(viewer)
        filters = self._filters(query)
        limit = self._limit(query.limit)
        offset = _decode_offset(query.cursor)
        profiles = await self._store.search(query.q, filters, offset, limit + 1)
        more = len(profiles) > limit
        return {
            "results": await self._render(viewer, profiles[:limit]),
            "next_cursor": _encode_cursor("offset", offset + limit) if more else None,
        }

    async def institutions(self, viewer: str, offset: int, limit: int) -> JsonDict:
        await self._check_may_search(viewer)
        counts = await self._store.institutions(Filters(levels=levels_from(self._config.directory_listing_level)))
        return positional_page([{"name": name, "member_count": count} for name, count in counts], offset, limit)

    async def get(self, viewer: str, user_id: str) -> JsonDict:
        """One profile. Users outside the directory are 404 to everyone but themselves and admins.
        A user of another server is asked of their server (medchat.federation.profiles)."""
        if not self._api.is_mine(user_id):
            return (await self._remote_profiles.get(user_id)).chat_user()
        privileged = viewer == user_id or await self._api.is_user_admin(viewer)
        if not privileged:
            visibility = (await self._store.visibility([user_id])).get(user_id)
            if visibility is None or not self.is_listed(*visibility):
                raise errors.not_found("No such user.")
        return await self._accounts.view(user_id, show_email=privileged)

    # --- helpers ----------------------------------------------------------------------------------

    async def _check_may_search(self, viewer: str) -> None:
        if not await self.may_search(viewer):
            raise SynapseError(
                403, f"The directory is open to {self._config.directory_search_level} users only.", Codes.FORBIDDEN
            )

    def _filters(self, query: DirectoryQuery) -> Filters:
        levels = levels_from(self._config.directory_listing_level)
        if query.level is not None:
            levels = tuple(level for level in levels if level == query.level)
        if query.verified is not None:
            levels = tuple(level for level in levels if (level == LICENSE_VERIFIED) == query.verified)
        if query.role is not None:
            self._accounts.check_role(query.role)
        only_users = except_users = None
        if query.online is not None:
            online = self._synapse_stream.online_user_ids()
            only_users, except_users = (online, None) if query.online else (None, online)
        return Filters(
            levels=levels,
            role=query.role,
            institution=query.institution,
            specialization=query.specialization,
            only_users=only_users,
            except_users=except_users,
        )

    def _limit(self, limit: int) -> int:
        """The page size within this server's cap (the query model has checked it is at least 1)."""
        cap = self._config.directory_page_size_max
        if limit > cap:
            raise errors.invalid_param(f"Invalid parameter limit: give a whole number from 1 to {cap}")
        return limit

    async def _render(self, viewer: str | None, profiles: list[Profile]) -> list[JsonDict]:
        """ChatUser models for a page: identity from the row, presence in one look-up."""
        if not profiles:
            return []
        presence = await self._synapse_stream.presence_of([p.user_id for p in profiles])
        is_admin = viewer is not None and await self._api.is_user_admin(viewer)
        models = []
        for profile in profiles:
            show_email = is_admin or profile.user_id == viewer
            is_online, last_active = presence.get(profile.user_id, (False, None))
            identity = MatrixIdentity(
                display_name=profile.display_name,
                avatar_url=profile.avatar_url,
                email=await self._synapse_accounts.email_for_user(profile.user_id) if show_email else None,
                is_online=is_online,
                last_active_ts=last_active,
            )
            models.append(chat_user(profile.user_id, profile, identity, show_email))
        return models


# The largest offset the database takes (a signed 64-bit integer).
_MAX_OFFSET = 2**63 - 1


def _encode_cursor(kind: str, position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps({kind: position}).encode()).decode().rstrip("=")


_BAD_CURSOR = "Invalid parameter cursor: pass next_cursor from a previous page unchanged"


def _cursor_position(cursor: str, kind: str) -> object:
    """The position in an opaque cursor from this endpoint; 400 for anything else."""
    try:
        return load_json(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[kind]
    except (ValueError, KeyError, TypeError):  # NotJson and binascii.Error are ValueErrors
        raise errors.invalid_param(_BAD_CURSOR)


def _decode_after(cursor: str | None) -> tuple[str, str] | None:
    """The (sort key, user id) a listing page starts after."""
    if cursor is None:
        return None
    position = _cursor_position(cursor, "after")
    if (
        isinstance(position, list)
        and len(position) == 2
        and all(isinstance(p, str) for p in position)
        and bad_string(position) is None
    ):
        return position[0], position[1]
    raise errors.invalid_param(_BAD_CURSOR)


def _decode_offset(cursor: str | None) -> int:
    """How many search results earlier pages showed (at most what the database can count)."""
    if cursor is None:
        return 0
    position = _cursor_position(cursor, "offset")
    if isinstance(position, int) and not isinstance(position, bool) and 0 <= position <= _MAX_OFFSET:
        return position
    raise errors.invalid_param(_BAD_CURSOR)
