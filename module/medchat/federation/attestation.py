"""Verification that travels: a licence check other servers can trust without trusting the
user or the profile fields their server mirrors.

For a `license_verified` user, their server signs `{user_id, level, registration_body,
issued_ts, expires_ts}` with its Matrix signing key and publishes it as the extended profile
field ATTESTATION_FIELD (served over federation profile queries) and with its directory answers.
Another server believes it only if the signature verifies with the origin's published key
(Synapse's keyring), the origin is the user's own server, it names the user and it has not
expired; anything else — forged, altered, expired, missing — reads as unverified. Fetching a
remote user's profile to check (and its cache) is medchat.federation.profiles.
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi, ProfileInfo

from medchat.levels import LEVELS, LICENSE_VERIFIED, UNVERIFIED
from medchat.models import JsonDict
from medchat.rules.decisions import server_of
from medchat.store import ProfileStore, VerificationStore
from medchat.synapse import SynapseFederation, SynapseProfiles, SynapseServer

ATTESTATION_FIELD = "org.medchat.attestation"
ATTESTATION_KEY = ATTESTATION_FIELD  # the same object, beside a federated search result
VALIDITY_MS = 7 * 24 * 3600 * 1000
RENEW_BEFORE_MS = VALIDITY_MS // 2
_CLOCK_SKEW_MS = 5 * 60 * 1000
_FIELDS = ("user_id", "level", "registration_body", "issued_ts", "expires_ts")


def well_formed(value: Any, user_id: str) -> bool:
    if not isinstance(value, dict) or value.get("user_id") != user_id or value.get("level") not in LEVELS:
        return False
    return all(isinstance(value.get(k), int) for k in ("issued_ts", "expires_ts")) and isinstance(
        value.get("signatures"), dict
    )


class Attestations:
    def __init__(
        self,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_profiles: SynapseProfiles,
        server: SynapseFederation,
        profiles: ProfileStore,
        verification_store: VerificationStore,
    ):
        self._api = api
        self._synapse_server = synapse_server
        self._synapse_profiles = synapse_profiles
        self._server = server
        self._profiles = profiles
        self._verification_store = verification_store

    # --- the user's own server ----------------------------------------------------------------------

    async def _issue(self, user_id: str, level: str) -> JsonDict:
        requests = await self._verification_store.requests("approved", user_id, None, 50)
        body = next((r.registration_body for r in requests if r.level == level), None)
        now = self._synapse_server.now_ms()
        return self._server.sign(
            {
                "user_id": user_id,
                "level": level,
                "registration_body": body,
                "issued_ts": now,
                "expires_ts": now + VALIDITY_MS,
            }
        )

    async def current(self, user_id: str) -> JsonDict | None:
        """The published attestation of a local user, (re)issued if missing or half-expired;
        None (and any old one withdrawn) unless they are licence-verified."""
        profile = await self._profiles.get(user_id)
        level = profile.verification_level if profile else UNVERIFIED
        published = await self._synapse_profiles.get_profile_field(user_id, ATTESTATION_FIELD)
        if level != LICENSE_VERIFIED:
            if published:
                await self._synapse_profiles.set_profile_field(user_id, ATTESTATION_FIELD, None)
            return None
        fresh = (
            well_formed(published, user_id)
            and published.get("level") == level
            and published.get("expires_ts", 0) - self._synapse_server.now_ms() > RENEW_BEFORE_MS
            and await self.level_from(user_id, published) == level  # not edited by a Matrix client
        )
        if fresh:
            return dict(published)
        attestation = await self._issue(user_id, level)
        await self._synapse_profiles.set_profile_field(user_id, ATTESTATION_FIELD, attestation)
        return attestation

    async def published(self, user_ids: list[str]) -> dict[str, JsonDict]:
        """user id -> current attestation, for the licence-verified among `user_ids`."""
        found = {u: await self.current(u) for u in user_ids}
        return {u: a for u, a in found.items() if a is not None}

    async def on_profile_update(
        self, user_id: str, new_profile: ProfileInfo, by_admin: bool, deactivation: bool
    ) -> None:
        """A level change rewrites the mirrored profile field, which lands here: publish or withdraw."""
        if not deactivation and self._api.is_mine(user_id):
            await self.current(user_id)

    # --- other servers' users -----------------------------------------------------------------------

    async def level_from(self, user_id: str, attestation: Any) -> str:
        """The level an attestation proves for `user_id`, or unverified if it proves nothing."""
        now = self._synapse_server.now_ms()
        if not well_formed(attestation, user_id):
            return UNVERIFIED
        if not attestation["issued_ts"] - _CLOCK_SKEW_MS <= now < attestation["expires_ts"]:
            return UNVERIFIED
        signed = {k: attestation[k] for k in (*_FIELDS, "signatures") if k in attestation}
        if not await self._server.verify_server_signature(server_of(user_id), signed, now):
            return UNVERIFIED
        return attestation["level"]
