"""The app's REST API under /api: one file per resource family, all on one Synapse router."""

from __future__ import annotations

from synapse.http.server import JsonResource

from medchat.accounts import Accounts
from medchat.api.auth import AuthServlets
from medchat.api.health import HealthServlet
from medchat.api.users import UserServlets
from medchat.api.verification import VerificationServlets
from medchat.bridge import SynapseBridge
from medchat.directory import Directory
from medchat.verification import Verification


def build_api_resource(bridge: SynapseBridge, accounts: Accounts, directory: Directory, verification: Verification) -> JsonResource:
    resource = bridge.json_resource()
    for servlets in (
        HealthServlet(bridge),
        AuthServlets(bridge.api, accounts),
        UserServlets(bridge, accounts, directory),
        VerificationServlets(bridge.api, verification),
    ):
        servlets.register_routes(resource)
    return resource
