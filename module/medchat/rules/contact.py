"""Gathers the facts the contact rules need and asks `decisions` for the verdict.

The facts: each side's role (their MedChat profile) and verification level (an injected lookup),
the recipient's `m.ignored_user_list` and `org.medchat.contact_permissions` account data, and
whether the recipient has the actor in their contact list.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jsonschema
from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat.config import MedChatConfig
from medchat.metrics import RULE_REFUSALS
from medchat.rules.decisions import (
    PERMISSIONS_SCHEMA,
    Party,
    Permissions,
    PolicyRule,
    Refusal,
    federation_refusal,
    policy_refusal,
    recipient_refusal,
)
from medchat.store import ContactStore, ProfileStore

logger = logging.getLogger(__name__)

LevelLookup = Callable[[str], Awaitable[str]]

PERMISSIONS_TYPE = "org.medchat.contact_permissions"
IGNORED_TYPE = "m.ignored_user_list"
SERVER_DEFAULT, ACCOUNT_DATA = "server_default", "account_data"


def thaw(value: Any) -> Any:
    """A plain, mutable JSON copy of (frozen) account data."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


class ContactRules:
    def __init__(
        self,
        config: MedChatConfig,
        api: ModuleApi,
        profiles: ProfileStore,
        contacts: ContactStore,
        level_of: LevelLookup,
    ):
        self._config = config
        self._api = api
        self._profiles = profiles
        self._contacts = contacts
        self._level_of = level_of
        self._policy = tuple(PolicyRule.parse(rule) for rule in config.contact_policy)
        self._default = Permissions(default=config.contact_permissions_default)
        self._validator = jsonschema.Draft202012Validator(PERMISSIONS_SCHEMA)

    @property
    def allow_list(self) -> tuple[str, ...] | None:
        """The servers (besides this one) whose users may be contacted; None allows all."""
        return self._config.federation_allow_list

    async def party(self, user_id: str) -> Party:
        profile = await self._profiles.get(user_id) if self._api.is_mine(user_id) else None
        return Party(user_id, profile.role if profile else None, await self._level_of(user_id))

    def _server_refusal(
        self, actor: Party, target: Party, action: str, federation_only: bool = False
    ) -> Refusal | None:
        refusal = None if federation_only else policy_refusal(self._policy, action, actor, target)
        return refusal or federation_refusal(
            self._config.federation_allow_list, self._api.server_name, actor.user_id, target.user_id
        )

    def require_federated(self, user_id: str) -> None:
        """403 with MedChat's errcode, naming the server, for a user of a server outside the
        allow-list: checked before anything asks that server (which Synapse itself refuses with
        a generic M_FORBIDDEN, as it sends nothing there)."""
        refusal = federation_refusal(self._config.federation_allow_list, self._api.server_name, user_id)
        if refusal is not None:
            raise refusal.as_error()

    async def check_server_rules(
        self, actor_id: str, target_id: str, action: str, federation_only: bool = False
    ) -> Refusal | None:
        """Only the server's policy (unless `federation_only`) and its federation allow-list."""
        return self._server_refusal(await self.party(actor_id), await self.party(target_id), action, federation_only)

    async def check(self, actor_id: str, target_id: str, action: str) -> Refusal | None:
        """Why `actor` may not do `action` (dm, invite, contact_request) to `target`, or None."""
        if actor_id == target_id:
            return None
        actor, target = await self.party(actor_id), await self.party(target_id)
        refusal = self._server_refusal(actor, target, action)
        if refusal is not None or not self._api.is_mine(target_id):
            return refusal  # a remote recipient's own settings are enforced by their server
        ignored = actor_id in await self.ignored_users(target_id)
        permissions, _ = await self.permissions_of(target_id)
        is_contact = await self._contacts.get(target_id, actor_id) is not None
        return recipient_refusal(permissions, action, actor, is_contact, ignored)

    async def refuse(self, actor_id: str, target_id: str, action: str) -> None:
        """`check` as an API error: 403 with MedChat's errcode and the rule's message, counted in
        medchat_rule_refusals_total as the Matrix-side refusals are (rules/callbacks.py)."""
        refusal = await self.check(actor_id, target_id, action)
        if refusal is not None:
            RULE_REFUSALS.labels(rule=refusal.rule, server_name=self._api.server_name).inc()
            raise refusal.as_error()

    # --- account data -------------------------------------------------------------------------

    async def ignored_users(self, user_id: str) -> dict[str, Any]:
        """The user's `m.ignored_user_list` entries (Element's "ignore" and MedChat's block)."""
        data = await self._api.account_data_manager.get_global(user_id, IGNORED_TYPE) or {}
        ignored = data.get("ignored_users")
        return thaw(ignored) if isinstance(ignored, Mapping) else {}

    async def permissions_of(self, user_id: str) -> tuple[Permissions, str]:
        """The user's permission setting and where it came from.

        A stored value that does not match the schema (any Matrix client can write it) is logged
        and replaced by the server default — never by "allow all" unless that is the default.
        """
        raw = await self._api.account_data_manager.get_global(user_id, PERMISSIONS_TYPE)
        if raw is None:
            return self._default, SERVER_DEFAULT
        raw = thaw(raw)
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(raw))
        if error is not None:
            logger.warning(
                "MedChat: unreadable %s of %s at %s (%s); using the server default",
                PERMISSIONS_TYPE,
                user_id,
                "/".join(map(str, error.absolute_path)) or "(top)",
                error.message,
            )
            return self._default, SERVER_DEFAULT
        return Permissions.parse(raw), ACCOUNT_DATA

    async def set_permissions(self, user_id: str, body: dict[str, Any]) -> Permissions:
        """Stores a setting already checked against PERMISSIONS_SCHEMA; 400 for an unknown role."""
        for side in ("allow", "block"):
            for i, role in enumerate((body.get(side) or {}).get("roles") or ()):
                if role not in self._config.roles:
                    raise SynapseError(
                        400,
                        f"Invalid field {side}.roles[{i}]: unknown role {role!r}; allowed: {', '.join(self._config.roles)}",
                        Codes.INVALID_PARAM,
                    )
        permissions = Permissions.parse(body)
        await self._api.account_data_manager.put_global(user_id, PERMISSIONS_TYPE, permissions.to_json())
        return permissions
