"""The app's REST API under /api: one file per resource family, all on one Synapse router."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource

from medchat.accounts import Accounts
from medchat.api.auth import AuthServlets
from medchat.api.health import HealthServlet
from medchat.bridge import SynapseBridge


def build_api_resource(bridge: SynapseBridge, accounts: Accounts, *features: Any) -> JsonResource:
    """`features`: further servlet groups (objects with `register_routes(resource)`)."""
    resource = bridge.json_resource()
    for servlets in (HealthServlet(bridge), AuthServlets(bridge.api, accounts), *features):
        servlets.register_routes(resource)
    return resource
