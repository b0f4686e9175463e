"""The JSON request bodies the API accepts, one pydantic model each (read_json parses with it).

Each model is the one definition of its body: it validates the request, it is what the handler
receives (typed attributes, not a dict), and its JSON Schema is the `requestBody` of the OpenAPI
document. Checks that need the server (known roles, this server's media, room state) stay in the
handlers; everything that can be said about the JSON alone is said here, once.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, JsonValue, model_validator

from medchat.api.schemas.base import (
    NAME,
    PROSE,
    UNIQUE,
    Omittable,
    RequestBody,
    invalid_param,
    missing_param,
    one_of,
)
from medchat.levels import LEVELS
from medchat.messagekinds import SENDABLE_TYPES
from medchat.models import USER_ID_PATTERN
from medchat.polls import KINDS
from medchat.roomtypes import PHI_GUARD_MODES

# --- shared field types ----------------------------------------------------------------------

# Names others see (a display name, role, institution, room name, ...) are NAME, topics and bios
# PROSE (api/schemas/base.py): no control characters or bidi overrides.
Text = Annotated[str, Field(max_length=200), NAME]
Bio = Annotated[str, Field(max_length=2000), PROSE]
FullName = Annotated[str, Field(min_length=1, max_length=256), NAME]
Password = Annotated[str, Field(min_length=1, max_length=512)]
Email = Annotated[str, Field(min_length=3, max_length=254)]
DeviceName = Annotated[str, Field(max_length=100), NAME]
Level = Literal["unverified", "identity_verified", "license_verified"]
assert get_args(Level) == LEVELS, "medchat.levels.LEVELS and Level name the same ladder"
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, max_length=255, examples=["@bob:medchat.example"])]
# An upload of Synapse's media repository; 500 is room for a 255-character server name.
MxcUrl = Annotated[
    str, Field(pattern=r"^mxc://[^/]+/[A-Za-z0-9_-]+$", max_length=500, examples=["mxc://medchat.example/AbCdEf0123"])
]
# The mailed password-reset link's parameters (the spec's `sid`/`client_secret` are at most 255).
ResetToken = Annotated[str, Field(min_length=1, max_length=255)]


def _at_least_one_field(body: RequestBody) -> None:
    if not body.model_fields_set:
        raise invalid_param("The request body has no fields to change.")


def _exactly_one(body: RequestBody, *names: str) -> None:
    if sum(getattr(body, name) is not None for name in names) != 1:
        raise missing_param(f"Give exactly one of: {' or '.join(sorted(names))}")


# --- accounts (api/auth.py, api/gdpr.py, api/users.py) ------------------------------------------


class RegisterBody(RequestBody):
    username: Annotated[str, Field(min_length=1, max_length=200)]
    password: Password
    email: Email
    full_name: FullName
    role: Text
    institution: Text | None = None
    specialization: Text | None = None
    bio: Bio | None = None
    device_name: Omittable[DeviceName] = None


class LoginBody(RequestBody):
    """A username or an e-mail address, not both."""

    model_config = ConfigDict(json_schema_extra=one_of(LoginWithUsername="username", LoginWithEmail="email"))

    username: Omittable[Annotated[str, Field(min_length=1, max_length=255)]] = None
    email: Omittable[Email] = None
    password: Password
    device_name: Omittable[DeviceName] = None

    @model_validator(mode="after")
    def _one_identifier(self) -> LoginBody:
        _exactly_one(self, "username", "email")
        return self


class RefreshBody(RequestBody):
    refresh_token: Annotated[str, Field(min_length=1, max_length=1024)]


class ForgotPasswordBody(RequestBody):
    email: Email


class ResetPasswordBody(RequestBody):
    sid: ResetToken
    client_secret: ResetToken
    token: ResetToken
    new_password: Password


class ProfileUpdateBody(RequestBody):
    """The fields to change (at least one); `null` clears an optional one."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    full_name: Omittable[FullName] = None
    role: Omittable[Text] = None
    institution: Text | None = None
    specialization: Text | None = None
    bio: Bio | None = None
    profile_image: MxcUrl | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> ProfileUpdateBody:
        _at_least_one_field(self)
        return self

    def changes(self) -> dict[str, object]:
        """The fields sent, by name (what the profile store writes)."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class ChatUserUpdateBody(ProfileUpdateBody):
    """As the own-profile update, plus `hidden` (out of the directory)."""

    hidden: Omittable[bool] = None


class EraseAccountBody(RequestBody):
    password: Password


# --- verification (api/verification.py, api/federation.py) ---------------------------------------


class VerificationRequestBody(RequestBody):
    """A request for a level (default: the next one up) with the credentials to check."""

    level: Omittable[Level] = None
    registration_body: Annotated[str, Field(min_length=1, max_length=200), NAME]
    license_number: Annotated[str, Field(min_length=1, max_length=100)]
    document: Omittable[MxcUrl] = None


Reason = Annotated[str, Field(min_length=1, max_length=1000)]


class ApprovalBody(RequestBody):
    reason: Omittable[Reason] = None


class RejectionBody(RequestBody):
    """A rejection must say why."""

    reason: Reason


# --- contacts (api/contacts.py) ---------------------------------------------------------------------

Nickname = Annotated[str, Field(max_length=100), NAME]


class ContactAddBody(RequestBody):
    """The user to add (`user_id`, or its older name `contact_id`), an optional nickname and a
    message for the contact request."""

    model_config = ConfigDict(
        json_schema_extra=one_of(ContactAddByUserId="user_id", ContactAddByContactId="contact_id")
    )

    user_id: Omittable[UserId] = None
    contact_id: Omittable[UserId] = None
    nickname: Nickname | None = None
    message: Omittable[Annotated[str, Field(max_length=500)]] = None

    @model_validator(mode="after")
    def _one_user(self) -> ContactAddBody:
        _exactly_one(self, "user_id", "contact_id")
        return self

    @property
    def target(self) -> str:
        return self.user_id or self.contact_id or ""


class ContactUpdateBody(RequestBody):
    nickname: Nickname | None


class ContactAcceptBody(RequestBody):
    nickname: Nickname | None = None


_MAX_EXCEPTIONS = 1000
ServerName = Annotated[str, Field(pattern=r"^[A-Za-z0-9.\-\[\]:]+$", max_length=255, examples=["medchat.example"])]
Role = Annotated[str, Field(min_length=1, max_length=100)]


class ContactExceptions(RequestBody):
    """Users, servers, roles and verification levels singled out by a permission setting."""

    users: Omittable[Annotated[list[UserId], Field(max_length=_MAX_EXCEPTIONS), UNIQUE]] = None
    servers: Omittable[Annotated[list[ServerName], Field(max_length=_MAX_EXCEPTIONS), UNIQUE]] = None
    roles: Omittable[Annotated[list[Role], Field(max_length=_MAX_EXCEPTIONS), UNIQUE]] = None
    levels: Omittable[Annotated[list[Level], Field(max_length=_MAX_EXCEPTIONS), UNIQUE]] = None


class ContactPermissionsBody(RequestBody):
    """Who may contact the caller: a default, and exceptions either way (a block wins)."""

    default: Literal["allow_all", "block_all"]
    allow_contacts: Omittable[bool] = None
    allow: Omittable[ContactExceptions] = None
    block: Omittable[ContactExceptions] = None

    def setting(self) -> dict[str, object]:
        """As JSON, the fields sent (what rules.contact stores)."""
        return self.model_dump(exclude_unset=True)


# --- rooms (api/rooms.py) ----------------------------------------------------------------------------

RoomName = Annotated[str, Field(min_length=1, max_length=200), NAME]
Topic = Annotated[str, Field(max_length=1000), PROSE]
PhiGuardMode = Literal["refuse", "warn"]
assert get_args(PhiGuardMode) == PHI_GUARD_MODES, "roomtypes.PHI_GUARD_MODES and PhiGuardMode agree"

_ROOM_RULES: list[JsonValue] = [
    {
        "if": {"properties": {"type": {"const": "direct"}}},
        "then": {"required": ["participants"], "properties": {"participants": {"minItems": 1, "maxItems": 1}}},
    },
    {"if": {"properties": {"type": {"enum": ["group", "case", "study_group"]}}}, "then": {"required": ["name"]}},
    {"if": {"properties": {"type": {"not": {"const": "study_group"}}}}, "then": {"not": {"required": ["join_rule"]}}},
    {"if": {"properties": {"type": {"enum": ["case", "study_group"]}}}, "then": {"properties": {"encrypted": False}}},
]


class RoomCreateBody(RequestBody):
    """A direct chat names its one other participant; a group, case room or study group its name.
    Only a study group has a `join_rule`. `encrypted: true` (direct and group only) makes the room
    end-to-end encrypted (`m.room.encryption`, Megolm): the app then sends ciphertext only."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": _ROOM_RULES,
            "examples": [{"type": "group", "name": "Cardiology team", "topic": "Handover at 8"}],
        }
    )

    type: Literal["direct", "group", "case", "study_group"]
    name: Omittable[RoomName] = None
    topic: Omittable[Topic] = None
    participants: Omittable[Annotated[list[UserId], Field(max_length=200), UNIQUE]] = None
    join_rule: Omittable[Literal["knock", "open"]] = None
    encrypted: bool = False

    @model_validator(mode="after")
    def _rules_of_the_type(self) -> RoomCreateBody:
        if self.type == "direct":
            if self.participants is None:
                raise missing_param("Missing field: participants")
            if len(self.participants) != 1:
                raise invalid_param("Invalid field participants: a direct chat has exactly one other participant.")
        elif self.name is None:
            raise missing_param("Missing field: name")
        if self.join_rule is not None and self.type != "study_group":
            raise invalid_param("Invalid field join_rule: only a study group has one.")
        if self.encrypted and self.type == "case":
            raise invalid_param(
                "Invalid field encrypted: case rooms are not end-to-end encrypted (the patient-identifier"
                " guard must read them)."
            )
        if self.encrypted and self.type == "study_group":
            raise invalid_param("Invalid field encrypted: only direct chats and groups can be end-to-end encrypted.")
        return self


