"""Other servers' users as this server shows them: `GET /api/chat/users/{remote id}`, remote
contacts' cards, and the level the rules use for a remote user.

Everything comes from one federation profile query to the user's own server (Synapse's profile
handler), cached for CACHE_MS, at most CACHE_SIZE users (a lookup that failed for
FAILURE_CACHE_MS, so an unreachable server is not asked again on every card):
- display name and avatar: the Matrix profile;
- verification level: only a valid attestation signed by that server (medchat.federation.attestation);
  the level its mirrored field claims is ignored;
- role, institution and specialization: the remote module's mirrored field (PROFILE_FIELD), which
  only that module writes (its clients' writes are refused, medchat.synapse.profile_guard). They
  are that server's word about its own user, as its directory answers are.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.federation.attestation import ATTESTATION_FIELD, Attestations
from medchat.handlers.mirror import PROFILE_FIELD
from medchat.levels import UNVERIFIED, is_verified
from medchat.models import JsonDict, MatrixIdentity, chat_user
from medchat.rules.decisions import federation_refusal, server_of
from medchat.synapse import SynapseFederation, SynapseServer
from medchat.util import concurrently
from medchat.wellformed import remote_text

logger = logging.getLogger(__name__)

CACHE_MS = 60 * 1000
FAILURE_CACHE_MS = 30 * 1000
# How long a lookup waits for the user's server (a card in a list waits as long, once).
TIMEOUT_S = 5.0
CACHE_SIZE = 2000


@dataclass(frozen=True)
class RemoteProfile:
    """What this server believes about a user of another server."""

    user_id: str
    display_name: str | None
    avatar_url: str | None
    role: str | None
    institution: str | None
    specialization: str | None
    level: str

    def chat_user(self) -> JsonDict:
        """The ChatUser model, with `home_server`: no e-mail, presence or timestamps (their server
        keeps those), no bio (the mirrored field has none)."""
        identity = MatrixIdentity(self.display_name, self.avatar_url, None, False, None)
        model = chat_user(self.user_id, None, identity, show_email=False)
        model.update(
            role=self.role,
            institution=self.institution,
            specialization=self.specialization,
            is_verified=is_verified(self.level),
            verification_level=self.level,
            home_server=server_of(self.user_id),
        )
        return model


class RemoteProfiles:
    def __init__(
        self,
        synapse_server: SynapseServer,
        federation: SynapseFederation,
        attestations: Attestations,
        allow_list: Iterable[str] | None,
    ):
        self._synapse_server = synapse_server
        self._federation = federation
        self._attestations = attestations
        self._allow_list = None if allow_list is None else tuple(allow_list)
        self._cache: OrderedDict[str, tuple[int, RemoteProfile | SynapseError]] = OrderedDict()

    async def get(self, user_id: str) -> RemoteProfile:
        """The remote user's profile, or the error to answer:
        - 403 ORG_MEDCHAT_CONTACT_REFUSED (`federation_allow_list`): their server is not one this
          server federates with (nothing is asked of it);
        - 404 M_NOT_FOUND: not a user id of another server, or their server has no such user;
        - 502 ORG_MEDCHAT_SERVER_UNREACHABLE: their server could not be reached; 504 with the same
          errcode: it did not answer within TIMEOUT_S;
        - their server's own refusal, as it gave it (e.g. its allow-list's, naming the rule).
        """
        if not server_of(user_id) or self._synapse_server.api.is_mine(user_id):  # not a user id, or ours
            raise errors.not_found("No such user.")
        refusal = federation_refusal(self._allow_list, self._synapse_server.server_name, user_id)
        if refusal is not None:
            raise refusal.as_error()
        now = self._synapse_server.now_ms()
        cached = self._cache.get(user_id)
        if cached is None or cached[0] <= now:
            cached = await self._fetch(user_id, now)
            self._cache[user_id] = cached
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(user_id)
        if isinstance(cached[1], SynapseError):
            raise cached[1]
        return cached[1]

    async def many(self, user_ids: Iterable[str]) -> dict[str, RemoteProfile]:
        """The profiles of those of `user_ids` that can be had (for cards: a failure leaves a user out)."""
        wanted = sorted(set(user_ids))

        async def one(user_id: str) -> RemoteProfile | None:
            try:
                return await self.get(user_id)
            except SynapseError:
                return None

        found = await concurrently(*[partial(one, u) for u in wanted])
        return {u: p for u, p in zip(wanted, found) if p is not None}

    async def level(self, user_id: str) -> str:
        """The remote user's attested level; unverified when it cannot be had (the rules' lookup)."""
        try:
            return (await self.get(user_id)).level
        except SynapseError as e:
            logger.info("MedChat: no profile of %s: %s", user_id, e)
            return UNVERIFIED

    async def _fetch(self, user_id: str, now: int) -> tuple[int, RemoteProfile | SynapseError]:
        server = server_of(user_id)
        try:
            raw = await self._federation.remote_profile(user_id, TIMEOUT_S)
        except TimeoutError as e:
            logger.info("MedChat: no profile of %s: %s", user_id, e)
            error = SynapseError(
                504,
                f"{user_id}'s server {server} did not answer within {TIMEOUT_S:g}s; try again later.",
                errors.SERVER_UNREACHABLE,
            )
            return now + FAILURE_CACHE_MS, error
        except SynapseError as e:
            if e.code == 404:
                error = errors.not_found(f"No such user: {server} has no user {user_id}.")
            elif e.code >= 500:
                error = SynapseError(
                    502,
                    f"{user_id}'s server {server} could not be reached; try again later.",
                    errors.SERVER_UNREACHABLE,
                )
            else:
                error = e  # their server's refusal, passed on as it gave it
            logger.info("MedChat: no profile of %s: %s", user_id, e)
            return now + FAILURE_CACHE_MS, error
        mirrored = raw.get(PROFILE_FIELD)
        mirrored = mirrored if isinstance(mirrored, dict) else {}
        profile = RemoteProfile(
            user_id=user_id,
            display_name=remote_text(raw.get("displayname")),
            avatar_url=remote_text(raw.get("avatar_url")),
            role=remote_text(mirrored.get("role")),
            institution=remote_text(mirrored.get("institution")),
            specialization=remote_text(mirrored.get("specialization")),
            level=await self._attestations.level_from(user_id, raw.get(ATTESTATION_FIELD)),
        )
        return now + CACHE_MS, profile
