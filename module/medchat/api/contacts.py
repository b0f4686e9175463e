"""/api/chat/contacts*: the contact list, contact requests and who-may-contact-me settings.

`{id}` is the other user's Matrix id (URL-encoded). Every route acts on the caller's own list only.
"""

from __future__ import annotations

import re
from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat import errors
from medchat.api.http import (
    Query,
    bool_query,
    cursor_query,
    limit_query,
    query_bool,
    query_limit,
    query_string,
    read_json_dict,
    route,
    text_query,
)
from medchat.api.schemas.responses import (
    CONTACT,
    CONTACT_PAGE,
    CONTACT_PENDING,
    CONTACT_PERMISSIONS,
    CONTACT_REQUEST_PAGE,
    EMPTY,
)
from medchat.handlers.contacts import Contacts, Page
from medchat.models import CONTACT_ACCEPT_BODY, CONTACT_ADD_BODY, CONTACT_UPDATE_BODY, USER_ID_SCHEMA
from medchat.rules.contact import ACCOUNT_DATA, ContactRules
from medchat.rules.decisions import PERMISSIONS_SCHEMA
from medchat.store.contacts import ContactFilters

PAGE_DEFAULT, PAGE_MAX = 50, 100
BASE = "/api/chat/contacts"
_USER_ID = re.compile(USER_ID_SCHEMA["pattern"])


_PAGE = (limit_query(PAGE_DEFAULT, PAGE_MAX), cursor_query(255))
_LIST_QUERY = (
    bool_query("favorite", "only favourites (or only the others)"),
    bool_query("blocked", "only blocked contacts (or only the others)"),
    text_query("role", "only this role"),
    text_query("institution", "only this institution"),
    text_query("q", "matches names, nicknames and usernames"),
    *_PAGE,
)
_REQUESTS_QUERY = (
    Query("direction", {"enum": ["incoming", "outgoing"], "default": "incoming"}, "whose requests"),
    *_PAGE,
)


def _page(request: Any) -> Page:
    return Page(
        limit=query_limit(request, PAGE_DEFAULT, PAGE_MAX), cursor=query_string(request, "cursor", max_length=255)
    )


def _has_body(request: Any) -> bool:
    """Whether a body was sent (accepting a request may send none)."""
    content = request.content
    if content is None:
        return False
    position = content.tell()
    present = bool(content.read(1))
    content.seek(position)
    return present


