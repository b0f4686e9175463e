"""Credential verification: the ladder unverified → identity_verified → license_verified.

A user asks for a level with their registration body and licence number (and optionally a
document, an `mxc://` upload); a verifier — a server admin, or a user named for the user's
institution in `verifiers:` — approves or rejects it with a reason. Each step is logged (who,
when, why), the user gets a `verification_decision` notification, and the Matrix profile mirror
is refreshed. `level_of` is the one function the rest of the module asks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError
from synapse.storage.database import LoggingTransaction

from medchat import errors
from medchat.config import MedChatConfig
from medchat.handlers.mirror import ProfileMirror
from medchat.levels import LEVELS, UNVERIFIED, is_verified, rank
from medchat.models import JsonDict, iso
from medchat.store import ProfileStore, VerificationStore
from medchat.store.audit import AuditStore
from medchat.store.notifications import NotificationStore, add_notification_txn
from medchat.store.profiles import get_profile_txn
from medchat.store.verification import (
    APPROVED,
    PENDING,
    REJECTED,
    LogEntry,
    VerificationRequest,
    decide_txn,
    get_request_txn,
    new_request_id,
    record_txn,
)
from medchat.synapse import SynapseServer

if TYPE_CHECKING:
    from medchat.api.schemas.requests import VerificationRequestBody

NOTIFICATION_TYPE = "verification_decision"
_LIST_LIMIT = 500


def request_json(request: VerificationRequest) -> JsonDict:
    return {
        "id": request.request_id,
        "user_id": request.user_id,
        "level": request.level,
        "registration_body": request.registration_body,
        "license_number": request.license_number,
        "document": request.document_url,
        "institution": request.institution,
        "status": request.status,
        "reason": request.reason,
        "decided_by": request.decided_by,
        "created_at": iso(request.created_ts),
        "decided_at": iso(request.decided_ts),
    }


def log_json(entry: LogEntry) -> JsonDict:
    return {
        "action": entry.action,
        "actor": entry.actor,
        "request_id": entry.request_id,
        "level_before": entry.level_before,
        "level_after": entry.level_after,
        "reason": entry.reason,
        "at": iso(entry.ts),
    }


class Verification:
    def __init__(
        self,
        config: MedChatConfig,
        api: ModuleApi,
        synapse_server: SynapseServer,
        store: VerificationStore,
        profiles: ProfileStore,
        mirror: ProfileMirror,
        notifications: NotificationStore,
        audit: AuditStore,
        remote_level: Callable[[str], Awaitable[str]] | None = None,
    ):
        self._config = config
        self._api = api
        self._synapse_server = synapse_server
        self._store = store
        self._profiles = profiles
        self._mirror = mirror
        self._notifications = notifications
        self._audit = audit
        self._remote_level = remote_level

    async def level_of(self, user_id: str) -> str:
        """The user's verification level; `unverified` for anyone without a MedChat profile.

        A user of another server has the level their server attests with a valid signature
        (`remote_level`, medchat.federation.attestation), never what their profile fields claim.
        """
        if self._remote_level is not None and not self._api.is_mine(user_id):
            return await self._remote_level(user_id)
        profile = await self._profiles.get(user_id)
        return profile.verification_level if profile else UNVERIFIED

    async def institutions_verified_by(self, user_id: str) -> list[str] | None:
        """The institutions whose requests `user_id` may decide; None means all (server admin)."""
        if await self._api.is_user_admin(user_id):
            return None
        return [institution for institution, users in self._config.verifiers.items() if user_id in users]

    async def may_verify(self, user_id: str, institution: str | None) -> bool:
        allowed = await self.institutions_verified_by(user_id)
        return allowed is None or (institution is not None and institution in allowed)

    # --- the user's side ------------------------------------------------------------------------

    async def submit(self, user_id: str, body: VerificationRequestBody) -> JsonDict:
        profile = await self._profiles.get(user_id)
        if profile is None:
            raise errors.not_found("This account has no MedChat profile.")
        current = profile.verification_level
        level = body.level or LEVELS[min(rank(current) + 1, len(LEVELS) - 1)]
        if rank(level) <= rank(current):
            raise errors.invalid_param(f"Already at {current}; ask for a higher level than that.")
        request = VerificationRequest(
            request_id=new_request_id(),
            user_id=user_id,
            level=level,
            registration_body=body.registration_body,
            license_number=body.license_number,
            document_url=body.document,
            institution=profile.institution,
            status=PENDING,
            reason=None,
            decided_by=None,
            created_ts=self._synapse_server.now_ms(),
            decided_ts=None,
        )
        if not await self._store.create(request, current):
            raise SynapseError(409, "A verification request of yours is already pending.", errors.CONFLICT)
        return request_json(request)

    async def status_of(self, user_id: str) -> JsonDict:
        """The caller's level, their requests and the full history of their verification."""
        level = await self.level_of(user_id)
        requests = await self._store.requests(None, user_id, None, _LIST_LIMIT)
        return {
            "user_id": user_id,
            "verification_level": level,
            "is_verified": is_verified(level),
            "requests": [request_json(r) for r in requests],
            "history": [log_json(e) for e in await self._store.history(user_id)],
        }

    # --- the verifier's side --------------------------------------------------------------------

    async def list_requests(self, viewer: str, status: str | None, offset: int, limit: int) -> JsonDict:
        """A page of the requests the viewer may decide, oldest first, paged by position."""
        institutions = await self.institutions_verified_by(viewer)
        if institutions == []:
            raise errors.forbidden("Only verifiers may list verification requests.")
        requests = await self._store.requests(status, None, institutions, limit + 1, offset)
        more = len(requests) > limit
        return {
            "results": [request_json(r) for r in requests[:limit]],
            "next_cursor": str(offset + limit) if more else None,
        }

    async def decide(self, verifier: str, request_id: str, approve: bool, reason: str | None) -> JsonDict:
        """Approves or rejects a pending request (a rejection with its reason, which RejectionBody
        requires); 409 if it was already decided."""
        now = self._synapse_server.now_ms()
        status = APPROVED if approve else REJECTED

        def txn(t: LoggingTransaction) -> VerificationRequest | str:
            self._audit.open_txn(t)
            request = get_request_txn(t, request_id)
            if request is None:
                return "missing"
            if request.status != PENDING:
                return "decided"
            if not decide_txn(t, request_id, status, verifier, reason, now):
                return "decided"
            profile = get_profile_txn(t, request.user_id)
            before = profile.verification_level if profile else UNVERIFIED
            after = request.level if approve and rank(request.level) > rank(before) else before
            record_txn(t, LogEntry(request.user_id, request_id, status, verifier, before, after, reason, now))
            payload = {
                "request_id": request_id,
                "status": status,
                "level": after,
                "reason": reason,
                "decided_by": verifier,
            }
            add_notification_txn(t, request.user_id, NOTIFICATION_TYPE, payload, now)
            self._audit.append_txn(
                t,
                now,
                verifier,
                f"verification.{status}",
                request.user_id,
                {"request_id": request_id, "level_before": before, "level_after": after, "reason": reason},
                None,
            )
            return get_request_txn(t, request_id) or "missing"  # the row was just updated: never missing

        request = await self._store.get(request_id)
        if request is None:
            raise errors.not_found("No such verification request.")
        if not await self.may_verify(verifier, request.institution):
            raise errors.forbidden("You may not decide verification requests of this institution.")
        outcome = await self._store.run("verification_decide", txn)
        if outcome == "missing":
            raise errors.not_found("No such verification request.")
        if isinstance(outcome, str):
            raise SynapseError(409, "This request has already been decided.", errors.CONFLICT)
        await self._mirror.sync(outcome.user_id)
        await self._notifications.announce(outcome.user_id)
        return request_json(outcome)

    # --- profile edits ----------------------------------------------------------------------------

    async def reset(self, user_id: str, actor: str, reason: str) -> None:
        """Back to unverified (a verified field changed without a verifier): logged and mirrored."""
        now = self._synapse_server.now_ms()

        def txn(t: LoggingTransaction) -> None:
            profile = get_profile_txn(t, user_id)
            if profile is not None and profile.verification_level != UNVERIFIED:
                record_txn(
                    t, LogEntry(user_id, None, "reset", actor, profile.verification_level, UNVERIFIED, reason, now)
                )

        await self._store.run("verification_reset", txn)
