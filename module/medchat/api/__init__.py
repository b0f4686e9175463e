"""The app's REST API under /api: one file per resource family, all on one Synapse router."""

from __future__ import annotations

from synapse.http.server import JsonResource

from medchat.accounts import Accounts
from medchat.api.auth import AuthServlets
from medchat.api.health import HealthServlet
from medchat.api.upload import UploadServlets
from medchat.bridge import SynapseBridge
from medchat.media.uploads import MediaUploads


def build_api_resource(bridge: SynapseBridge, accounts: Accounts, uploads: MediaUploads) -> JsonResource:
    resource = bridge.json_resource()
    for servlets in (HealthServlet(bridge), AuthServlets(bridge.api, accounts), UploadServlets(bridge.api, uploads)):
        servlets.register_routes(resource)
    return resource
