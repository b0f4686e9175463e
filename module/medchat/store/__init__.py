"""The module's own tables: only what Matrix has no place for."""

from medchat.store.contacts import ContactStore
from medchat.store.directory import DirectoryStore
from medchat.store.migrations import apply_migrations
from medchat.store.profiles import ProfileStore
from medchat.store.verification import VerificationStore

__all__ = ["ContactStore", "DirectoryStore", "ProfileStore", "VerificationStore", "apply_migrations"]
