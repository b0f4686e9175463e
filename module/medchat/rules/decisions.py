"""Pure decisions about who may contact whom: plain values in, a `Refusal` (or None) out.

Three layers, checked in this order by `rules.contact.ContactRules`:
1. the server's policy (module config `contact_policy`): named deny rules on actor and target;
2. the federation allow-list (module config `federation_allow_list`);
3. the recipient's own permission setting (account data `org.medchat.contact_permissions`) and
   their `m.ignored_user_list`. A refusal here never says which of the two refused, so a blocked
   user cannot tell that they were blocked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.levels import LEVELS
from medchat.models import USER_ID_SCHEMA

ACTIONS = ("dm", "invite", "contact_request")
ALLOW_ALL, BLOCK_ALL = "allow_all", "block_all"

RECIPIENT_RULE = "recipient_settings"
FEDERATION_RULE = "federation_allow_list"

_ACTION_WORDS = {"dm": "start a direct chat with", "invite": "invite", "contact_request": "send a contact request to"}


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


@dataclass(frozen=True)
class Party:
    """What the rules know about one side: the user, their role (local profile) and level."""

    user_id: str
    role: str | None
    level: str

    @property
    def server(self) -> str:
        return server_of(self.user_id)


@dataclass(frozen=True)
class Refusal:
    rule: str
    message: str

    def error_fields(self) -> dict[str, str]:
        """The JSON error body of a 403: MedChat's errcode, a message naming the rule, the rule."""
        return {"errcode": errors.CONTACT_REFUSED, "error": self.message, "org.medchat.rule": self.rule}

    def as_error(self) -> SynapseError:
        """The refusal as an API error: 403 with MedChat's errcode, the message and the rule."""
        fields = self.error_fields()
        return SynapseError(403, fields.pop("error"), fields.pop("errcode"), additional_fields=fields)


@dataclass(frozen=True)
class Group:
    """Users picked by server, role or verification level (any listed value matches)."""

    servers: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    levels: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Group:
        raw = raw or {}
        return cls(*(frozenset(raw.get(key) or ()) for key in ("servers", "roles", "levels")))

    def selects(self, party: Party) -> bool:
        """True if `party` matches any listed server, role or level."""
        return party.server in self.servers or party.role in self.roles or party.level in self.levels

    def requires(self, party: Party) -> bool:
        """True if `party` matches every field that lists something (a policy selector)."""
        return (
            (not self.servers or party.server in self.servers)
            and (not self.roles or party.role in self.roles)
            and (not self.levels or party.level in self.levels)
        )


# --- server policy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyRule:
    name: str
    description: str
    actions: frozenset[str]
    actor: Group
    target: Group

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PolicyRule:
        """A rule from the module config (already validated against the config schema)."""
        return cls(
            name=raw["name"],
            description=raw.get("description") or "",
            actions=frozenset(raw["actions"]),
            actor=Group.parse(raw.get("actor")),
            target=Group.parse(raw.get("target")),
        )


def policy_refusal(rules: Iterable[PolicyRule], action: str, actor: Party, target: Party) -> Refusal | None:
    """The first server rule that refuses `actor` doing `action` to `target`, if any."""
    for rule in rules:
        if action in rule.actions and rule.actor.requires(actor) and rule.target.requires(target):
            why = f": {rule.description}" if rule.description else "."
            return Refusal(rule.name, f"Refused by server policy '{rule.name}'{why}")
    return None


def federation_refusal(allow_list: Iterable[str] | None, own_server: str, *user_ids: str) -> Refusal | None:
    """Refuses contact with a user of a server outside the allow-list (None allows all)."""
    if allow_list is None:
        return None
    allowed = {own_server, *allow_list}
    for server in map(server_of, user_ids):
        if server not in allowed:
            return Refusal(
                FEDERATION_RULE,
                f"Refused by rule '{FEDERATION_RULE}': {server} is not a server this one federates with.",
            )
    return None


# --- the recipient's own setting -------------------------------------------------------------


@dataclass(frozen=True)
class Exceptions:
    users: frozenset[str] = frozenset()
    group: Group = Group()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Exceptions:
        return cls(frozenset((raw or {}).get("users") or ()), Group.parse(raw))

    def to_json(self) -> dict[str, list[str]]:
        return {
            "users": sorted(self.users),
            "servers": sorted(self.group.servers),
            "roles": sorted(self.group.roles),
            "levels": sorted(self.group.levels, key=LEVELS.index),
        }


@dataclass(frozen=True)
class Permissions:
    """A user's "who may contact me" setting (TI-Messenger's permission config, improved).

    The most specific entry wins: a listed user (block before allow), then the user's contacts
    (if `allow_contacts`), then server/role/level groups (block before allow), then `default`.
    """

    default: str
    allow_contacts: bool = True
    allow: Exceptions = Exceptions()
    block: Exceptions = Exceptions()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Permissions:
        """From JSON already checked against PERMISSIONS_SCHEMA."""
        return cls(
            default=raw["default"],
            allow_contacts=raw.get("allow_contacts", True),
            allow=Exceptions.parse(raw.get("allow")),
            block=Exceptions.parse(raw.get("block")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "default": self.default,
            "allow_contacts": self.allow_contacts,
            "allow": self.allow.to_json(),
            "block": self.block.to_json(),
        }

    def permits(self, sender: Party, sender_is_contact: bool) -> bool:
        if sender.user_id in self.block.users:
            return False
        if sender.user_id in self.allow.users or (self.allow_contacts and sender_is_contact):
            return True
        if self.block.group.selects(sender):
            return False
        if self.allow.group.selects(sender):
            return True
        return self.default == ALLOW_ALL


def recipient_refusal(
    permissions: Permissions, action: str, sender: Party, sender_is_contact: bool, ignored: bool
) -> Refusal | None:
    """Refuses if the recipient ignores (blocks) the sender or their setting does not permit them.

    Both give the same message, so the sender cannot learn that they are blocked.
    """
    if ignored or not permissions.permits(sender, sender_is_contact):
        return Refusal(
            RECIPIENT_RULE,
            f"Refused by rule '{RECIPIENT_RULE}': this user's contact settings do not let you {_ACTION_WORDS[action]} them.",
        )
    return None


# --- JSON Schema of the stored / PUT permission setting --------------------------------------

_SERVER = {"type": "string", "pattern": r"^[A-Za-z0-9.\-\[\]:]+$", "maxLength": 255}


def _list(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item, "uniqueItems": True, "maxItems": 1000}


_EXCEPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "users": _list(USER_ID_SCHEMA),
        "servers": _list(_SERVER),
        "roles": _list({"type": "string", "minLength": 1, "maxLength": 100}),
        "levels": _list({"enum": list(LEVELS)}),
    },
}

PERMISSIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["default"],
    "properties": {
        "default": {"enum": [ALLOW_ALL, BLOCK_ALL]},
        "allow_contacts": {"type": "boolean"},
        "allow": _EXCEPTIONS,
        "block": _EXCEPTIONS,
    },
}
