"""What every family of the adapter holds: the module API, the homeserver, its main store and clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synapse.module_api import ModuleApi
from synapse.types import Requester, UserID, create_requester

if TYPE_CHECKING:
    from synapse.server import HomeServer


class Family:
    """One family of Synapse calls (accounts, rooms, events, ...). Each MedChat feature is given
    only the families it needs, so what it may do to Synapse reads from its constructor."""

    def __init__(self, api: ModuleApi, hs: HomeServer):
        self.api = api
        self._hs = hs
        self._store = hs.get_datastores().main
        self._clock = hs.get_clock()

    @property
    def server_name(self) -> str:
        return self.api.server_name


def requester_for(user_id: str) -> Requester:
    """Acting as a local user from a background task (no request, no device)."""
    return create_requester(UserID.from_string(user_id))
