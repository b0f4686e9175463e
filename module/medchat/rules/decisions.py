"""Pure decisions about who may contact whom and who may be in a room: plain values in, a
`Refusal` (or None) out.

Three layers of contact rules, checked in this order by `rules.contact.ContactRules`:
1. the server's policy (module config `contact_policy`): named deny rules on a pair of users,
   whichever of the two acts (so no room is left that one side may never join);
2. the federation allow-list (module config `federation_allow_list`);
3. the recipient's own permission setting (account data `org.medchat.contact_permissions`) and
   their `m.ignored_user_list`. A refusal here never says which of the two refused, so a blocked
   user cannot tell that they were blocked.

Every membership change is one `MembershipChange` (an invite, a join or a knock, whatever route
made it: `/invite`, `createRoom`'s `invite` and `initial_state`, a state PUT, `/join`, `/knock`,
federation); `rules.membership.MembershipRules.decide` asks the layers above and the case-room
rules below about it. `creation_changes` reads a `createRoom` request as the changes it will make.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from synapse.module_api import UserID
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.levels import LEVELS, LICENSE_VERIFIED
from medchat.models import USER_ID_SCHEMA
from medchat.roomtypes import CASE_ROOM

ALLOW_ALL, BLOCK_ALL = "allow_all", "block_all"

RECIPIENT_RULE = "recipient_settings"
FEDERATION_RULE = "federation_allow_list"
CASE_ROOM_RULE = "case_room_verified_only"
CASE_ROOM_JOIN_RULE = "case_room_join_rule"
CASE_ROOM_DIRECTORY = "case_room_directory"
INITIAL_STATE_RULE = "initial_state_membership"

_ACTION_WORDS = {"dm": "start a direct chat with", "invite": "invite", "contact_request": "send a contact request to"}


def server_of(user_id: str) -> str:
    """The server of a user id as Synapse parses it (`UserID.domain`); "" for what is not a user id
    (a client's `initial_state` or a remote server's answer may hold anything)."""
    return UserID.from_string(user_id).domain if UserID.is_valid(user_id) else ""


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
    errcode: str = errors.CONTACT_REFUSED
    status: int = 403

    def error_fields(self) -> dict[str, str]:
        """The JSON error body: MedChat's errcode, a message naming the rule, the rule."""
        return {"errcode": self.errcode, "error": self.message, "org.medchat.rule": self.rule}

    def as_error(self) -> SynapseError:
        """The refusal as an API error: its status (403), errcode, the message and the rule."""
        fields = self.error_fields()
        return SynapseError(self.status, fields.pop("error"), fields.pop("errcode"), additional_fields=fields)


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
class Selector:
    """One side of a policy rule: users matching every field of `include` (an empty one matches
    everyone) and none of `exclude` (the config's `except`)."""

    include: Group = Group()
    exclude: Group = Group()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Selector:
        raw = raw or {}
        return cls(Group.parse(raw), Group.parse(raw.get("except")))

    def requires(self, party: Party) -> bool:
        return self.include.requires(party) and not self.exclude.selects(party)


@dataclass(frozen=True)
class PolicyRule:
    """A deny rule on a pair: `actions` between a user matching `actor` and one matching `target`,
    whichever of the two acts. (A DM, an invite or a contact request makes the two talk; a rule
    that only stopped one side starting would leave the other side's room one could never join.)"""

    name: str
    description: str
    actions: frozenset[str]
    actor: Selector
    target: Selector

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PolicyRule:
        """A rule from the module config (already validated against the config schema)."""
        return cls(
            name=raw["name"],
            description=raw.get("description") or "",
            actions=frozenset(raw["actions"]),
            actor=Selector.parse(raw.get("actor")),
            target=Selector.parse(raw.get("target")),
        )

    def refuses(self, action: str, one: Party, other: Party) -> bool:
        if action not in self.actions:
            return False
        return (self.actor.requires(one) and self.target.requires(other)) or (
            self.actor.requires(other) and self.target.requires(one)
        )


