"""The module's own tables: only what Matrix has no place for."""

from medchat.store.contacts import ContactStore
from medchat.store.migrations import apply_migrations
from medchat.store.profiles import ProfileStore

__all__ = ["ContactStore", "ProfileStore", "apply_migrations"]
