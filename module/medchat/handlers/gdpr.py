"""GDPR: a person's data as one archive (export), and the right to erasure.

Export: Synapse's own data export (the events the person sent, their Matrix profile, devices,
sessions, account data, media list) plus the module's rows about them, zipped in a temporary
directory and streamed as a download; nothing large is held in memory.

Erasure: Synapse's deactivation with erasure (their events are hidden from later joiners, the
account is closed) and removal of every module row about them in one transaction; audit entries
stay, pseudonymised (medchat.store.audit explains why the hash chain still verifies).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Protocol

from synapse.module_api import ModuleApi

from medchat import errors
from medchat.handlers.accounts import Accounts
from medchat.handlers.audit import Audit
from medchat.handlers.expiry import Expiry
from medchat.models import JsonDict, localpart
from medchat.rules.contact import ContactRules
from medchat.store.gdpr import erase_txn, own_rows_txn
from medchat.synapse import SynapseAccounts, SynapseHttp, SynapseServer

EXPORT_ACTION = "gdpr.export"
MESSAGES_FILE = "messages.jsonl"


class ExportSink(Protocol):
    """Where an export goes, in plain JSON values: `event` per event the user sent, `part` per
    named piece of the rest (`matrix/profile`, `matrix/account_data/global`, ...)."""

    def event(self, event: JsonDict) -> None: ...

    def part(self, name: str, value: Any) -> None: ...


class _ArchiveSink:
    """Writes each export piece to its own file under `root` as it arrives (events one per line)."""

    def __init__(self, root: Path):
        self._root = root
        self._messages = open(root / MESSAGES_FILE, "w", encoding="utf-8")
        self.message_count = 0

    def event(self, event: JsonDict) -> None:
        self._messages.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.message_count += 1

    def part(self, name: str, value: Any) -> None:
        path = self._root / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str), encoding="utf-8")

    def close(self) -> None:
        self._messages.close()


def _zip_directory(root: Path, archive: Path) -> int:
    """Zips every file under `root` into `archive` (run in a thread); returns the archive's size."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())
    return archive.stat().st_size


def _origin(request: Any) -> str | None:
    address = request.getClientAddress()
    return getattr(address, "host", None)


class Gdpr:
    def __init__(
        self,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_http: SynapseHttp,
        synapse_accounts: SynapseAccounts,
        accounts: Accounts,
        rules: ContactRules,
        expiry: Expiry,
        audit: Audit,
    ):
        self._api = api
        self._synapse_server = synapse_server
        self._synapse_http = synapse_http
        self._synapse_accounts = synapse_accounts
        self._accounts = accounts
        self._rules = rules
        self._expiry = expiry
        self._audit = audit
        # user id -> their e-mail addresses, noted at the start of a deactivation (one process runs it whole)
        self._leaving: dict[str, list[str]] = {}

    # --- export ------------------------------------------------------------------------------

    async def _export_subject(self, caller: str, user_id: str | None) -> str:
        """Whose data: the caller's own, or any local user's for a server admin (subject access
        requests handled by staff); anyone else asking for another person's data gets 403."""
        if user_id is None or user_id == caller:
            return caller
        if not await self._api.is_user_admin(caller):
            raise errors.forbidden("You may export only your own data.")
        if not self._api.is_mine(user_id) or await self._api.check_user_exists(user_id) is None:
            raise errors.not_found("No such user.")
        return user_id

    async def export(self, caller: str, user_id: str | None, request: Any) -> None:
        """Builds the archive in a temporary directory, records `gdpr.export`, streams it."""
        subject = await self._export_subject(caller, user_id)
        with tempfile.TemporaryDirectory(prefix="medchat-export-") as tmp:
            root = Path(tmp) / "export"
            root.mkdir()
            sink = _ArchiveSink(root)
            try:
                await self._synapse_accounts.export_user_data(subject, sink)
            finally:
                sink.close()
            sink.part("profile", await self._accounts.view(subject, show_email=True))
            permissions, source = await self._rules.permissions_of(subject)
            sink.part("medchat/contact_permissions", {"permissions": permissions.to_json(), "source": source})
            rows = await self._api.run_db_interaction("medchat_gdpr_export", own_rows_txn, subject)
            for table, table_rows in rows.items():
                sink.part(f"medchat/{table}", table_rows)
            archive = Path(tmp) / "export.zip"
            size = await self._api.defer_to_thread(_zip_directory, root, archive)
            await self._audit.record(
                caller, EXPORT_ACTION, subject, {"bytes": size, "messages": sink.message_count}, _origin(request)
            )
            await self._synapse_http.send_file(
                request, os.fspath(archive), "application/zip", f"medchat-export-{localpart(subject)}.zip"
            )

    # --- erasure -----------------------------------------------------------------------------

    async def erase_own_account(self, user_id: str, password: str, request: Any) -> None:
        """Password-confirmed erasure of the caller's account.

        Order: the module's data first (one transaction, with the `gdpr.erasure` entry), then
        Synapse's deactivation with erasure. If the deactivation fails the account still works,
        so the client can simply retry (both steps are idempotent); Synapse's deactivation hook
        then runs the module step once more, catching anything written in between.
        """
        if not await self._synapse_accounts.check_password(user_id, password):
            raise errors.forbidden("Wrong password: the account was not erased.")
        await self._expiry.expire_all_of(user_id)
        await self._erase_module_data(user_id, _origin(request), {"by_admin": False})
        await self._synapse_accounts.deactivate_and_erase(user_id)

    async def before_deactivation(self, user_id: str, by_admin: bool) -> bool:
        """Synapse's `check_can_deactivate_user`, used only to note the person's e-mail addresses
        while they are still bound: the erasure after the deactivation forgets them everywhere.
        Never refuses a deactivation."""
        if self._api.is_mine(user_id):
            self._leaving[user_id] = await self._synapse_accounts.email_addresses(user_id)
        return True

    async def on_user_deactivation_status_changed(self, user_id: str, deactivated: bool, by_admin: bool) -> None:
        """Synapse's hook: a deactivation with erasure from anywhere (Element's "erase my data",
        the admin API) removes the module's data too, and what Synapse's own erasure leaves of the
        person outside the room history; a plain deactivation keeps it."""
        addresses = self._leaving.pop(user_id, [])
        if deactivated and self._api.is_mine(user_id) and await self._synapse_accounts.is_user_erased(user_id):
            await self._erase_module_data(user_id, None, {"by_admin": by_admin})
            await self._synapse_accounts.forget_erased_user(user_id, addresses)

    async def _erase_module_data(self, user_id: str, origin: str | None, details: JsonDict) -> None:
        await self._api.run_db_interaction(
            "medchat_gdpr_erase",
            erase_txn,
            self._synapse_server.database_engine,
            self._audit.store,
            user_id,
            self._synapse_server.now_ms(),
            origin,
            details,
        )