def policy_refusal(rules: Iterable[PolicyRule], action: str, actor: Party, target: Party) -> Refusal | None:
    """The first server rule that refuses `action` between `actor` and `target`, if any: the
    same answer whichever of the two is the actor."""
    for rule in rules:
        if rule.refuses(action, actor, target):
            why = f": {rule.description}" if rule.description else "."
            return Refusal(rule.name, f"Refused by server policy '{rule.name}'{why}")
    return None


def server_refusal(server: str) -> Refusal:
    """The allow-list's refusal of `server`: what the module's rules answer, and what Synapse's own
    whitelist refusals answer too (medchat.synapse.server.name_federation_denials)."""
    return Refusal(
        FEDERATION_RULE, f"Refused by rule '{FEDERATION_RULE}': {server} is not a server this one federates with."
    )


def federation_refusal(allow_list: Iterable[str] | None, own_server: str, *user_ids: str) -> Refusal | None:
    """Refuses contact with a user of a server outside the allow-list (None allows all)."""
    if allow_list is None:
        return None
    allowed = {own_server, *allow_list}
    for server in map(server_of, user_ids):
        if server not in allowed:
            return server_refusal(server)
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


# --- case rooms ------------------------------------------------------------------------------

_CASE_ROOM_ACTIONS = {"create": "create", "invite": "be invited to", "join": "join", "knock": "knock on"}
# A public case room could be found and joined by anyone; invite, knock and restricted keep the
# door shut, and every join or knock through them is checked (`case_room_refusal`).
CASE_ROOM_REFUSED_JOIN_RULES = frozenset({"public"})


def case_room_refusal(user_id: str, level: str, action: str) -> Refusal | None:
    """Case rooms are for licence-verified practitioners: only they may create one, be invited to
    one, join one or knock on one (`action`: create, invite, join, knock)."""
    if level == LICENSE_VERIFIED:
        return None
    return Refusal(
        CASE_ROOM_RULE,
        f"Refused by rule '{CASE_ROOM_RULE}': {user_id} is not a licence-verified practitioner, "
        f"so may not {_CASE_ROOM_ACTIONS[action]} a case room.",
        errors.CASE_ROOM_REFUSED,
    )


def case_room_join_rule_refusal(join_rule: Any) -> Refusal | None:
    if join_rule not in CASE_ROOM_REFUSED_JOIN_RULES:
        return None
    return Refusal(
        CASE_ROOM_JOIN_RULE,
        f"Refused by rule '{CASE_ROOM_JOIN_RULE}': a case room cannot have the join rule {join_rule!r}; "
        "use invite, knock or restricted.",
        errors.CASE_ROOM_REFUSED,
    )


def case_room_publication_refusal(visibility: Any) -> Refusal | None:
    """A case room is never in the public room directory, which shows its name, topic and avatar
    to everyone who can browse it (and to other servers)."""
    if visibility != "public":
        return None
    return Refusal(
        CASE_ROOM_DIRECTORY,
        f"Refused by rule '{CASE_ROOM_DIRECTORY}': a case room cannot be published in the room directory.",
        errors.CASE_ROOM_REFUSED,
    )


# --- membership changes ------------------------------------------------------------------------

INVITE, JOIN, KNOCK = "invite", "join", "knock"
CHECKED_MEMBERSHIPS = (INVITE, JOIN, KNOCK)  # leaving, kicks and bans are always allowed


@dataclass(frozen=True)
class MembershipChange:
    """One `m.room.member` change, whatever route made it.

    `sender` changes `target`'s membership to `membership`. An invite is `is_direct` when its
    content says so; a join carries the pending invite it accepts (`inviter`, and whether that was
    a direct-chat invite), if any. `creator` is the creator's own first join into a room they make.
    A knock asks the room's `approvers` for an invite: it is only worth making if one of them may
    send it (else it would wait for an answer no one can give).
    """

    membership: str
    sender: str
    target: str
    is_direct: bool = False
    inviter: str | None = None
    case_room: bool = False
    creator: bool = False
    approvers: tuple[str, ...] = ()  # a knock: the members who may invite, so may let the knocker in

    @property
    def contact_action(self) -> str:
        """The contact rules' action: starting a direct chat, or an invite into a room."""
        return "dm" if self.is_direct else "invite"

    @property
    def case_room_action(self) -> str:
        return "create" if self.creator else self.membership


