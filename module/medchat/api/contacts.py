"""/api/chat/contacts*: the contact list, contact requests and who-may-contact-me settings.

`{id}` is the other user's Matrix id (URL-encoded). Every route acts on the caller's own list only.
"""

from __future__ import annotations

import re
from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat import errors
from medchat.api.http import read_json, read_query, route
from medchat.api.schemas.queries import ContactListQuery, ContactRequestsQuery
from medchat.api.schemas.requests import (
    ContactAcceptBody,
    ContactAddBody,
    ContactPermissionsBody,
    ContactUpdateBody,
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
from medchat.models import USER_ID_PATTERN
from medchat.rules.contact import ACCOUNT_DATA, ContactRules
from medchat.store.contacts import ContactFilters

BASE = "/api/chat/contacts"
_USER_ID = re.compile(USER_ID_PATTERN)


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
            body=ContactPermissionsBody,
            responses={200: CONTACT_PERMISSIONS},
        )
        route(
            resource,
            "GET",
            f"{BASE}/requests",
            self.list_requests,
            query=ContactRequestsQuery,
            responses={200: CONTACT_REQUEST_PAGE},
        )
        route(
            resource,
            "POST",
            f"{BASE}/requests/{{id}}/accept",
            self.accept,
            body=ContactAcceptBody,
            body_required=False,
            responses=contact,
        )
        route(resource, "POST", f"{BASE}/requests/{{id}}/decline", self.decline, responses=empty)
        route(resource, "DELETE", f"{BASE}/requests/{{id}}", self.cancel, responses=empty)
        route(resource, "GET", BASE, self.list, query=ContactListQuery, responses={200: CONTACT_PAGE})
        route(resource, "POST", BASE, self.add, body=ContactAddBody, responses={201: CONTACT, 202: CONTACT_PENDING})
        route(resource, "GET", f"{BASE}/{{id}}", self.get, responses=contact)
        route(resource, "PUT", f"{BASE}/{{id}}", self.put, body=ContactUpdateBody, responses=contact)
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
        query = read_query(request, ContactListQuery)
        filters = ContactFilters(
            favorite=query.favorite,
            blocked=query.blocked,
            role=query.role,
            institution=query.institution,
            specialization=query.specialization,
        )
        return 200, await self._contacts.contacts_of(me, filters, query.q, Page(query.limit, query.cursor))

    async def add(self, request: Any) -> tuple[int, Any]:
        """Adds a contact: a request to accept (202) or, without requests, the contact at once (201).

        400 for yourself, 404 for an unknown user, 409 if it exists or is pending, 403
        `ORG_MEDCHAT_CONTACT_REFUSED` when the rules refuse.
        """
        me = await self._me(request)
        body = read_json(request, ContactAddBody)
        return await self._contacts.add(me, body.target, body.nickname, body.message)

    async def get(self, request: Any, id: str) -> tuple[int, Any]:
        """One contact of the caller's."""
        return 200, await self._contacts.get(await self._me(request, id), id)

    async def put(self, request: Any, id: str) -> tuple[int, Any]:
        """Sets the contact's nickname."""
        me = await self._me(request, id)
        return 200, await self._contacts.set_nickname(me, id, read_json(request, ContactUpdateBody).nickname)

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
        query = read_query(request, ContactRequestsQuery)
        page = Page(query.limit, query.cursor)
        return 200, await self._contacts.list_requests(me, query.direction == "incoming", page)

    async def accept(self, request: Any, id: str) -> tuple[int, Any]:
        """Accepts a contact request (optionally naming the new contact)."""
        me = await self._me(request, id)
        nickname = read_json(request, ContactAcceptBody, optional=True).nickname
        return 200, await self._contacts.accept(me, id, nickname)

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
        permissions = await self._rules.set_permissions(me, read_json(request, ContactPermissionsBody).setting())
        return 200, {"permissions": permissions.to_json(), "source": ACCOUNT_DATA}