class RoomJoinBody(RequestBody):
    reason: Omittable[Annotated[str, Field(max_length=500)]] = None


class RoomUpdateBody(RequestBody):
    """The state to change (at least one field); `avatar_url: null` removes the avatar."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Omittable[RoomName] = None
    topic: Omittable[Topic] = None
    avatar_url: MxcUrl | None = None
    phi_guard: Omittable[PhiGuardMode] = None

    @model_validator(mode="after")
    def _something_to_change(self) -> RoomUpdateBody:
        _at_least_one_field(self)
        return self


class ParticipantAddBody(RequestBody):
    user_id: UserId
    role: Omittable[Literal["admin", "member"]] = None


# --- messages (api/messages.py, api/realtime.py) -----------------------------------------------------

MessageType = Literal["text", "notice", "emote", "image", "file", "audio", "video", "location", "encrypted"]
assert get_args(MessageType) == SENDABLE_TYPES, "messagekinds.SENDABLE_TYPES and MessageType agree"
ClientMsgId = Annotated[str, Field(min_length=1, max_length=200)]
# The text of a reply or an edit: not only blanks.
MessageText = Annotated[str, Field(min_length=1, max_length=65536, pattern=r"\S")]
Size = Annotated[int, Field(ge=0)]
EventId = Annotated[str, Field(pattern=r"^\$", max_length=255, examples=["$Mq3dK9v0e1aB2c3D"])]
# RFC 5870: `geo:lat,lon[,alt][;params]`, as Matrix locations carry it.
GeoUri = Annotated[
    str,
    Field(
        pattern=r"^geo:-?\d{1,2}(\.\d+)?,-?\d{1,3}(\.\d+)?(,-?\d+(\.\d+)?)?(;[^\s]*)?$",
        max_length=255,
        examples=["geo:51.5074,-0.1278"],
    ),
]
# MSC3246 waveform samples, 0 to 1024; Element sends about 100 of them.
Waveform = Annotated[list[Annotated[int, Field(ge=0, le=1024)]], Field(max_length=1000)]
_TEXT_KINDS = ("text", "notice", "emote")


# Megolm's unpadded base64 (keys, session ids, ciphertext); a ciphertext is bounded by the event size.
Base64 = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9+/=_-]+$", examples=["c2Vzc2lvbg"])]
Ciphertext = Annotated[
    str, Field(min_length=1, max_length=65536, pattern=r"^[A-Za-z0-9+/=_-]+$", examples=["AwgAEnACgAkLmt"])
]


class EncryptedPayload(RequestBody):
    """A Megolm `m.room.encrypted` content the app's crypto library produced (matrix-sdk-crypto's,
    vodozemac's or libolm's `encrypt`): sent as it is, so other members' clients decrypt it."""

    algorithm: Literal["m.megolm.v1.aes-sha2"]
    ciphertext: Ciphertext
    session_id: Base64
    sender_key: Omittable[Base64] = None
    device_id: Omittable[Annotated[str, Field(min_length=1, max_length=255)]] = None


