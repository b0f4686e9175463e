"""Contacts: the app's contact list, contact requests, and their mirror in Matrix.

Where Matrix has a place, it holds the truth so Element agrees: a block *is* an entry in the
owner's `m.ignored_user_list` (so ignoring someone in Element shows them as blocked here, and
unblocking here un-ignores them there), and a favourite contact's DM rooms (the owner's `m.direct`
account data) carry the `m.favourite` tag. The module's tables keep only nickname, favourite flag
and pending requests. This file holds the rules; api/contacts.py only moves JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.config import MedChatConfig
from medchat.models import JsonDict, MatrixIdentity, contact_card, contact_model, iso
from medchat.rules.contact import IGNORED_TYPE, ContactRules, thaw
from medchat.store import ContactStore, ProfileStore
from medchat.store.contacts import DECLINED, ContactFilters, ContactRequest, ContactRow
from medchat.store.notifications import NotificationStore
from medchat.synapse import SynapseProfiles, SynapseRooms, SynapseServer, SynapseStream
from medchat.util import concurrently

if TYPE_CHECKING:
    from medchat.federation.profiles import RemoteProfiles

logger = logging.getLogger(__name__)

DIRECT_TYPE = "m.direct"
FAVOURITE_TAG = "m.favourite"


@dataclass(frozen=True)
class Page:
    limit: int
    cursor: str | None = None


def _page(items: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """The first `limit` items and the cursor after them (None on the last page)."""
    return items[:limit], (key(items[limit - 1]) if len(items) > limit else None)


class Contacts:
    def __init__(
        self,
        config: MedChatConfig,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_profiles: SynapseProfiles,
        synapse_rooms: SynapseRooms,
        synapse_stream: SynapseStream,
        store: ContactStore,
        profiles: ProfileStore,
        rules: ContactRules,
        notifications: NotificationStore,
        remote_profiles: RemoteProfiles,
    ):
        self._config = config
        self._synapse_server = synapse_server
        self._synapse_profiles = synapse_profiles
        self._synapse_rooms = synapse_rooms
        self._synapse_stream = synapse_stream
        self._api = api
        self._store = store
        self._profiles = profiles
        self._rules = rules
        self._notifications = notifications
        self._remote_profiles = remote_profiles

    # --- reading --------------------------------------------------------------------------------

    async def _cards(self, people: Iterable[tuple[str, str | None, str | None, str | None]]) -> dict[str, JsonDict]:
        """Contact cards for (user id, role, institution, specialization), with live presence.
        A user of another server is shown as their server's profile says (cached, one query per
        user at once; medchat.federation.profiles), or as this server knows them if it cannot."""
        people = list(people)
        ids = [p[0] for p in people]
        names, presence, remote = await concurrently(
            partial(self._synapse_profiles.directory_profiles, ids),
            partial(self._synapse_stream.presence_of, ids),
            partial(self._remote_profiles.many, [u for u in ids if not self._api.is_mine(u)]),
        )
        cards = {}
        for user_id, role, institution, specialization in people:
            display_name, avatar = names.get(user_id, (None, None))
            if user_id in remote:
                found = remote[user_id]
                display_name, avatar = found.display_name or display_name, found.avatar_url or avatar
                role, institution, specialization = found.role, found.institution, found.specialization
            is_online, last_active = presence.get(user_id, (False, None))
            identity = MatrixIdentity(display_name, avatar, None, is_online, last_active)
            cards[user_id] = contact_card(user_id, role, institution, specialization, identity)
        return cards

    async def _render(self, owner_id: str, rows: list[ContactRow]) -> list[JsonDict]:
        cards = await self._cards((r.contact_id, r.role, r.institution, r.specialization) for r in rows)
        ignored = await self._rules.ignored_users(owner_id)
        return [
            contact_model(
                cards[r.contact_id], r.nickname, r.is_favorite, r.contact_id in ignored, r.created_ts, r.updated_ts
            )
            for r in rows
        ]

    async def _row(self, owner_id: str, contact_id: str) -> ContactRow:
        row = await self._store.get(owner_id, contact_id)
        if row is None:
            raise errors.not_found("This user is not in your contacts.")
        return row

    async def get(self, owner_id: str, contact_id: str) -> JsonDict:
        return (await self._render(owner_id, [await self._row(owner_id, contact_id)]))[0]

    async def contacts_of(self, owner_id: str, filters: ContactFilters, q: str | None, page: Page) -> JsonDict:
        """One page of contacts in user-id order; `q` matches name, username or nickname.

        `q` is matched in the query that reads the page (store.contacts.ContactStore.matching),
        so only the page's contacts are read and get cards, however long the list.
        """
        if filters.blocked is not None:
            filters = replace(filters, blocked_ids=list(await self._rules.ignored_users(owner_id)))
        if q is None:
            rows = await self._store.contacts_of(owner_id, filters, page.cursor, page.limit + 1)
        else:
            rows = await self._store.matching(owner_id, filters, q, page.cursor, page.limit + 1)
        rows, cursor = _page(rows, page.limit, lambda r: r.contact_id)
        return {"results": await self._render(owner_id, rows), "next_cursor": cursor}

    # --- changing the list ----------------------------------------------------------------------

    async def add(
        self, owner_id: str, target_id: str, nickname: str | None, message: str | None
    ) -> tuple[int, JsonDict]:
        """Adds a contact (201), or sends them a contact request (202) when requests are on.

        No request is needed if the other side has already asked the caller (that request is
        accepted), or is on another server (whose own server keeps their list). A request the
        other side's settings refuse is a 403 that does not say whether they blocked the caller.
        """
        if target_id == owner_id:
            raise errors.invalid_param("Invalid field user_id: you cannot add yourself as a contact.")
        if not await self._synapse_profiles.user_exists(target_id):
            raise errors.not_found("No such user.")
        if await self._store.get(owner_id, target_id) is not None:
            raise SynapseError(409, "This user is already in your contacts.", errors.CONTACT_EXISTS)
        now = self._synapse_server.now_ms()
        if self._config.contact_requests and self._api.is_mine(target_id):
            await self._rules.refuse(owner_id, target_id, "contact_request")
            if await self._store.accept_request(target_id, owner_id, nickname, now):
                return 201, await self.get(owner_id, target_id)
            if not await self._store.put_request(owner_id, target_id, message, nickname, now):
                raise SynapseError(409, "You have already sent this user a contact request.", errors.REQUEST_PENDING)
            request = await self._store.get_request(owner_id, target_id)
            assert request is not None
            await self._notifications.announce(target_id)
            return 202, {"status": "pending", "request": (await self._requests_json([request], incoming=False))[0]}
        if not await self._store.add(owner_id, target_id, nickname, now):
            raise SynapseError(409, "This user is already in your contacts.", errors.CONTACT_EXISTS)
        return 201, await self.get(owner_id, target_id)

    async def set_nickname(self, owner_id: str, contact_id: str, nickname: str | None) -> JsonDict:
        if not await self._store.update(owner_id, contact_id, {"nickname": nickname}, self._synapse_server.now_ms()):
            raise errors.not_found("This user is not in your contacts.")
        return await self.get(owner_id, contact_id)

    async def remove(self, owner_id: str, contact_id: str) -> None:
        """Removes the contact and its favourite tags. A block stays: it is Matrix's ignore list."""
        row = await self._row(owner_id, contact_id)
        await self._store.delete(owner_id, contact_id)
        if row.is_favorite:
            await self._tag_dms(owner_id, [contact_id], present=False)

    async def set_favorite(self, owner_id: str, contact_id: str, favorite: bool) -> JsonDict:
        if not await self._store.update(owner_id, contact_id, {"is_favorite": favorite}, self._synapse_server.now_ms()):
            raise errors.not_found("This user is not in your contacts.")
        await self._tag_dms(owner_id, [contact_id], present=favorite)
        return await self.get(owner_id, contact_id)

    async def set_blocked(self, owner_id: str, contact_id: str, blocked: bool) -> JsonDict:
        """Blocking adds the user to `m.ignored_user_list` (adding them to the list if needed, so
        the block shows here) and declines their pending request; unblocking removes only them.
        """
        if blocked and await self._store.get(owner_id, contact_id) is None:
            if contact_id == owner_id or not await self._synapse_profiles.user_exists(contact_id):
                raise errors.not_found("No such user.")
            await self._store.add(owner_id, contact_id, None, self._synapse_server.now_ms())
        await self._row(owner_id, contact_id)
        ignored = await self._rules.ignored_users(owner_id)
        if blocked != (contact_id in ignored):
            if blocked:
                ignored[contact_id] = {}
            else:
                del ignored[contact_id]
            data = thaw(await self._api.account_data_manager.get_global(owner_id, IGNORED_TYPE) or {})
            await self._api.account_data_manager.put_global(owner_id, IGNORED_TYPE, {**data, "ignored_users": ignored})
        if blocked:
            await self._store.set_request_status(contact_id, owner_id, DECLINED, self._synapse_server.now_ms())
        return await self.get(owner_id, contact_id)

    # --- favourite tags on DM rooms -------------------------------------------------------------

    async def _tag_dms(self, owner_id: str, contact_ids: list[str], present: bool, direct: Any = None) -> None:
        """Sets or clears `m.favourite` on the owner's DM rooms with the contacts (per `m.direct`)."""
        if direct is None:
            direct = await self._api.account_data_manager.get_global(owner_id, DIRECT_TYPE) or {}
        for contact_id in contact_ids:
            rooms = direct.get(contact_id)
            for room_id in rooms if isinstance(rooms, (list, tuple)) else ():
                if (
                    isinstance(room_id, str)
                    and (FAVOURITE_TAG in await self._synapse_rooms.room_tags(owner_id, room_id)) != present
                ):
                    await self._synapse_rooms.set_room_tag(owner_id, room_id, FAVOURITE_TAG, present)

    async def on_account_data_updated(
        self, user_id: str, room_id: str | None, account_data_type: str, content: JsonDict
    ) -> None:
        """A new DM with a favourite contact (any client updates `m.direct`) gets the tag too."""
        if room_id is not None or account_data_type != DIRECT_TYPE or not self._api.is_mine(user_id):
            return
        favorites = await self._store.favorites(user_id)
        if favorites:
            await self._tag_dms(user_id, favorites, present=True, direct=content)

    # --- contact requests -----------------------------------------------------------------------

    async def _requests_json(self, requests: list[ContactRequest], incoming: bool) -> list[JsonDict]:
        others = [r.requester_id if incoming else r.target_id for r in requests]
        profiles = {uid: await self._profiles.get(uid) if self._api.is_mine(uid) else None for uid in others}
        cards = await self._cards(
            (uid, *((p.role, p.institution, p.specialization) if (p := profiles[uid]) else (None, None, None)))
            for uid in others
        )
        return [
            {
                "id": other,
                "direction": "incoming" if incoming else "outgoing",
                "user": cards[other],
                "message": r.message,
                "status": r.status,
                "created_at": iso(r.created_ts),
            }
            for other, r in zip(others, requests)
        ]

    async def list_requests(self, user_id: str, incoming: bool, page: Page) -> JsonDict:
        """Pending requests to (or from) the user, ordered by the other side's user id."""
        requests = await self._store.list_requests(user_id, incoming, page.cursor, page.limit + 1)
        requests, cursor = _page(requests, page.limit, lambda r: r.requester_id if incoming else r.target_id)
        return {"results": await self._requests_json(requests, incoming), "next_cursor": cursor}

    async def accept(self, user_id: str, requester_id: str, nickname: str | None) -> JsonDict:
        """Both lists now hold each other; returns the new contact as the accepting user sees it."""
        if not await self._store.accept_request(requester_id, user_id, nickname, self._synapse_server.now_ms()):
            raise errors.not_found("No pending contact request from this user.")
        return await self.get(user_id, requester_id)

    async def decline(self, user_id: str, requester_id: str) -> None:
        if not await self._store.set_request_status(requester_id, user_id, DECLINED, self._synapse_server.now_ms()):
            raise errors.not_found("No pending contact request from this user.")

    async def cancel(self, user_id: str, target_id: str) -> None:
        if not await self._store.delete_request(user_id, target_id):
            raise errors.not_found("No pending contact request to this user.")