def knock_refusal() -> Refusal:
    """A knock none of the room's approvers would see through: each ignores the knocker (the
    message, like a block's, does not say so)."""
    return Refusal(
        RECIPIENT_RULE,
        f"Refused by rule '{RECIPIENT_RULE}': the contact settings of the members who could let you in do not let you ask to join.",
    )


def _valid_user_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith("@") and ":" in value and len(value) <= 255


def initial_state_members(config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(state_key, content) of each `m.room.member` event in a createRoom request's
    `initial_state` (entries Synapse refuses as malformed are left to it)."""
    initial_state = config.get("initial_state")
    members = []
    for entry in initial_state if isinstance(initial_state, list) else ():
        if not isinstance(entry, Mapping) or entry.get("type") != "m.room.member":
            continue
        state_key, content = entry.get("state_key"), entry.get("content")
        if _valid_user_id(state_key) and isinstance(content, Mapping):
            members.append((state_key, content))
    return members


def creation_changes(creator: str, config: Mapping[str, Any]) -> list[MembershipChange]:
    """The membership changes a createRoom request makes: the creator's join, each user of
    `invite` (a direct-chat invite if `is_direct`) and each invite in `initial_state` (flagged
    as its content is). So a room is checked as the same changes made one by one would be."""
    creation = config.get("creation_content")
    case_room = isinstance(creation, Mapping) and creation.get("type") == CASE_ROOM
    changes = [MembershipChange(JOIN, creator, creator, case_room=case_room, creator=True)]
    invitees = config.get("invite")
    for invitee in invitees if isinstance(invitees, list) else ():
        if _valid_user_id(invitee) and invitee != creator:
            changes.append(
                MembershipChange(INVITE, creator, invitee, bool(config.get("is_direct")), case_room=case_room)
            )
    for state_key, content in initial_state_members(config):
        if content.get("membership") == INVITE and state_key != creator:
            changes.append(
                MembershipChange(INVITE, creator, state_key, bool(content.get("is_direct")), case_room=case_room)
            )
    return changes


def creation_join_rule(config: Mapping[str, Any]) -> Any:
    """The join rule a createRoom request gives the room: `initial_state`'s, else its preset's
    (a `visibility` other than private defaults to the public preset, as in Synapse)."""
    initial_state = config.get("initial_state")
    for entry in reversed(initial_state if isinstance(initial_state, list) else []):
        if isinstance(entry, Mapping) and entry.get("type") == "m.room.join_rules" and not entry.get("state_key"):
            content = entry.get("content")
            return content.get("join_rule") if isinstance(content, Mapping) else None
    default = "private_chat" if config.get("visibility", "private") == "private" else "public_chat"
    return "public" if config.get("preset", default) == "public_chat" else "invite"


def initial_state_refusal(creator: str, config: Mapping[str, Any], own_server: str) -> Refusal | None:
    """400 for `m.room.member` events of `initial_state` that Synapse would fail half-way through
    making the room: an invite of another server's user (it has no invite room state to send with
    it, and answers 500: use `invite`), and a join or knock of another user (never allowed)."""
    for state_key, content in initial_state_members(config):
        membership = content.get("membership")
        if membership == INVITE and server_of(state_key) != own_server:
            why = f"{state_key} is a user of another server; invite them with `invite` instead of an m.room.member event in `initial_state`."
        elif membership in (JOIN, KNOCK) and state_key != creator:
            why = f"a room's creator cannot {membership} for {state_key}; invite them instead."
        else:
            continue
        return Refusal(INITIAL_STATE_RULE, f"Invalid field initial_state: {why}", errors.Codes.INVALID_PARAM, 400)
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