class EncryptedRelation(RequestBody):
    """What an encrypted message relates to, in the clear as Matrix keeps it: an edit
    (`m.replace`) of one's own encrypted message, or a message in a thread (`m.thread`, its root)."""

    rel_type: Literal["m.replace", "m.thread"]
    event_id: EventId


# Fields an encrypted message cannot have next to its ciphertext (they would be sent in the clear).
_PLAINTEXT_FIELDS = (
    "content",
    "format",
    "formatted_content",
    "media_url",
    "file_name",
    "file_size",
    "mime_type",
    "width",
    "height",
    "duration",
    "voice",
    "waveform",
    "geo_uri",
    "thread_id",
)


class MessageSendBody(RequestBody):
    """A text, notice or emote (`content`, or `format: html` with `formatted_content`), a media
    message (`media_url` of an upload, `content` its caption; `voice` with `duration` and
    `waveform` for a voice message), or a location (`geo_uri`, `content` its description).
    `reply_to` replies, `thread_id` sends into a thread; `expires_in` seconds make it disappear.
    In an end-to-end encrypted room, only `encrypted` (the ciphertext; `message_type` left out or
    `encrypted`), with `reply_to` or `relates_to` for the relation kept in the clear."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"content": "Hello, the results are in."}]})

    content: Omittable[Annotated[str, Field(max_length=65536)]] = None
    message_type: MessageType = "text"
    format: Omittable[Literal["html"]] = None
    formatted_content: Omittable[Annotated[str, Field(min_length=1, max_length=65536)]] = None
    media_url: Omittable[MxcUrl] = None
    file_name: Omittable[Annotated[str, Field(min_length=1, max_length=255)]] = None
    file_size: Omittable[Size] = None
    mime_type: Omittable[Annotated[str, Field(min_length=1, max_length=255)]] = None
    width: Omittable[Size] = None
    height: Omittable[Size] = None
    duration: Omittable[Size] = None
    voice: Omittable[bool] = None
    waveform: Omittable[Waveform] = None
    geo_uri: Omittable[GeoUri] = None
    reply_to: Omittable[EventId] = None
    thread_id: Omittable[EventId] = None
    client_msg_id: Omittable[ClientMsgId] = None
    expires_in: Omittable[int] = None
    encrypted: Omittable[EncryptedPayload] = None
    relates_to: Omittable[EncryptedRelation] = None

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> MessageSendBody:
        kind = self.message_type
        if self.encrypted is not None or kind == "encrypted":
            if self.encrypted is None:
                raise missing_param("Missing field: encrypted (an encrypted message needs its ciphertext).")
            plain = [name for name in _PLAINTEXT_FIELDS if getattr(self, name) is not None]
            if plain or self.given("message_type") and kind != "encrypted":
                fields = ", ".join(plain or ["message_type"])
                raise invalid_param(
                    f"Invalid field {fields}: an encrypted message carries everything in its ciphertext."
                )
            if self.reply_to is not None and self.relates_to is not None and self.relates_to.rel_type == "m.replace":
                raise invalid_param("Invalid field reply_to: an edit is not a reply.")
            return self
        if self.relates_to is not None:
            raise invalid_param("Invalid field relates_to: only an encrypted message gives its relation this way.")
        if (self.format is None) != (self.formatted_content is None):
            raise missing_param("Missing field: format and formatted_content go together.")
        if self.format is not None and kind not in _TEXT_KINDS:
            raise invalid_param("Invalid field format: only a text, notice or emote is formatted.")
        if (self.voice or self.waveform is not None) and kind != "audio":
            raise invalid_param("Invalid field voice: a voice message is an audio message.")
        if self.geo_uri is not None and kind != "location":
            raise invalid_param("Invalid field geo_uri: only a location has one.")
        if kind in _TEXT_KINDS:
            if self.format is None and (not self.content or not self.content.strip()):
                raise missing_param(f"Missing field: content (a {kind} message needs text).")
        elif kind == "location":
            if self.geo_uri is None:
                raise missing_param("Missing field: geo_uri (a location needs one).")
            latitude, longitude = (float(n) for n in self.geo_uri[4:].split(";")[0].split(",")[:2])
            if abs(latitude) > 90 or abs(longitude) > 180:
                raise invalid_param("Invalid field geo_uri: latitude within ±90, longitude within ±180.")
        elif self.media_url is None:
            raise missing_param(f"Missing field: media_url (an {kind} message needs an upload).")
        return self


PollAnswer = Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S"), PROSE]


class PollCreateBody(RequestBody):
    """A poll (MSC3381): 2 to 20 answers; `undisclosed` hides the votes until it ends."""

    question: Annotated[str, Field(min_length=1, max_length=1000, pattern=r"\S"), PROSE]
    answers: Annotated[list[PollAnswer], Field(min_length=2, max_length=20), UNIQUE]
    kind: Literal["disclosed", "undisclosed"] = "disclosed"
    max_selections: Annotated[int, Field(ge=1, le=20)] = 1
    thread_id: Omittable[EventId] = None
    client_msg_id: Omittable[ClientMsgId] = None

    @model_validator(mode="after")
    def _selections_fit(self) -> PollCreateBody:
        if self.max_selections > len(self.answers):
            raise invalid_param("Invalid field max_selections: at most the number of answers.")
        return self


assert get_args(PollCreateBody.model_fields["kind"].annotation) == KINDS, "polls.KINDS and the poll kinds agree"


class PollVoteBody(RequestBody):
    """The `id`s of the chosen answers (at most the poll's `max_selections`); a new vote replaces
    the voter's earlier one."""

    answers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=255)]], Field(min_length=1, max_length=20), UNIQUE
    ]


class MessageReplyBody(RequestBody):
    content: MessageText
    client_msg_id: Omittable[ClientMsgId] = None


class MessageEditBody(RequestBody):
    content: MessageText


class ReactionBody(RequestBody):
    key: Annotated[str, Field(min_length=1, max_length=100)]


class ForwardBody(RequestBody):
    room_ids: Annotated[
        list[Annotated[str, Field(pattern="^!", max_length=255, examples=["!kXaQeWcLpHtUfYoNzR:medchat.example"])]],
        Field(min_length=1, max_length=20),
        UNIQUE,
    ]


class AttestationClaim(RequestBody):
    """A licence attestation as its server published it: whose it is, and whatever else it carries
    (the signature and its fields are checked against the server's key, not here)."""

    model_config = ConfigDict(extra="allow")

    user_id: UserId


class AttestationCheckBody(RequestBody):
    attestation: AttestationClaim


class MessageStatusBody(RequestBody):
    status: Literal["delivered", "read"]


class PresenceBody(RequestBody):
    status: Literal["online", "offline", "unavailable"]
    status_msg: Text | None = None
