"""The practitioner directory: who appears, listing with filters, ranked search, institutions.

Who appears is decided here once (not hidden, verification level at least
`directory_listing_level`) and applied to the REST listings, to GET of another user, and — through
medchat.rules.directory — to Matrix's own user-directory search.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.config import MedChatConfig
from medchat.handlers.accounts import Accounts
from medchat.handlers.verification import Verification
from medchat.levels import LICENSE_VERIFIED, UNVERIFIED, at_least, check_level, levels_from
from medchat.models import JsonDict, MatrixIdentity, Profile, chat_user
from medchat.store import DirectoryStore
from medchat.store.directory import Filters, query_words
from medchat.synapse import SynapseAccounts, SynapseStream

DEFAULT_PAGE_SIZE = 20
MAX_QUERY_LENGTH = 200
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


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
    ):
        self._config = config
        self._api = api
        self._synapse_accounts = synapse_accounts
        self._synapse_stream = synapse_stream
        self._accounts = accounts
        self._store = store
        self._verification = verification

    def is_listed(self, hidden: bool, level: str) -> bool:
        return not hidden and at_least(level, self._config.directory_listing_level)

    async def may_search(self, user_id: str) -> bool:
        if self._config.directory_search_level == UNVERIFIED:
            return True
        return at_least(
            await self._verification.level_of(user_id), self._config.directory_search_level
        ) or await self._api.is_user_admin(user_id)

    # --- endpoints --------------------------------------------------------------------------------

    async def list(self, viewer: str, params: Mapping[str, str]) -> JsonDict:
        """GET /api/chat/users and /users/filter: name order, cursor pagination."""
        await self._check_may_search(viewer)
        filters = self._filters(params)
        limit = self._limit(params)
        after = _decode_cursor(params.get("cursor"), "after")
        profiles, next_after = await self._store.page(filters, tuple(after) if after else None, limit)
        return {
            "results": await self._render(viewer, profiles),
            "next_cursor": _encode_cursor("after", list(next_after)) if next_after else None,
        }

    async def search(self, viewer: str | None, params: Mapping[str, str]) -> JsonDict:
        """GET /api/chat/users/search?q=: best match first; combines with the listing filters.

        `viewer` None is an allow-listed server searching for its user (medchat.federation):
        no e-mail addresses, and that server has applied its own search level.
        """
        q = params.get("q", "")
        if not q.strip() or len(q) > MAX_QUERY_LENGTH:
            raise errors.invalid_param(f"Invalid parameter q: give 1 to {MAX_QUERY_LENGTH} characters")
        if not query_words(q):
            raise errors.invalid_param("Invalid parameter q: it has no letters or digits to search for")
        if viewer is not None:
            await self._check_may_search(viewer)
        filters = self._filters(params)
        limit = self._limit(params)
        offset = _decode_cursor(params.get("cursor"), "offset") or 0
        profiles = await self._store.search(q, filters, offset, limit + 1)
        more = len(profiles) > limit
        return {
            "results": await self._render(viewer, profiles[:limit]),
            "next_cursor": _encode_cursor("offset", offset + limit) if more else None,
        }

    async def institutions(self, viewer: str) -> JsonDict:
        await self._check_may_search(viewer)
        counts = await self._store.institutions(Filters(levels=levels_from(self._config.directory_listing_level)))
        return {"institutions": [{"name": name, "member_count": count} for name, count in counts]}

    async def get(self, viewer: str, user_id: str) -> JsonDict:
        """One profile. Users outside the directory are 404 to everyone but themselves and admins."""
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

    def _filters(self, params: Mapping[str, str]) -> Filters:
        levels = levels_from(self._config.directory_listing_level)
        if "level" in params:
            wanted = check_level(params["level"], "verification level")
            levels = tuple(level for level in levels if level == wanted)
        if "verified" in params:
            verified = _boolean(params, "verified")
            levels = tuple(level for level in levels if (level == LICENSE_VERIFIED) == verified)
        if "role" in params:
            self._accounts.check_role(params["role"])
        only_users = except_users = None
        if "online" in params:
            online = self._synapse_stream.online_user_ids()
            only_users, except_users = (online, None) if _boolean(params, "online") else (None, online)
        return Filters(
            levels=levels,
            role=params.get("role"),
            institution=params.get("institution"),
            specialization=params.get("specialization"),
            only_users=only_users,
            except_users=except_users,
        )

    def _limit(self, params: Mapping[str, str]) -> int:
        raw = params.get("limit", str(DEFAULT_PAGE_SIZE))
        cap = self._config.directory_page_size_max
        if not raw.isdigit() or not 1 <= int(raw) <= cap:
            raise errors.invalid_param(f"Invalid parameter limit: give a whole number from 1 to {cap}")
        return int(raw)

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


def _boolean(params: Mapping[str, str], name: str) -> bool:
    value = params[name].lower()
    if value not in _BOOLEANS:
        raise errors.invalid_param(f"Invalid parameter {name}: give true or false")
    return _BOOLEANS[value]


def _encode_cursor(kind: str, position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps({kind: position}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, kind: str) -> object:
    """The position in an opaque cursor from this endpoint; 400 for anything else."""
    if cursor is None:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[kind]
    except (ValueError, KeyError, TypeError):
        raise errors.invalid_param("Invalid parameter cursor: pass next_cursor from a previous page unchanged")
    valid = (
        isinstance(position, int) and position >= 0
        if kind == "offset"
        else isinstance(position, list) and len(position) == 2 and all(isinstance(p, str) for p in position)
    )
    if not valid:
        raise errors.invalid_param("Invalid parameter cursor: pass next_cursor from a previous page unchanged")
    return position
