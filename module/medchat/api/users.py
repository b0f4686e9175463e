"""/api/chat/users*, /api/chat/institutions: the practitioner directory and profiles."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import read_json, read_query, route
from medchat.api.schemas.queries import DirectoryQuery, DirectorySearchQuery, PageQuery
from medchat.api.schemas.requests import ChatUserUpdateBody
from medchat.api.schemas.responses import CHAT_USER, INSTITUTIONS, USER_PAGE
from medchat.federation.directory import FederatedDirectory
from medchat.handlers.accounts import Accounts
from medchat.handlers.directory import Directory
from medchat.synapse import SynapseProfiles, SynapseServer


class UserServlets:
    def __init__(
        self,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_profiles: SynapseProfiles,
        accounts: Accounts,
        directory: Directory,
        federated: FederatedDirectory | None = None,
    ):
        self._synapse_server = synapse_server
        self._synapse_profiles = synapse_profiles
        self._api = api
        self._accounts = accounts
        self._directory = directory
        self._federated = federated

    def register_routes(self, resource: JsonResource) -> None:
        # The fixed paths first: the router tries patterns in order and {id} matches any segment.
        route(resource, "GET", "/api/chat/users", self.list, query=DirectoryQuery, responses={200: USER_PAGE})
        route(
            resource,
            "GET",
            "/api/chat/users/search",
            self.search,
            query=DirectorySearchQuery,
            responses={200: USER_PAGE},
        )
        route(
            resource,
            "GET",
            "/api/chat/users/filter",
            self.list,
            query=DirectoryQuery,
            responses={200: USER_PAGE},
            name="filter",
        )
        route(resource, "GET", "/api/chat/users/{user_id}", self.get, responses={200: CHAT_USER})
        route(
            resource,
            "PUT",
            "/api/chat/users/{user_id}",
            self.put,
            body=ChatUserUpdateBody,
            responses={200: CHAT_USER},
        )
        route(
            resource, "GET", "/api/chat/institutions", self.institutions, query=PageQuery, responses={200: INSTITUTIONS}
        )

    async def _caller(self, request: Any) -> str:
        return (await self._api.get_user_by_req(request)).user.to_string()

    async def list(self, request: Any) -> tuple[int, Any]:
        """The practitioner directory in name order, filtered."""
        return 200, await self._directory.browse(await self._caller(request), read_query(request, DirectoryQuery))

    async def search(self, request: Any) -> tuple[int, Any]:
        """Searches the directory, best match first (`rc_user_directory` applies)."""
        requester = await self._api.get_user_by_req(request)
        await self._synapse_profiles.ratelimit_directory_search(requester)
        query = read_query(request, DirectorySearchQuery)
        if query.scope == "federation" and self._federated is not None:
            return 200, await self._federated.search(requester.user.to_string(), query, self._synapse_server.now_ms())
        return 200, await self._directory.search(requester.user.to_string(), query)

    async def get(self, request: Any, user_id: str) -> tuple[int, Any]:
        """One user's ChatUser."""
        return 200, await self._directory.get(await self._caller(request), user_id)

    async def put(self, request: Any, user_id: str) -> tuple[int, Any]:
        """Changes a profile (the user themselves or a server admin).

        Changing role, institution or specialization of a verified user resets them to
        `unverified` unless an admin or a verifier of their institution does it.
        """
        caller = await self._caller(request)
        body = read_json(request, ChatUserUpdateBody)
        return 200, await self._accounts.update_profile(caller, user_id, body)

    async def institutions(self, request: Any) -> tuple[int, Any]:
        """The institutions of listed users, with member counts."""
        query = read_query(request, PageQuery)
        return 200, await self._directory.institutions(await self._caller(request), query.offset(), query.limit)