class ContactServlets:
    def __init__(self, api: ModuleApi, contacts: Contacts, rules: ContactRules):
        self._api = api
        self._contacts = contacts
        self._rules = rules

    def register_routes(self, resource: JsonResource) -> None:
        # The fixed paths first: `{id}` would match "requests" and "permissions" too.
        contact, empty = {200: CONTACT}, {200: EMPTY}
        route(resource, "GET", f"{BASE}/permissions", self.get_permissions, responses={200: CONTACT_PERMISSIONS})
        route(
            resource,
            "PUT",
            f"{BASE}/permissions",
            self.put_permissions,
            body=PERMISSIONS_SCHEMA,
            responses={200: CONTACT_PERMISSIONS},
        )
        route(
            resource,
            "GET",
            f"{BASE}/requests",
            self.list_requests,
            query=_REQUESTS_QUERY,
            responses={200: CONTACT_REQUEST_PAGE},
        )
        route(
            resource,
            "POST",
            f"{BASE}/requests/{{id}}/accept",
            self.accept,
            body=CONTACT_ACCEPT_BODY,
            body_required=False,
            responses=contact,
        )
        route(resource, "POST", f"{BASE}/requests/{{id}}/decline", self.decline, responses=empty)
        route(resource, "DELETE", f"{BASE}/requests/{{id}}", self.cancel, responses=empty)
        route(resource, "GET", BASE, self.list, query=_LIST_QUERY, responses={200: CONTACT_PAGE})
        route(resource, "POST", BASE, self.add, body=CONTACT_ADD_BODY, responses={201: CONTACT, 202: CONTACT_PENDING})
        route(resource, "GET", f"{BASE}/{{id}}", self.get, responses=contact)
        route(resource, "PUT", f"{BASE}/{{id}}", self.put, body=CONTACT_UPDATE_BODY, responses=contact)
        route(resource, "DELETE", f"{BASE}/{{id}}", self.delete, responses=empty)
        route(resource, "POST", f"{BASE}/{{id}}/favorite", self.favorite, responses=contact)
        route(resource, "DELETE", f"{BASE}/{{id}}/favorite", self.unfavorite, responses=contact)
        route(resource, "POST", f"{BASE}/{{id}}/block", self.block, responses=contact)
        route(resource, "DELETE", f"{BASE}/{{id}}/block", self.unblock, responses=contact)

    async def _me(self, request: Any, id: str | None = None) -> str:
        """The caller, after authenticating them; 400 if the path's `{id}` is no Matrix user id."""
        me = (await self._api.get_user_by_req(request)).user.to_string()
        if id is not None and not _USER_ID.match(id):
            raise errors.invalid_param(f"Invalid user id in path: {id!r}")
        return me

    # --- the list -------------------------------------------------------------------------------

    async def list(self, request: Any) -> tuple[int, Any]:
        """The caller's contacts, with live online state."""
        me = await self._me(request)
        filters = ContactFilters(
            favorite=query_bool(request, "favorite"),
            blocked=query_bool(request, "blocked"),
            role=query_string(request, "role"),
            institution=query_string(request, "institution"),
        )
        return 200, await self._contacts.list(me, filters, query_string(request, "q"), _page(request))

    async def add(self, request: Any) -> tuple[int, Any]:
        """Adds a contact: a request to accept (202) or, without requests, the contact at once (201).

        400 for yourself, 404 for an unknown user, 409 if it exists or is pending, 403
        `ORG_MEDCHAT_CONTACT_REFUSED` when the rules refuse.
        """
        me = await self._me(request)
        body = read_json_dict(request)
        target = body.get("user_id") or body["contact_id"]
        return await self._contacts.add(me, target, body.get("nickname"), body.get("message"))

    async def get(self, request: Any, id: str) -> tuple[int, Any]:
        """One contact of the caller's."""
        return 200, await self._contacts.get(await self._me(request, id), id)

    async def put(self, request: Any, id: str) -> tuple[int, Any]:
        """Sets the contact's nickname."""
        me = await self._me(request, id)
        body = read_json_dict(request)
        return 200, await self._contacts.set_nickname(me, id, body["nickname"])

    async def delete(self, request: Any, id: str) -> tuple[int, Any]:
        """Removes a contact (a block stays)."""
        await self._contacts.remove(await self._me(request, id), id)
        return 200, {}

    async def favorite(self, request: Any, id: str) -> tuple[int, Any]:
        """Marks a favourite: tags the DM rooms with them `m.favourite`."""
        return 200, await self._contacts.set_favorite(await self._me(request, id), id, True)

    async def unfavorite(self, request: Any, id: str) -> tuple[int, Any]:
        """Unmarks a favourite."""
        return 200, await self._contacts.set_favorite(await self._me(request, id), id, False)

    async def block(self, request: Any, id: str) -> tuple[int, Any]:
        """Blocks a user: an entry in the Matrix ignore list (`m.ignored_user_list`)."""
        return 200, await self._contacts.set_blocked(await self._me(request, id), id, True)

    async def unblock(self, request: Any, id: str) -> tuple[int, Any]:
        """Unblocks a user."""
        return 200, await self._contacts.set_blocked(await self._me(request, id), id, False)

    # --- requests -------------------------------------------------------------------------------

    async def list_requests(self, request: Any) -> tuple[int, Any]:
        """Pending contact requests, to or from the caller."""
        me = await self._me(request)
        direction = query_string(request, "direction") or "incoming"
        if direction not in ("incoming", "outgoing"):
            raise errors.invalid_param("Invalid parameter direction: use incoming or outgoing")
        return 200, await self._contacts.list_requests(me, direction == "incoming", _page(request))

    async def accept(self, request: Any, id: str) -> tuple[int, Any]:
        """Accepts a contact request (optionally naming the new contact)."""
        me = await self._me(request, id)
        body = read_json_dict(request) if _has_body(request) else {}
        return 200, await self._contacts.accept(me, id, body.get("nickname"))

    async def decline(self, request: Any, id: str) -> tuple[int, Any]:
        """Declines a contact request."""
        await self._contacts.decline(await self._me(request, id), id)
        return 200, {}

    async def cancel(self, request: Any, id: str) -> tuple[int, Any]:
        """Withdraws the caller's own contact request."""
        await self._contacts.cancel(await self._me(request, id), id)
        return 200, {}

    # --- who may contact me ---------------------------------------------------------------------

    async def get_permissions(self, request: Any) -> tuple[int, Any]:
        """Who may contact the caller (account data `org.medchat.contact_permissions`)."""
        permissions, source = await self._rules.permissions_of(await self._me(request))
        return 200, {"permissions": permissions.to_json(), "source": source}

    async def put_permissions(self, request: Any) -> tuple[int, Any]:
        """Sets who may contact the caller."""
        me = await self._me(request)
        permissions = await self._rules.set_permissions(me, read_json_dict(request))
        return 200, {"permissions": permissions.to_json(), "source": ACCOUNT_DATA}
