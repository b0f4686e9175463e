"""The app's REST API under /api: one file per resource family, all on one Synapse router."""

from __future__ import annotations

from typing import Protocol

from synapse.http.server import JsonResource

from medchat.accounts import Accounts
from medchat.api.auth import AuthServlets
from medchat.api.health import HealthServlet
from medchat.bridge import SynapseBridge


class Servlets(Protocol):
    def register_routes(self, resource: JsonResource) -> None: ...


def build_api_resource(bridge: SynapseBridge, accounts: Accounts, *more: Servlets) -> JsonResource:
    """The /api router; `more` are the feature servlets built in MedChatModule."""
    resource = bridge.json_resource()
    for servlets in (HealthServlet(bridge), AuthServlets(bridge.api, accounts), *more):
        servlets.register_routes(resource)
    return resource
