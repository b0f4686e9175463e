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
from medchat.api.contacts import ContactServlets
from medchat.api.messages import MessageServlets
from medchat.api.rooms import RoomServlets
from medchat.bridge import SynapseBridge
from medchat.config import MedChatConfig
from medchat.contacts import Contacts
from medchat.messages import Messages
from medchat.rooms import Rooms
from medchat.rules.callbacks import ContactSpamChecker
from medchat.rules.contact import ContactRules
from medchat.store import ContactStore, ProfileStore, apply_migrations

logger = logging.getLogger(__name__)


async def _everyone_unverified(user_id: str) -> str:
    return "unverified"


class MedChatModule:
    """Loaded by Synapse from the `modules:` list; wires config, storage, rules and the REST API."""

    def __init__(self, config: MedChatConfig, api: ModuleApi):
        bridge = SynapseBridge(api)
        applied = bridge.run_startup_transaction(
            "medchat_migrations", lambda txn: apply_migrations(txn, bridge.database_engine)
        )
        if applied:
            logger.info("MedChat: applied schema migrations %s", applied)
        profiles = ProfileStore(api)
        accounts = Accounts(config, bridge, profiles)
        contact_store = ContactStore(api)
        # Until the directory lands, everyone is unverified; its `Verification.level_of` replaces this.
        rules = ContactRules(config, api, profiles, contact_store, _everyone_unverified)
        contacts = Contacts(config, bridge, contact_store, profiles, rules)
        ContactSpamChecker(rules, bridge).register(api)
        api.register_account_data_callbacks(on_account_data_updated=contacts.on_account_data_updated)
        rooms = Rooms(bridge)
        features = [
            ContactServlets(api, contacts, rules),
            RoomServlets(api, rooms),
            MessageServlets(api, Messages(bridge, rooms)),
        ]
        api.register_web_resource("/api", build_api_resource(bridge, accounts, *features))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> MedChatConfig:
        return MedChatConfig.parse(config)
