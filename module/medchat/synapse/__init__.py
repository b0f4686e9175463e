"""The adapter onto Synapse: every use of Synapse's internals lives in this package.

The module API (`synapse.module_api.ModuleApi`) covers callbacks, auth and database access, and is
used wherever it has the call. What it lacks (password login with refresh tokens, password resets
through Synapse's mailer, registration with a password, start-up migrations on a dedicated
connection, the GDPR export and deactivation with erasure, paging and serialising events as
clients see them) is reached through the homeserver object, reusing Synapse's own handlers rather
than re-implementing them.

The adapter is split by family, one class each; a feature is handed only the families it uses.
`sql.py` holds every statement on Synapse's own tables, `upload_guard.py` and `profile_guard.py` the
request patches (and `server.py` the one of Synapse's allow-list refusal), so a Synapse upgrade is
reviewed there first (the tested range is pinned in pyproject.toml).
"""

from __future__ import annotations

import synapse
from synapse.module_api import ModuleApi

from medchat.synapse.accounts import SynapseAccounts
from medchat.synapse.events import EventPosition, PageReads, Span, SynapseEvents
from medchat.synapse.federation import SynapseFederation
from medchat.synapse.http import SynapseHttp
from medchat.synapse.media import SynapseMedia
from medchat.synapse.profiles import SynapseProfiles
from medchat.synapse.rooms import SynapseRooms
from medchat.synapse.search import SynapseSearch
from medchat.synapse.server import SynapseServer
from medchat.synapse.stream import SynapseStream

__all__ = [
    "SYNAPSE_VERSION",
    "EventPosition",
    "PageReads",
    "Span",
    "Synapse",
    "SynapseAccounts",
    "SynapseEvents",
    "SynapseFederation",
    "SynapseHttp",
    "SynapseMedia",
    "SynapseProfiles",
    "SynapseRooms",
    "SynapseSearch",
    "SynapseServer",
    "SynapseStream",
]

SYNAPSE_VERSION: str = synapse.__version__


class Synapse:
    """Every family, built once by the module class, which hands each feature the ones it needs."""

    def __init__(self, api: ModuleApi):
        hs = api._hs  # the one place the module holds the homeserver object
        self.server = SynapseServer(api, hs)
        self.http = SynapseHttp(api, hs)
        self.accounts = SynapseAccounts(api, hs)
        self.profiles = SynapseProfiles(api, hs)
        self.rooms = SynapseRooms(api, hs)
        self.events = SynapseEvents(api, hs)
        self.search = SynapseSearch(api, hs)
        self.media = SynapseMedia(api, hs)
        self.stream = SynapseStream(api, hs)
        self.federation = SynapseFederation(hs)
