"""MedChat: the Synapse module behind a medical chat app.

Synapse keeps rooms, events, receipts and media; this module adds the medical profile and the
app's REST API (/api/...), mapped onto Matrix so every Matrix client sees the same truth.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import ModuleApi

from medchat.accounts import Accounts
from medchat.api import build_api_resource
from medchat.bridge import SynapseBridge
from medchat.config import MedChatConfig
from medchat.api.realtime import RealtimeServlets
from medchat.realtime.notifications import Notifications
from medchat.realtime.presence import Presence
from medchat.realtime.socket import SocketHub
from medchat.realtime.status import MessageStatus
from medchat.store.realtime import DeliveryStore, DismissedNotificationStore
from medchat.store import ProfileStore, apply_migrations

logger = logging.getLogger(__name__)


class MedChatModule:
    """Loaded by Synapse from the `modules:` list; wires config, storage, rules and the REST API."""

    def __init__(self, config: MedChatConfig, api: ModuleApi):
        bridge = SynapseBridge(api)
        applied = bridge.run_startup_transaction(
            "medchat_migrations", lambda txn: apply_migrations(txn, bridge.database_engine)
        )
        if applied:
            logger.info("MedChat: applied schema migrations %s", applied)
        accounts = Accounts(config, bridge, ProfileStore(api))
        status = MessageStatus(bridge, DeliveryStore(api))
        realtime = RealtimeServlets(
            api, status, Presence(bridge), Notifications(bridge, DismissedNotificationStore(api))
        )
        sockets = SocketHub(bridge, config.websocket, status)
        api.register_web_resource("/api", build_api_resource(bridge, accounts, realtime, sockets.resource()))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> MedChatConfig:
        return MedChatConfig.parse(config)
