"""GET /api/health: unauthenticated liveness and build facts for operators and load balancers."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import route
from medchat.api.schemas.responses import HEALTH
from medchat.synapse import SYNAPSE_VERSION, SynapseServer
from medchat.version import VERSION


class HealthServlet:
    def __init__(self, api: ModuleApi, synapse_server: SynapseServer):
        self._api = api
        self._synapse_server = synapse_server

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "GET", "/api/health", self.get, public=True, responses={200: HEALTH})

    async def get(self, request: Any) -> tuple[int, Any]:
        """Liveness and build facts (which process answered, whether it runs the background tasks)."""
        return 200, {
            "status": "ok",
            "version": VERSION,
            "server_name": self._api.server_name,
            "database": self._synapse_server.database_engine,
            "synapse_version": SYNAPSE_VERSION,
            "worker": self._synapse_server.worker_name,
            "background_tasks": self._synapse_server.runs_background_tasks,
        }
