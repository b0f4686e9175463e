"""Matrix's user-directory search (what Element's "start chat" box shows) obeys the directory.

Synapse asks `check_username_for_spam` about every result; "spammy" results are dropped. A user
outside the MedChat directory (hidden, or below the listing level) is dropped for everyone, and a
searcher below the search level gets no results at all, exactly as the REST directory answers.
"""

from __future__ import annotations

from synapse.module_api import UserProfile

from medchat.handlers.directory import Directory
from medchat.store import DirectoryStore


class DirectoryRules:
    def __init__(self, directory: Directory, store: DirectoryStore):
        self._directory = directory
        self._store = store

    async def check_username_for_spam(self, user_profile: UserProfile, requester_id: str) -> bool:
        """True (leave out) if the result is not listed, or the searcher may not search."""
        user_id = user_profile["user_id"]
        visibility = await self._store.visibility([user_id])
        if user_id in visibility and not self._directory.is_listed(*visibility[user_id]):
            return True
        return not await self._directory.may_search(requester_id)
