"""The app's REST API under /api: one file per resource family, all on one Synapse router,
plus the WebSocket at /api/chat/ws."""

from __future__ import annotations

from typing import Any, Protocol

from synapse.http.server import JsonResource

from twisted.web.resource import Resource

from medchat.api.auth import AuthServlets
from medchat.api.health import HealthServlet
from medchat.api.http import WEBSOCKET_PATH, routes_of
from medchat.api.openapi import DocsServlets
from medchat.handlers.accounts import Accounts
from medchat.synapse import Synapse


class Servlets(Protocol):
    def register_routes(self, resource: JsonResource) -> None: ...


class ApiRoot(Resource):
    """/api: the WebSocket path goes to the socket resource, every other path to the JSON router
    (both match on the full path)."""

    isLeaf = True

    def __init__(self, json_resource: JsonResource, websocket: Resource):
        super().__init__()
        self._json = json_resource
        self._websocket = websocket

    def render(self, request: Any) -> Any:
        return (self._websocket if request.path == WEBSOCKET_PATH else self._json).render(request)


def build_api_resource(synapse: Synapse, accounts: Accounts, websocket: Resource, *more: Servlets) -> Resource:
    """The /api resource; `more` are the feature servlets built in MedChatModule."""
    resource = synapse.http.json_resource()
    every: list[Servlets] = [
        HealthServlet(synapse.server.api, synapse.server),
        AuthServlets(synapse.server.api, accounts),
        *more,
        DocsServlets(routes_of(resource)),
    ]
    for servlets in every:
        servlets.register_routes(resource)
    return ApiRoot(resource, websocket)
