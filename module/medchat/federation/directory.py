"""The federated practitioner directory: `GET /api/chat/users/search?scope=federation`.

The local search (medchat.handlers.directory) and the same search on every server of
`federation_allow_list`, asked in parallel over `PEER_PATH` — a module endpoint that only answers
requests signed by an allowed server (`X-Matrix`, checked with Synapse's keyring), rate-limited
per origin. Answers are cached for `cache_seconds`; a peer that is down or slower than
`timeout_seconds` is reported in `peers` and does not fail the search. A remote result's
`is_verified` comes only from an attestation signed by its home server (medchat.federation.attestation).
"""

from __future__ import annotations

import re
from typing import Any

from synapse.api.errors import Codes
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.api.schemas.queries import DirectorySearchQuery, PeerSearchQuery
from medchat.config import MedChatConfig
from medchat.federation.attestation import ATTESTATION_KEY, Attestations
from medchat.handlers.directory import Directory
from medchat.levels import is_verified
from medchat.models import JsonDict, localpart
from medchat.rules.decisions import server_of
from medchat.synapse import SynapseFederation
from medchat.wellformed import remote_text

PEER_PATH = "/_medchat/federation/v1/users/search"
# What a peer's search may narrow by (the rest of the filters are this server's own vocabulary).
PEER_PARAMS = tuple(PeerSearchQuery.model_fields)
_TEXT_FIELDS = (
    "profile_image",
    "bio",
    "specialization",
    "institution",
    "role",
    "last_seen",
    "created_at",
    "updated_at",
)
_WORD = re.compile(r"\w+")


def match_tier(result: JsonDict, q: str) -> int:
    """0 exact name, 1 name starts with the query, 2 a name word starts with a query word,
    3 anything else the server matched (institution, specialization, ...)."""
    name = (result.get("user", {}).get("full_name") or "").casefold()
    username = (result.get("user", {}).get("username") or "").casefold()
    query = q.strip().casefold()
    if query in (name, username):
        return 0
    if name.startswith(query) or username.startswith(query):
        return 1
    words = _WORD.findall(query)
    if any(w.startswith(qw) for w in _WORD.findall(name) for qw in words):
        return 2
    return 3


def merge(q: str, ranked_lists: list[list[JsonDict]], limit: int) -> list[JsonDict]:
    """One ranking over every server's results: by match tier, then each server's own order
    (interleaved), verified before unverified as the last tie-break."""
    keyed = [
        (match_tier(r, q), position, not r.get("is_verified"), r.get("home_server", ""), r)
        for results in ranked_lists
        for position, r in enumerate(results)
    ]
    keyed.sort(key=lambda k: k[:4])
    return [k[4] for k in keyed[:limit]]


class FederatedDirectory:
    def __init__(
        self,
        config: MedChatConfig,
        server: SynapseFederation,
        directory: Directory,
        attestations: Attestations,
        own_server: str,
    ):
        self._config = config.federation_directory
        self._peers = [s for s in (config.federation_allow_list or ()) if s != own_server]
        self._server = server
        self._directory = directory
        self._attestations = attestations
        self._own_server = own_server
        self._ratelimit = server.ratelimiter(
            "medchat_federated_directory", self._config.per_second, self._config.burst_count
        )
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, JsonDict]] = {}

    # --- the asking side --------------------------------------------------------------------------

    async def search(self, viewer: str, query: DirectorySearchQuery, now_ms: int) -> JsonDict:
        """The local results (checked, limited and ranked by medchat.handlers.directory) merged with the
        allow-listed peers'; each with its `home_server`. One page: `next_cursor` is null."""
        if query.cursor is not None:
            raise SynapseError(
                400,
                "Invalid parameter cursor: a federated search has one page; narrow the query instead",
                Codes.INVALID_PARAM,
            )
        local = await self._directory.search(viewer, query)
        for result in local["results"]:
            result["home_server"] = self._own_server
        asked = {k: str(getattr(query, k)) for k in PEER_PARAMS if k in query.model_fields_set}
        answers = await self._ask_peers(asked, now_ms)
        peers, remote = [], []
        for server in self._peers:
            answer = answers[server]
            if isinstance(answer, Exception):
                peers.append({"server": server, "status": "timeout" if isinstance(answer, TimeoutError) else "error"})
                continue
            peers.append({"server": server, "status": "ok"})
            remote.append(await self._remote_results(server, answer))
        return {
            "results": merge(query.q, [local["results"], *remote], query.limit),
            "next_cursor": None,
            "peers": peers,
        }

    async def _ask_peers(self, args: dict[str, str], now_ms: int) -> dict[str, Any]:
        key_args = tuple(sorted(args.items()))
        answers: dict[str, Any] = {}
        for server in self._peers:
            cached = self._cache.get((server, key_args))
            if cached is not None and cached[0] > now_ms:
                answers[server] = cached[1]
        missing = [s for s in self._peers if s not in answers]
        if missing:
            fetched = await self._server.get_json_from_servers(missing, PEER_PATH, args, self._config.timeout_seconds)
            for server, answer in fetched.items():
                answers[server] = answer
                if not isinstance(answer, Exception) and self._config.cache_seconds:
                    self._cache[(server, key_args)] = (now_ms + self._config.cache_seconds * 1000, answer)
        self._cache = {k: v for k, v in self._cache.items() if v[0] > now_ms}
        return answers

    async def _remote_results(self, server: str, answer: Any) -> list[JsonDict]:
        """A peer's results as ChatUsers: only its own users, only known fields, verified only by
        a valid attestation from that server."""
        raw_results = answer.get("results") if isinstance(answer, dict) else None
        results = []
        for raw in raw_results if isinstance(raw_results, list) else []:
            user_id = raw.get("id") if isinstance(raw, dict) else None
            if not isinstance(user_id, str) or not user_id.startswith("@") or server_of(user_id) != server:
                continue
            user = raw.get("user") if isinstance(raw.get("user"), dict) else {}
            level = await self._attestations.level_from(user_id, raw.get(ATTESTATION_KEY))
            results.append(
                {
                    "id": user_id,
                    "user": {
                        "id": user_id,
                        "username": localpart(user_id),
                        "email": None,
                        "full_name": remote_text(user.get("full_name")) or localpart(user_id),
                    },
                    "is_online": raw.get("is_online") is True,
                    **{field: remote_text(raw.get(field)) for field in _TEXT_FIELDS},
                    "is_verified": is_verified(level),
                    "verification_level": level,
                    "home_server": server,
                }
            )
        return results

    # --- the answering side -----------------------------------------------------------------------

    async def answer(self, origin: str, query: PeerSearchQuery) -> JsonDict:
        """A peer's search of this server's directory (the origin is already authenticated)."""
        if origin not in self._peers:
            raise errors.forbidden(f"{origin} is not a server this one federates with.")
        await self._ratelimit(origin)
        found = await self._directory.search(
            None, DirectorySearchQuery.model_validate(query.model_dump(exclude_unset=True))
        )
        attestations = await self._attestations.published([r["id"] for r in found["results"] if r["is_verified"]])
        for result in found["results"]:
            if result["id"] in attestations:
                result[ATTESTATION_KEY] = attestations[result["id"]]
        return {"results": found["results"]}
