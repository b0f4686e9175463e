"""Mirrors the medical profile into the user's Matrix profile, so every Matrix client sees it.

Role, institution, specialization and verification level are published as one extended profile
field (MSC4133, served on `/_matrix/client/v3/profile/{user_id}`), under PROFILE_FIELD. The field
is derived data: the module's row is the truth, and any other writer (a user editing the field
from a Matrix client to claim a level) is overwritten straight after, from `on_profile_update`.
"""

from __future__ import annotations

from synapse.module_api import ProfileInfo

from medchat.levels import is_verified
from medchat.models import JsonDict, Profile
from medchat.store import ProfileStore
from medchat.synapse import SynapseProfiles

PROFILE_FIELD = "org.medchat.profile"


def field_value(profile: Profile) -> JsonDict:
    return {
        "role": profile.role,
        "institution": profile.institution,
        "specialization": profile.specialization,
        "verification_level": profile.verification_level,
        "is_verified": is_verified(profile.verification_level),
    }


class ProfileMirror:
    def __init__(self, synapse_profiles: SynapseProfiles, profiles: ProfileStore):
        self._synapse_profiles = synapse_profiles
        self._profiles = profiles

    async def sync(self, user_id: str) -> None:
        """Makes the Matrix profile field equal to the module's row (no write if it already is)."""
        profile = await self._profiles.get(user_id)
        if profile is None:
            return
        wanted = field_value(profile)
        if await self._synapse_profiles.get_profile_field(user_id, PROFILE_FIELD) != wanted:
            await self._synapse_profiles.set_profile_field(user_id, PROFILE_FIELD, wanted)

    async def on_profile_update(
        self, user_id: str, new_profile: ProfileInfo, by_admin: bool, deactivation: bool
    ) -> None:
        """Synapse's third-party-rules callback: a display name / avatar / field changed anywhere.

        Copies the display name and avatar into the directory row (so an Element-side rename is
        searchable at once) and restores the mirrored field if someone else wrote it.
        """
        if deactivation:
            return
        if await self._profiles.set_identity(user_id, new_profile.display_name, new_profile.avatar_url):
            await self.sync(user_id)
