"""The audit trail: who did what, when and from where, tamper-evident (a hash chain).

Written in the same transaction as the module's own writes (verification decisions), on the code
path that performs an action (admin profile edits, media deletions), and for case-room membership,
edits and deletions from Synapse's `on_new_event` — which runs after the event is persisted, so a
crash in between could lose that entry (the event itself stays in the room's history).
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi

from medchat import errors
from medchat.metrics import AUDIT_VERIFY_FAILURES
from medchat.models import JsonDict, iso
from medchat.roomtypes import CASE_ROOM
from medchat.store.audit import GENESIS, AuditEntry, AuditStore, broken_link
from medchat.synapse import SynapseAccounts, SynapseServer

_VERIFY_BATCH = 1000


def entry_json(entry: AuditEntry) -> JsonDict:
    return {
        "seq": entry.seq,
        "at": iso(entry.ts),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "origin": entry.origin,
        "hash": entry.hash,
    }


class Audit:
    def __init__(
        self, api: ModuleApi, synapse_server: SynapseServer, synapse_accounts: SynapseAccounts, store: AuditStore
    ):
        self._api = api
        self._synapse_server = synapse_server
        self._synapse_accounts = synapse_accounts
        self.store = store

    async def record(
        self, actor: str, action: str, target: str | None, details: JsonDict, origin: str | None = None
    ) -> None:
        """Appends an entry; an erased user (e.g. leaving case rooms after their erasure) is
        recorded by pseudonym only, with the origin of their own actions pseudonymised too."""
        pseudonyms = self.store.pseudonyms
        if await self._synapse_accounts.is_user_erased(actor):
            actor, origin = pseudonyms.of(actor), pseudonyms.optional(origin)
        if target is not None and target.startswith("@") and await self._synapse_accounts.is_user_erased(target):
            target = pseudonyms.of(target)
        await self.store.append(self._synapse_server.now_ms(), actor, action, target, details, origin)

    async def _require_admin(self, user_id: str) -> None:
        if not await self._api.is_user_admin(user_id):
            raise errors.forbidden("Only server admins may read the audit trail.")

    async def page(self, caller: str, filters: dict[str, Any], before: int | None, limit: int) -> JsonDict:
        await self._require_admin(caller)
        entries = await self.store.page(filters, before, limit)
        return {
            "results": [entry_json(e) for e in entries],
            "next_cursor": str(entries[-1].seq) if len(entries) == limit else None,
        }

    async def verify(self, caller: str) -> JsonDict:
        """Recomputes the whole chain; reports the first entry whose link does not hold."""
        await self._require_admin(caller)
        prev, seq, checked = GENESIS, 1, 0
        while True:
            batch = await self.store.chain(seq - 1, _VERIFY_BATCH)
            broken, prev, seq = broken_link(self.store.pseudonyms, batch, prev, seq)
            if broken is not None:
                AUDIT_VERIFY_FAILURES.labels(server_name=self._api.server_name).inc()
                return {"ok": False, "entries_checked": broken - 1, "first_broken_seq": broken}
            checked += len(batch)
            if len(batch) < _VERIFY_BATCH:
                return {"ok": True, "entries_checked": checked, "first_broken_seq": None}

    async def on_new_event(self, event: Any, state_events: Any) -> None:
        """Case-room membership changes, edits and deletions, whichever client made them."""
        create = state_events.get(("m.room.create", ""))
        if create is None or create.content.get("type") != CASE_ROOM:
            return
        if event.type == "m.room.member":
            action, target, details = (
                "case_room.membership",
                event.state_key,
                {"membership": event.content.get("membership")},
            )
        elif event.type == "m.room.redaction":
            action, target, details = "case_room.message_deleted", event.redacts or event.content.get("redacts"), {}
        elif (
            event.type == "m.room.message" and (event.content.get("m.relates_to") or {}).get("rel_type") == "m.replace"
        ):
            action, target, details = "case_room.message_edited", event.content["m.relates_to"].get("event_id"), {}
        else:
            return
        await self.record(
            event.sender, action, target, {"room_id": event.room_id, "event_id": event.event_id, **details}
        )
