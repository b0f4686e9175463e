"""Every use of Synapse internals lives here, so a Synapse upgrade touches one file.

The module API (`synapse.module_api.ModuleApi`) covers callbacks, auth and database access; what it
lacks (password login with refresh tokens, password resets through Synapse's mailer, registration
with a password, start-up migrations on a dedicated connection, the GDPR data export and
deactivation with erasure) is reached through the homeserver object below, reusing Synapse's own
handlers rather than re-implementing them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from io import BytesIO
from typing import IO, Any, BinaryIO, NamedTuple, Protocol, TypeVar
from urllib.parse import unquote

import synapse
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from s3_storage_provider import S3StorageProviderBackend
from signedjson.sign import sign_json
from synapse import event_auth
from synapse.api.auth.base import BaseAuth
from synapse.api.constants import Direction, EventTypes, ReceiptTypes, RelationTypes, UserTypes
from synapse.api.errors import AuthError, Codes, LoginError, NotFoundError, RequestSendFailed, SynapseError
from synapse.api.filtering import Filter
from synapse.api.ratelimiting import Ratelimiter
from synapse.config.ratelimiting import RatelimitSettings
from synapse.events import EventBase
from synapse.events.utils import FilteredEvent
from synapse.federation.transport.server._base import Authenticator
from synapse.handlers.admin import ExfiltrationWriter
from synapse.http import get_request_user_agent
from synapse.http.server import JsonResource
from synapse.http.site import RequestInfo, SynapseRequest
from synapse.logging.context import make_deferred_yieldable, run_in_background
from synapse.media._base import FileInfo, respond_with_file
from synapse.media.filepath import MediaFilePaths
from synapse.module_api import ModuleApi
from synapse.push.mailer import Mailer
from synapse.rest.client.login import LoginRestServlet
from synapse.rest.client.room import SerializeMessagesDeps, encode_messages_response
from synapse.storage.database import LoggingTransaction, make_conn, make_in_list_sql_clause
from synapse.storage.databases.main.events_worker import EventRedactBehaviour
from synapse.storage.databases.main.search import _parse_query_for_sqlite
from synapse.storage.engines import PostgresEngine
from synapse.storage.engines._base import IsolationLevel
from synapse.streams.config import PaginationConfig
from synapse.types import JsonDict, JsonMapping, Requester, StateMap, StreamToken, UserID, create_requester
from synapse.util.async_helpers import Linearizer, timeout_deferred, yieldable_gather_results
from synapse.util.json import json_encoder
from synapse.util.stringutils import parse_and_validate_server_name
from synapse.util.threepids import canonicalise_email, validate_email
from synapse.visibility import filter_and_transform_events_for_client

from twisted.internet import defer, error as twisted_error

logger = logging.getLogger(__name__)


class EventPosition(NamedTuple):
    room_id: str
    stream_ordering: int
    received_ts: int


T = TypeVar("T")

SYNAPSE_VERSION: str = synapse.__version__
_SESSION_KEYS = ("user_id", "device_id", "access_token", "refresh_token", "expires_in_ms")


_SEARCH_ROUNDS = 5  # extra pages fetched when Synapse's visibility filter hides hits


def _search_cursor(cursor: str | None) -> tuple[float, int] | None:
    """A search cursor is the (rank, stream ordering) of the last hit the previous page consumed."""
    if cursor is None:
        return None
    rank, _, stream = cursor.partition(":")
    try:
        return float(rank), int(stream)
    except ValueError:
        raise SynapseError(400, "Invalid field cursor: not a search cursor.", Codes.INVALID_PARAM)


async def concurrently(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Independent lookups at once, so their database round trips overlap (Synapse's own gather,
    which keeps log contexts right); the first failure is raised as itself."""
    return await yieldable_gather_results(lambda call: call(), calls)


class SynapseBridge:
    """Synapse's handlers and stores, behind methods named for what MedChat needs of them."""

    def __init__(self, api: ModuleApi):
        self.api = api
        hs = api._hs  # the one place the module holds the homeserver object
        self._hs = hs
        self._store = hs.get_datastores().main
        self._auth_handler = hs.get_auth_handler()
        self._registration = hs.get_registration_handler()
        self._clock = hs.get_clock()
        self._login_servlet = LoginRestServlet(hs)
        self._refresh_lifetime_ms = hs.config.registration.refreshable_access_token_lifetime
        self._refresh_token_lifetime_ms = hs.config.registration.refresh_token_lifetime
        self._register_ratelimiter = Ratelimiter(
            store=self._store, clock=self._clock, cfg=hs.config.ratelimiting.rc_registration
        )
        self._directory_search_ratelimiter = Ratelimiter(
            store=self._store, clock=self._clock, cfg=hs.config.ratelimiting.rc_user_directory
        )
        self._reset_mailer = (
            Mailer(
                hs=hs,
                app_name=hs.config.email.email_app_name,
                template_html=hs.config.email.email_password_reset_template_html,
                template_text=hs.config.email.email_password_reset_template_text,
            )
            if hs.config.email.can_verify_email
            else None
        )

    # --- server facts -------------------------------------------------------------------------

    @property
    def server_name(self) -> str:
        return self._hs.hostname

    @property
    def database_engine(self) -> str:
        return "postgresql" if isinstance(self._store.database_engine, PostgresEngine) else "sqlite"

    @property
    def worker_name(self) -> str:
        """This process's `worker_name`, or "main" for the main process."""
        return self._hs.config.worker.worker_name or "main"

    @property
    def runs_background_tasks(self) -> bool:
        """Whether this process runs periodic jobs (`run_background_tasks_on`), the module's too."""
        return self._hs.config.worker.run_background_tasks

    @property
    def federation_domain_whitelist(self) -> list[str] | None:
        """Synapse's `federation_domain_whitelist` (None: every server may federate)."""
        allowed = self._hs.config.federation.federation_domain_whitelist
        return None if allowed is None else list(allowed)

    def extend_federation_domain_whitelist(self, servers: tuple[str, ...]) -> None:
        """Adds servers to Synapse's whitelist in this process, before any federation traffic.

        In place: Synapse's federation client, server authenticator, key server and media
        repository all hold this same dict. An unset whitelist (every server) stays unset.
        """
        allowed = self._hs.config.federation.federation_domain_whitelist
        if allowed is not None:
            allowed.update(dict.fromkeys(servers, True))

    @property
    def audit_pseudonym_key(self) -> bytes:
        """The key of the audit trail's pseudonyms, derived from Synapse's `macaroon_secret_key`
        (a secret every deployment already keeps, outside the database)."""
        return hmac.new(
            self._hs.config.key.macaroon_secret_key, b"org.medchat.audit.pseudonym", hashlib.sha256
        ).digest()

    @property
    def retention_limits(self) -> tuple[bool, int | None, int | None]:
        """Synapse's `retention:` config: (enabled, allowed_lifetime_min, allowed_lifetime_max) in ms."""
        retention = self._hs.config.retention
        return (
            retention.retention_enabled,
            retention.retention_allowed_lifetime_min,
            retention.retention_allowed_lifetime_max,
        )

    def requester_for(self, user_id: str) -> Requester:
        """Acting as a local user from a background task (no request, no device)."""
        return create_requester(UserID.from_string(user_id))

    def now_ms(self) -> int:
        return self._clock.time_msec()

    def json_resource(self) -> JsonResource:
        """Synapse's own servlet router: JSON errors, metrics per servlet, cancellation."""
        return JsonResource(self._hs)

    # --- database -----------------------------------------------------------------------------

    def run_startup_transaction(self, name: str, func: Callable[[LoggingTransaction], T]) -> T:
        """Runs `func` in one transaction on a dedicated connection, before the server listens.

        Used for the module's migrations, so no request can reach a half-migrated schema and a
        failing migration stops start-up instead of surfacing later as 500s.
        """
        database = self._hs.config.database.databases[0]
        engine = self._store.database_engine
        conn = make_conn(db_config=database, engine=engine, default_txn_name=name, server_name=self.server_name)
        # Synapse's connections are REPEATABLE READ, whose snapshot would predate a lock taken
        # inside the transaction: a process that waited on the migrations' advisory lock would
        # not see what the process ahead of it committed, and apply the migrations again.
        engine.attempt_to_set_isolation_level(conn.conn, IsolationLevel.READ_COMMITTED)
        try:
            txn = conn.cursor(txn_name=name)
            result = func(txn)
            conn.commit()
            return result
        finally:
            conn.close()

    # --- accounts -----------------------------------------------------------------------------

    async def check_username_available(self, localpart: str) -> None:
        """Raises 400 for an invalid localpart, 409 M_USER_IN_USE if it is taken."""
        try:
            await self._registration.check_username(localpart)
        except SynapseError as e:
            if e.errcode == Codes.USER_IN_USE:
                raise SynapseError(409, "That username is already taken.", Codes.USER_IN_USE)
            raise

    def validate_password(self, password: str) -> None:
        """Applies Synapse's `password_config.policy`."""
        self._hs.get_password_policy_handler().validate_password(password)

    @staticmethod
    def canonical_email(address: str) -> str:
        """Synapse's own e-mail canonicalisation; raises ValueError for a malformed address."""
        return canonicalise_email(validate_email(address))

    async def user_id_for_email(self, email: str) -> str | None:
        return await self._store.get_user_id_by_threepid("email", email)

    async def email_for_user(self, user_id: str) -> str | None:
        threepids = await self._store.user_get_threepids(user_id)
        return next((t.address for t in threepids if t.medium == "email"), None)

    async def ratelimit_registration(self, ip: str) -> None:
        await self._register_ratelimiter.ratelimit(None, ip)

    async def register_user(self, localpart: str, password: str, display_name: str, email: str) -> str:
        """Creates the Matrix account with a password and a bound e-mail; returns the user id."""
        password_hash = await self._auth_handler.hash(password)
        return await self._registration.register_user(
            localpart=localpart,
            password_hash=password_hash,
            default_display_name=display_name,
            bind_emails=[email],
        )

    async def login(
        self, identifier: dict[str, str], password: str, device_name: str | None, request: SynapseRequest
    ) -> dict[str, Any]:
        """Password login exactly as `/_matrix/client/v3/login` does it, with a refresh token.

        Goes through Synapse's login servlet so `rc_login` (per address, per account and failed
        attempts), deactivation, locks, spam-checker and password-provider modules all apply.
        """
        ip = request.getClientAddress().host
        await self._login_servlet._address_ratelimiter.ratelimit(None, ip)
        submission: dict[str, Any] = {"type": "m.login.password", "identifier": identifier, "password": password}
        if device_name:
            submission["initial_device_display_name"] = device_name
        result = await self._login_servlet._do_other_login(
            submission,
            should_issue_refresh_token=True,
            request_info=RequestInfo(user_agent=get_request_user_agent(request), ip=ip),
        )
        return {k: result[k] for k in _SESSION_KEYS if k in result}  # type: ignore[literal-required]

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Rotates a refresh token, as `/_matrix/client/v3/refresh` does."""
        now = self._clock.time_msec()
        access_until = now + self._refresh_lifetime_ms if self._refresh_lifetime_ms is not None else None
        refresh_until = now + self._refresh_token_lifetime_ms if self._refresh_token_lifetime_ms is not None else None
        access_token, new_refresh_token, valid_until = await self._auth_handler.refresh_token(
            refresh_token, access_until, refresh_until
        )
        response: dict[str, Any] = {"access_token": access_token, "refresh_token": new_refresh_token}
        if valid_until is not None:
            response["expires_in_ms"] = valid_until - now
        return response

    async def logout(self, request: SynapseRequest) -> None:
        """Ends the calling session the way `/_matrix/client/v3/logout` does: its device goes too."""
        requester = await self.api.get_user_by_req(request)
        if requester.device_id:
            await self._hs.get_device_handler().delete_devices(requester.user.to_string(), [requester.device_id])
        else:
            await self._auth_handler.delete_access_token(BaseAuth.get_access_token_from_request(request))

    async def issue_session(self, user_id: str, device_name: str | None) -> dict[str, Any]:
        """A new device with a refreshable access token, as a fresh registration gets."""
        device_id, access_token, valid_until, refresh_token = await self._registration.register_device(
            user_id, None, device_name, should_issue_refresh_token=True
        )
        response: dict[str, Any] = {
            "user_id": user_id,
            "device_id": device_id,
            "access_token": access_token,
            "refresh_token": refresh_token,
        }
        if valid_until is not None:
            response["expires_in_ms"] = valid_until - self._clock.time_msec()
        return response

    async def ensure_service_user(self, localpart: str, display_name: str) -> str:
        """The module's own account (created once; a concurrent creation finds it taken).

        A server admin of type `bot`, so Synapse's spam checks (the contact rules) do not stop it
        inviting an institution's members into their space; it has no password and no device,
        so nobody logs in as it.
        """
        user_id = UserID(localpart, self.server_name).to_string()
        if await self._store.get_user_by_id(user_id) is not None:
            return user_id
        try:
            await self._registration.register_user(
                localpart=localpart,
                admin=True,
                user_type=UserTypes.BOT,
                default_display_name=display_name,
                approved=True,
            )
        except SynapseError as e:
            if e.errcode != Codes.USER_IN_USE:
                raise
        return user_id

    # --- password reset -----------------------------------------------------------------------

    @property
    def password_reset_available(self) -> bool:
        return self._reset_mailer is not None

    async def send_password_reset(self, email: str, request: SynapseRequest) -> None:
        """Mails a single-use, expiring reset link through Synapse's threepid-validation machinery.

        Applies `rc_3pid_validation`. The link carries `sid`, `client_secret` and `token`; the app
        passes them to /api/auth/reset-password.
        """
        assert self._reset_mailer is not None
        await self._hs.get_identity_handler().ratelimit_request_token_requests(request, "email", email)
        await self._hs.get_identity_handler().send_threepid_validation(
            email, secrets.token_urlsafe(24), 1, self._reset_mailer.send_password_reset_mail, None
        )

    async def consume_password_reset(self, sid: str, client_secret: str, token: str) -> str:
        """Checks a reset link and spends it; returns the user it resets. Raises 400 if invalid."""
        await self._store.validate_threepid_session(sid, client_secret, token, self._clock.time_msec())
        session = await self._store.get_threepid_validation_session("email", client_secret, sid=sid, validated=True)
        user_id = await self.user_id_for_email(session.address) if session else None
        await self._store.delete_threepid_session(sid)
        if user_id is None:
            raise SynapseError(400, "This reset link is no longer valid.", Codes.FORBIDDEN)
        return user_id

    async def set_password(self, user_id: str, password: str) -> None:
        """Sets a new password and logs every session of the user out."""
        password_hash = await self._auth_handler.hash(password)
        await self._hs.get_set_password_handler().set_password(user_id, password_hash, logout_devices=True)

    async def check_password(self, user_id: str, password: str) -> bool:
        """Whether `password` is the user's, as a UI-auth re-authentication checks it (password
        providers included; failed attempts count against `rc_login.failed_attempts`)."""
        submission = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        }
        try:
            checked, _ = await self._auth_handler.validate_login(submission, ratelimit=True, is_reauth=True)
        except LoginError:
            return False
        return checked == user_id

    async def deactivate_and_erase(self, user_id: str) -> None:
        """Synapse's deactivation with GDPR erasure, as `/account/deactivate {erase: true}` does it:
        tokens, devices, threepids and the profile go, the user is marked erased (their events are
        hidden from later joiners) and is parted from every room in the background."""
        await self._hs.get_deactivate_account_handler().deactivate_account(
            user_id, erase_data=True, requester=create_requester(UserID.from_string(user_id)), by_admin=False
        )

    async def is_user_erased(self, user_id: str) -> bool:
        return await self._store.is_user_erased(user_id)

    async def export_user_data(self, user_id: str, sink: ExportSink) -> None:
        """Synapse's data export (the admin `export-data` command's machinery) into `sink`:
        the events the user sent, their Matrix profile, devices, sessions, account data and media."""
        await self._hs.get_admin_handler().export_user_data(user_id, _SinkWriter(user_id, sink))

    async def send_file(self, request: SynapseRequest, path: str, media_type: str, file_name: str) -> None:
        """Streams a file as the response, with the media repository's download headers
        (`Content-Disposition: attachment` for anything not shown inline)."""
        await respond_with_file(self._hs, request, media_type, path, upload_name=file_name)

    # --- profile and presence -----------------------------------------------------------------

    async def set_display_name(self, user_id: str, display_name: str) -> None:
        await self.api.set_displayname(UserID.from_string(user_id), display_name)

    async def set_avatar(self, user_id: str, avatar_url: str) -> None:
        """Sets the Matrix avatar (an `mxc://` URI); Synapse propagates it to the user's rooms."""
        user = UserID.from_string(user_id)
        await self._hs.get_profile_handler().set_avatar_url(
            target_user=user, requester=create_requester(user), new_avatar_url=avatar_url
        )

    async def presence(self, user_id: str) -> tuple[bool, int | None]:
        """(is_online, last_active_ts_ms) from Synapse's presence."""
        state = await self._hs.get_presence_handler().get_state(UserID.from_string(user_id))
        return state.state == "online", (state.last_active_ts or None)

    # --- users, names for cards, DM tags, invites --------------------------------------------------

    async def user_exists(self, user_id: str) -> bool:
        """An active local account, or a remote user whose server answers a profile query.

        An id whose server name is malformed names nobody. A server that cannot be reached
        (Synapse's 502) confirms nothing: 404 naming the server, not a 5xx, since the caller can
        only try again later or correct the id.
        """
        if not UserID.is_valid(user_id):
            return False
        if self._hs.is_mine_id(user_id):
            user = await self._store.get_user_by_id(user_id)
            return user is not None and not user.is_deactivated
        try:
            parse_and_validate_server_name(UserID.from_string(user_id).domain)
        except ValueError:  # no server of that name can exist, so neither can the user
            return False
        try:
            await self._hs.get_profile_handler().get_profile(user_id)
        except SynapseError as e:
            if e.code == 404:
                return False
            if e.code >= 500:
                server = UserID.from_string(user_id).domain
                raise SynapseError(
                    404, f"No such user: {user_id} (their server {server} could not be reached)", Codes.NOT_FOUND
                )
            raise
        return True

    async def directory_profiles(self, user_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """(display name, avatar) of many users in one query on Synapse's user directory.

        It holds every local user and the remote users who share a room with a local one; others
        are missing from the result.
        """
        rows = await self._store.db_pool.simple_select_many_batch(
            table="user_directory",
            column="user_id",
            iterable=user_ids,
            retcols=("user_id", "display_name", "avatar_url"),
            desc="medchat_directory_profiles",
        )
        return {user_id: (name, avatar) for user_id, name, avatar in rows}

    async def presence_of(self, user_ids: list[str]) -> dict[str, tuple[bool, int | None]]:
        """`presence` for many users in one look-up (listing pages)."""
        states = await self._hs.get_presence_handler().get_states(user_ids)
        return {s.user_id: (s.state == "online", s.last_active_ts or None) for s in states}

    async def room_tags(self, user_id: str, room_id: str) -> set[str]:
        return set(await self._store.get_tags_for_room(user_id, room_id))

    async def set_room_tag(self, user_id: str, room_id: str, tag: str, present: bool) -> None:
        """Adds or removes a room tag as `PUT/DELETE .../rooms/{roomId}/tags/{tag}` does (synced)."""
        handler = self._hs.get_account_data_handler()
        if present:
            await handler.add_tag_to_room(user_id, room_id, tag, {})
        else:
            await handler.remove_tag_from_room(user_id, room_id, tag)

    async def pending_invite(self, user_id: str, room_id: str) -> tuple[str, bool] | None:
        """(inviter, is_direct) of a local user's pending invite to a room, if any."""
        invite = await self._store.get_invite_for_local_user_in_room(user_id, room_id)
        if invite is None:
            return None
        event = await self._store.get_event(invite.event_id, allow_none=True)
        return invite.sender, bool(event is not None and event.content.get("is_direct"))

    async def invite_room_state(self, user_id: str, room_id: str) -> tuple[EventBase, list[JsonDict]] | None:
        """A local user's pending invite and the stripped state it carries (`invite_room_state`):
        all that is known of a room on another server until the user joins it."""
        invite = await self._store.get_invite_for_local_user_in_room(user_id, room_id)
        event = await self._store.get_event(invite.event_id, allow_none=True) if invite else None
        if event is None:
            return None
        stripped = event.unsigned.get("invite_room_state") or []
        return event, [dict(e) for e in stripped if isinstance(e, dict) or hasattr(e, "get")]

    # --- rooms and events ---------------------------------------------------------------------
    # Rooms, memberships and messages go through Synapse's own handlers, so power levels, history
    # visibility, rate limits, spam-checker callbacks and push rules apply exactly as for a
    # Matrix client.

    async def create_room(self, user_id: str, config: JsonDict) -> str:
        room_id, _ = await self.api.create_room(user_id, config)
        return room_id

    async def set_membership(
        self, sender: str, target: str, room_id: str, membership: str, reason: str | None = None
    ) -> None:
        """Invite, join, knock, leave or kick (`leave` with sender != target), as /rooms/{id}/{action}."""
        await self.api.update_room_membership(
            sender, target, room_id, membership, content={"reason": reason} if reason else None
        )

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """The local user's current membership in the room (None if they never had one)."""
        membership, _ = await self._store.get_local_current_membership_for_user_in_room(user_id, room_id)
        return membership

    async def room_types(self, room_ids: list[str]) -> dict[str, str | None]:
        """Each room's `m.room.create` type (None: a plain room, or one this server does not know)."""
        found = await self._store.bulk_get_room_type(set(room_ids))
        return {room_id: kind if isinstance(kind, str) else None for room_id, kind in found.items()}

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        """Cached: the hot path of every message request."""
        return room_id in await self._store.get_rooms_for_user(user_id)

    async def rooms_for_user(self, user_id: str, memberships: tuple[str, ...]) -> dict[str, str]:
        """room_id -> membership for the local user's rooms in the given memberships."""
        rooms = await self._store.get_rooms_for_local_user_where_membership_is(user_id, memberships)
        return {r.room_id: r.membership for r in rooms}

    async def last_activity(self, room_ids: list[str]) -> dict[str, int]:
        """room_id -> stream position of its newest event, for ordering a room list."""
        return await self._store.bulk_get_last_event_pos_in_room_before_stream_ordering(
            room_ids, self._store.get_room_max_token()
        )

    async def last_event_ts(self, room_id: str) -> int | None:
        found = await self._store.get_last_event_pos_in_room(room_id)
        if found is None:
            return None
        event = await self._store.get_event(found[0], allow_none=True)
        return event.origin_server_ts if event else None

    async def room_state(self, room_id: str, keys: list[tuple[str, str | None]]) -> dict[tuple[str, str], EventBase]:
        """Current state events of the given (type, state_key) pairs; state_key None = all."""
        return dict(await self.api.get_room_state(room_id, keys))

    async def power_levels(self, room_id: str, user_ids: list[str]) -> tuple[dict[str, int], JsonDict]:
        """Each user's power level (room v12 creators included) and the m.room.power_levels content."""
        state = await self.room_state(room_id, [(EventTypes.Create, ""), (EventTypes.PowerLevels, "")])
        levels = {u: self.power_level(u, state) for u in user_ids}
        power_event = state.get((EventTypes.PowerLevels, ""))
        return levels, dict(power_event.content) if power_event else {}

    @staticmethod
    def power_level(user_id: str, state: dict[tuple[str, str], EventBase]) -> int:
        """A user's power level in the given room state (as an event-rules callback receives it)."""
        return event_auth.get_user_power_level(user_id, state)

    async def send_event(self, requester: Requester, event: JsonDict, txn_id: str | None = None) -> EventBase:
        """Sends a non-member event as the requester's device.

        `txn_id` is Synapse's per-device transaction id, the one a native
        PUT /rooms/{id}/send/{type}/{txnId} uses: a repeat returns the first event.
        """
        event = {**event, "sender": requester.user.to_string()}
        sent, _ = await self._hs.get_event_creation_handler().create_and_send_nonmember_event(
            requester, event, txn_id=txn_id
        )
        return sent

    async def redact(self, requester: Requester, room_id: str, event_id: str, reason: str | None = None) -> EventBase:
        """A redaction in the shape the room version wants (v11+: `redacts` inside content)."""
        room_version = await self._store.get_room_version(room_id)
        content: JsonDict = {"reason": reason} if reason else {}
        event: JsonDict = {"type": EventTypes.Redaction, "room_id": room_id, "content": content}
        if room_version.updated_redaction_rules:
            content["redacts"] = event_id
        else:
            event["redacts"] = event_id
        return await self.send_event(requester, event)

    async def room_hierarchy(self, user_id: str, space_id: str, limit: int, from_token: str | None) -> JsonDict:
        """One page of `/_matrix/client/v1/rooms/{space}/hierarchy` as `user_id` sees it (the
        space first, then its children; depth 1). Synapse decides which children the user may
        see and keeps the pagination session; a bad token is its 400."""
        return await self._hs.get_room_summary_handler().get_room_hierarchy(
            self.requester_for(user_id), space_id, max_depth=1, limit=limit, from_token=from_token
        )

    async def messages_page(
        self, requester: Requester, room_id: str, from_token: str | None, limit: int, types: list[str]
    ) -> JsonDict:
        """One page of /rooms/{id}/messages (newest first), as Synapse serialises it for clients.

        Visibility rules and bundled edits (`unsigned.m.relations.m.replace`) come from Synapse.
        Raises 400 M_INVALID_PARAM for a malformed token.
        """
        try:
            token = await StreamToken.from_string(self._store, from_token) if from_token else None
        except SynapseError:
            raise SynapseError(400, "Invalid field cursor: not a pagination token of this room.", Codes.INVALID_PARAM)
        config = PaginationConfig(from_token=token, to_token=None, direction=Direction.BACKWARDS, limit=limit)
        event_filter = Filter(self._hs, {"types": types})
        pagination = self._hs.get_pagination_handler()
        try:
            result = await pagination.get_messages(requester, room_id, config, event_filter=event_filter)
        except KeyError:
            # A retention purge removed the page's events (and their state) while Synapse read
            # them; read again, without them (Synapse's own /messages answers 500 here).
            result = await pagination.get_messages(requester, room_id, config, event_filter=event_filter)
        serializer = self._hs.get_event_client_serializer()
        return await encode_messages_response(
            get_messages_result=result,
            serialize_options=await serializer.create_config(requester=requester),
            serialize_deps=SerializeMessagesDeps(clock=self._clock, event_serializer=serializer, store=self._store),
        )

    async def event_json(self, requester: Requester, room_id: str, event_id: str) -> JsonDict | None:
        """One event as the requester may see it (with its bundled edit), or None."""
        try:
            event = await self._hs.get_event_handler().get_event(requester.user, room_id, event_id)
        except (AuthError, NotFoundError):
            return None
        if event is None:
            return None
        aggregations = await self._hs.get_relations_handler().get_bundled_aggregations(
            [event], requester.user.to_string()
        )
        serializer = self._hs.get_event_client_serializer()
        return await serializer.serialize_event(
            event,
            self._clock.time_msec(),
            bundle_aggregations=aggregations,
            config=await serializer.create_config(requester=requester),
        )

    async def annotations(self, event_ids: list[str]) -> dict[str, list[tuple[str, str, str]]]:
        """event_id -> [(key, sender, reaction_event_id)] of its live `m.reaction` annotations.

        Synapse no longer bundles annotation counts, so they are read from its relations table;
        a redacted reaction has already been removed from it.
        """
        if not event_ids:
            return {}

        def txn(t: LoggingTransaction) -> dict[str, list[tuple[str, str, str]]]:
            clause, args = make_in_list_sql_clause(t.database_engine, "r.relates_to_id", event_ids)
            t.execute(
                "SELECT r.relates_to_id, r.aggregation_key, e.sender, e.event_id FROM event_relations AS r"
                " JOIN events AS e ON e.event_id = r.event_id"
                f" WHERE {clause} AND r.relation_type = ? AND e.type = ? ORDER BY e.stream_ordering",
                (*args, RelationTypes.ANNOTATION, EventTypes.Reaction),
            )
            found: dict[str, list[tuple[str, str, str]]] = {}
            for target, key, sender, reaction_id in t.fetchall():
                found.setdefault(target, []).append((key, sender, reaction_id))
            return found

        return await self._store.db_pool.runInteraction("medchat_annotations", txn)

    async def search_room(
        self, requester: Requester, room_id: str, term: str, cursor: str | None, limit: int
    ) -> tuple[list[tuple[float, JsonDict]], int, str | None]:
        """Ranked full-text search over one room's messages, on Synapse's own search index.

        Synapse's /search ranks by loading up to 500 matching events, filtering and highlighting
        all of them, and cannot page a ranked search. This asks the same `event_search` index for
        one page only (keyset on rank, then stream order), leaves out edits (their originals
        carry the bundled edit), and runs Synapse's visibility filter on that page alone.
        Returns ([(rank, serialized event)], total matches, next cursor or None).
        """
        after = _search_cursor(cursor)
        user_id = requester.user.to_string()
        page: list[tuple[float, FilteredEvent]] = []
        total, next_cursor, batch = 0, None, limit + 1
        for _ in range(_SEARCH_ROUNDS):
            rows, total = await self._store.db_pool.runInteraction(
                "medchat_search_room", self._search_txn, room_id, term, after, batch
            )
            events = await self._store.get_events_as_list(
                [r[1] for r in rows], redact_behaviour=EventRedactBehaviour.block
            )
            visible = {
                f.event.event_id: f
                for f in await filter_and_transform_events_for_client(
                    self._hs.get_storage_controllers(), user_id, events
                )
            }
            for rank, event_id, stream in rows:
                if len(page) == limit:
                    next_cursor = f"{after[0]!r}:{after[1]}" if after else None
                    break
                after = (rank, stream)
                if event_id in visible:
                    page.append((rank, visible[event_id]))
            if next_cursor or len(rows) < batch:
                break
            batch *= 4  # most of what was read was hidden: read further ahead
        else:  # more to read than these rounds took: a short page, and the client pages on
            next_cursor = f"{after[0]!r}:{after[1]}" if after else None
        aggregations = await self._hs.get_relations_handler().get_bundled_aggregations([f for _, f in page], user_id)
        serializer = self._hs.get_event_client_serializer()
        serialized = await serializer.serialize_events(
            [f for _, f in page],
            self._clock.time_msec(),
            bundle_aggregations=aggregations,
            config=await serializer.create_config(requester=requester),
        )
        return [(rank, event) for (rank, _), event in zip(page, serialized)], total, next_cursor

    def _search_txn(
        self, txn: LoggingTransaction, room_id: str, term: str, after: tuple[float, int] | None, limit: int
    ) -> tuple[list[tuple[float, str, int]], int]:
        if isinstance(self._store.database_engine, PostgresEngine):
            # Until autoanalyze has run on them, PostgreSQL takes event_search and event_relations
            # for near-empty, and plans the anti-joins below as nested loops that seq-scan
            # event_relations once per match: 6.8M comparisons, 3 s, for 17k matches under
            # bench-messages (0.24 s with the index). Index lookups are right at any size (as
            # Synapse does for its push actions); with seq scans priced out a plan's estimate may
            # then pass jit_above_cost, and JIT compiling costs more than one page ever does.
            txn.execute("SET LOCAL enable_seqscan = off")
            txn.execute("SET LOCAL jit = off")
            query = term
            matches = """
                SELECT ts_rank_cd(vector, q)::float8 AS rank, event_id, stream_ordering
                FROM event_search, websearch_to_tsquery('english', ?) q
                WHERE vector @@ q AND room_id = ? AND key = 'content.body'
            """
        else:
            query = _parse_query_for_sqlite(term)[0]
            if not query:
                return [], 0
            # matchinfo() must stay in a plain query over the FTS table: no join, no window.
            matches = """
                SELECT m.rank, m.event_id, e.stream_ordering FROM (
                    SELECT rank(matchinfo(event_search)) AS rank, event_id FROM event_search
                    WHERE value MATCH ? AND room_id = ? AND key = 'content.body'
                ) AS m JOIN events e ON e.event_id = m.event_id
            """
        # Edits are left out (their originals carry them), and so are deletions Synapse has
        # confirmed; a redaction still to be rechecked is left to the visibility filter.
        hits = f"""
            SELECT rank, event_id, stream_ordering, count(*) OVER () AS total FROM ({matches}) AS matches
            WHERE NOT EXISTS (SELECT 1 FROM event_relations r WHERE r.event_id = matches.event_id AND r.relation_type = ?)
            AND NOT EXISTS (SELECT 1 FROM redactions d WHERE d.redacts = matches.event_id AND NOT d.recheck)
        """
        sql = f"SELECT rank, event_id, stream_ordering, total FROM ({hits}) AS hits"
        args: list[Any] = [query, room_id, RelationTypes.REPLACE]
        if after is not None:
            sql += " WHERE rank < ? OR (rank = ? AND stream_ordering < ?)"
            args += [after[0], after[0], after[1]]
        txn.execute(sql + " ORDER BY rank DESC, stream_ordering DESC LIMIT ?", (*args, limit))
        rows = txn.fetchall()
        if rows:
            return [(float(r[0]), r[1], int(r[2])) for r in rows], int(rows[0][3])
        if after is None:
            return [], 0
        txn.execute(f"SELECT count(*) FROM ({hits}) AS hits", (query, room_id, RelationTypes.REPLACE))
        return [], int(txn.fetchone()[0])

    async def unread_count(self, room_id: str, user_id: str) -> int:
        """Notifying events after the user's read receipt, as /sync's `unread_notifications`."""
        counts = await self._store.get_unread_event_push_actions_by_room_for_user(room_id, user_id)
        return counts.main_timeline.notify_count + sum(c.notify_count for c in counts.threads.values())

    def linearizer(self, name: str) -> Linearizer:
        """Synapse's keyed lock: one read-modify-write at a time per key (e.g. a user's m.direct)."""
        return Linearizer(name, self._clock)

    def online_user_ids(self) -> set[str]:
        """Local users whose presence is `online` now, from the presence handler's live state.

        That state lives on the process that owns presence (the main process unless a presence
        writer is configured); elsewhere it is empty, so the `online` filter belongs there.
        """
        states = getattr(self._hs.get_presence_handler(), "user_to_current_state", {})
        return {
            user_id for user_id, state in states.items() if state.state == "online" and self._hs.is_mine_id(user_id)
        }

    # --- extended profile fields (MSC4133) ----------------------------------------------------

    async def get_profile_field(self, user_id: str, field: str) -> Any:
        """A custom profile field of a local user, or None if unset."""
        fields = await self._store.get_profile_fields(UserID.from_string(user_id))
        return fields.get(field)

    async def set_profile_field(self, user_id: str, field: str, value: Any) -> None:
        """Sets a custom profile field as a server admin would, through the profile handler.

        Synapse then notifies modules (`on_profile_update`) and serves the field on
        `/_matrix/client/v3/profile/{user_id}` and over federation.
        """
        user = UserID.from_string(user_id)
        await self._hs.get_profile_handler().dispatch_set_profile_field(
            target_user=user, requester=create_requester(user), field_name=field, new_value=value, by_admin=True
        )

    async def ratelimit_directory_search(self, requester: Any) -> None:
        """Synapse's `rc_user_directory` limit (as on its own user-directory search); 429 if exceeded."""
        await self._directory_search_ratelimiter.ratelimit(requester)

    # --- media --------------------------------------------------------------------------------

    async def store_media(
        self, media_type: str, upload_name: str | None, content: IO, length: int, user_id: str
    ) -> str:
        """Stores a file through Synapse's media repository; returns its `mxc://` URI.

        The repository writes the local store and every storage provider (S3), records the uploader
        in `local_media_repository.user_id`, applies upload limits and quarantine, and generates
        thumbnails, exactly as for `/_matrix/media/v3/upload`.
        """
        try:
            mxc = await self._hs.get_media_repository().create_or_update_content(
                media_type, upload_name, content, length, UserID.from_string(user_id)
            )
        except (S3UploadFailedError, BotoCoreError, ClientError) as e:
            logger.error("MedChat: the object store refused an upload: %s", e)
            raise SynapseError(502, "The file store is unavailable; try again later.", Codes.UNKNOWN)
        return str(mxc)

    async def local_media_uploader(self, media_id: str) -> tuple[bool, str | None]:
        """(exists, uploader's user id) of a media id of this server."""
        media = await self._store.get_local_media(media_id)
        return (media is not None, media.user_id if media else None)

    async def delete_local_media(self, media_id: str) -> None:
        """Deletes a local file from the object stores, then the local store and database.

        Synapse's own deletion (the admin API's) removes only the local copy; with a storage
        provider the object would stay in the bucket and could be served again, so the S3 objects
        (content and thumbnails) are removed first.
        """
        repository = self._hs.get_media_repository()
        for provider in repository.media_storage.storage_providers:
            backend = getattr(provider, "backend", provider)
            if isinstance(backend, S3StorageProviderBackend):
                await self.api.defer_to_thread(_delete_s3_media, backend, repository.filepaths, media_id)
        await repository.delete_local_media_ids([media_id])

    async def inspect_local_media(self, media_id: str, inspect: Callable[[BinaryIO], T]) -> T | None:
        """`inspect(file)` run in a thread on a local media file's bytes, fetched back from the
        storage providers (S3) if the local copy was cleaned up or this process has none; None if
        there is no such media or its content has not been uploaded yet (MSC2246)."""
        media = await self._store.get_local_media(media_id)
        if media is None or media.media_length is None:
            return None
        storage = self._hs.get_media_repository().media_storage
        try:
            async with storage.ensure_media_is_in_local_cache(FileInfo(None, media_id)) as path:
                return await self.api.defer_to_thread(_inspect_file, path, inspect)
        except (NotFoundError, FileNotFoundError):
            return None

    def thumbnail_url(self, media_id: str, width: int, height: int) -> str:
        """Synapse's authenticated thumbnail endpoint for a local media id."""
        return (
            f"{self._hs.config.server.public_baseurl}_matrix/client/v1/media/thumbnail/"
            f"{self.server_name}/{media_id}?width={width}&height={height}&method=scale"
        )

    @staticmethod
    def guard_uploads(
        path_prefix: bytes, oversize: Callable[[str, int], SynapseError | None]
    ) -> Callable[[SynapseRequest], str | None]:
        """Guards the POSTs under `path_prefix` (`{prefix}{kind}`) while Twisted reads them.

        - Size: `oversize(kind, length)` is asked as soon as the headers are in (Content-Length)
          and again for every chunk received (chunked bodies); an error it returns is answered at
          once (e.g. 413 M_TOO_LARGE as JSON) and the connection closed, so an oversized body is
          neither read nor spooled. For multipart bodies `length` excludes up to 64 KiB of framing
          (boundaries, part headers); the part itself is held to the exact limit later.
        - Forms: SynapseRequest drops every multipart POST (GHSA-rfq8-j7rh-8hf2) because Twisted
          would parse the whole body into memory, as it does for url-encoded forms. For the upload
          paths such a Content-Type is set aside before Twisted sees it (so nothing is parsed,
          and `request.args` holds only the query string); the module reads a multipart part
          from the spooled body file itself.

        Returns the getter for an upload request's original Content-Type.
        """
        global _upload_guard
        _upload_guard = _UploadGuard(path_prefix, oversize)
        if not getattr(SynapseRequest, "_medchat_upload_guard", False):
            SynapseRequest.gotLength = _guarded_got_length(SynapseRequest.gotLength)  # type: ignore[method-assign]
            SynapseRequest.handleContentChunk = _guarded_content_chunk(SynapseRequest.handleContentChunk)  # type: ignore[method-assign]
            SynapseRequest.requestReceived = _guarded_request_received(SynapseRequest.requestReceived)  # type: ignore[method-assign]
            SynapseRequest._medchat_upload_guard = True  # type: ignore[attr-defined]
        return lambda request: getattr(request, "medchat_content_type", None)

    # --- event stream (the WebSocket's source) ---------------------------------------------------

    async def authenticate(self, request: SynapseRequest) -> tuple[Requester, str]:
        """The requester behind the request's access token (header or `access_token` query), and
        the token itself, for re-checking on a long-lived connection."""
        return await self.api.get_user_by_req(request), BaseAuth.get_access_token_from_request(request)

    async def token_still_valid(self, access_token: str) -> bool:
        """Whether a token checked earlier still works (logout, expiry, deactivation end it)."""
        try:
            await self._hs.get_auth().get_user_by_access_token(access_token)
            return True
        except SynapseError:
            return False

    async def stream_position(self) -> str:
        """The current position of the user-visible event stream, as a resumable string."""
        return await self._hs.get_event_sources().get_current_token().to_string(self._store)

    async def events_after(
        self, requester: Requester, position: str, timeout_ms: int, limit: int
    ) -> tuple[list[dict[str, Any]], str]:
        """Everything the user may see after `position` (room events, receipts, typing, presence),
        waiting up to `timeout_ms` for something to happen: Synapse's own `/events` stream.

        Returns the client-format events and the position after them. Raises 400 for a malformed
        position. Keeps the user's presence online while called, as a syncing client does.
        """
        token = await StreamToken.from_string(self._store, position)
        result = await self._hs.get_event_stream_handler().get_stream(
            requester,
            PaginationConfig(from_token=token, to_token=None, direction=Direction.FORWARDS, limit=limit),
            timeout=timeout_ms,
            affect_presence=True,
        )
        return result["chunk"], result["end"]

    # --- receipts, delivery and presence ----------------------------------------------------------

    async def visible_event(self, user_id: str, event_id: str) -> EventBase | None:
        """The event if it exists and `user_id` may see it, by the rules of
        `/rooms/{room}/event/{id}` (membership, history visibility, erasure)."""
        try:
            found = await self._hs.get_event_handler().get_event(UserID.from_string(user_id), None, event_id)
        except AuthError:
            return None
        return found.event if found is not None else None

    async def joined_members(self, room_id: str) -> list[str]:
        return list(await self._store.get_users_in_room(room_id))

    async def read_positions(self, room_id: str) -> dict[str, int]:
        """Each member's public read receipt in the room, as the stream ordering it points at."""

        def txn(t: LoggingTransaction) -> dict[str, int]:
            t.execute(
                "SELECT user_id, MAX(event_stream_ordering) FROM receipts_linearized"
                " WHERE room_id = ? AND receipt_type = ? AND event_stream_ordering IS NOT NULL GROUP BY user_id",
                (room_id, ReceiptTypes.READ),
            )
            return dict(t.fetchall())

        return await self.api.run_db_interaction("medchat_read_positions", txn)

    async def stream_orderings(self, event_ids: list[str]) -> dict[str, EventPosition]:
        """Where persisted events sit: room, stream ordering, and when this server received them."""
        if not event_ids:
            return {}
        marks = ", ".join("?" for _ in event_ids)

        def txn(t: LoggingTransaction) -> dict[str, EventPosition]:
            t.execute(
                f"SELECT event_id, room_id, stream_ordering, received_ts FROM events WHERE event_id IN ({marks})",
                event_ids,
            )
            return {
                event_id: EventPosition(room_id, ordering, received_ts)
                for event_id, room_id, ordering, received_ts in t.fetchall()
            }

        return await self.api.run_db_interaction("medchat_stream_orderings", txn)

    async def last_sync_ts(self, user_ids: list[str]) -> dict[str, int]:
        """When each local user's last /sync (or event stream) ended, from Synapse's presence:
        a sync that ended after an event was received has returned it."""
        states = await self._hs.get_presence_handler().get_states([u for u in user_ids if self._hs.is_mine_id(u)])
        return {state.user_id: state.last_user_sync_ts for state in states}

    async def send_read_receipt(self, user_id: str, room_id: str, event_id: str) -> None:
        """A real `m.read` receipt, exactly as a Matrix client sends it (Element shows it)."""
        await self._hs.get_receipts_handler().received_client_receipt(
            room_id, ReceiptTypes.READ, UserID.from_string(user_id), event_id, None
        )

    async def set_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        await self._hs.get_read_marker_handler().received_client_read_marker(room_id, user_id, event_id)

    async def latest_event_id(self, room_id: str) -> str | None:
        return await self._store.get_last_event_id_in_room_before_stream_ordering(
            room_id, self._store.get_room_max_token()
        )

    async def share_a_room(self, user_id: str, other_user_id: str) -> bool:
        return other_user_id in await self._store.do_users_share_a_room(user_id, [other_user_id])

    async def set_presence(self, requester: Requester, state: str, status_msg: str | None) -> None:
        body: dict[str, Any] = {"presence": state}
        if status_msg is not None:
            body["status_msg"] = status_msg
        await self._hs.get_presence_handler().set_state(requester.user, requester.device_id, body)

    async def presence_state(self, user_id: str) -> dict[str, Any]:
        state = await self._hs.get_presence_handler().get_state(UserID.from_string(user_id))
        return {"state": state.state, "status_msg": state.status_msg, "last_active_ts": state.last_active_ts or None}

    # --- notifications (Synapse's push-rule evaluation) -------------------------------------------

    async def push_actions(self, user_id: str, before: int | None, limit: int) -> list[Any]:
        """What Synapse's push rules decided to notify the user about, newest first."""
        return await self._store.get_push_actions_for_user(user_id, before=before, limit=limit)

    async def read_orderings_by_room(self, user_id: str) -> dict[str, int]:
        receipts = await self._store.get_receipts_for_user_with_orderings(
            user_id, [ReceiptTypes.READ, ReceiptTypes.READ_PRIVATE]
        )
        return {room_id: receipt["stream_ordering"] for room_id, receipt in receipts.items()}

    async def unread_counts_by_room(self, user_id: str) -> dict[str, int]:
        """`unread_count` of every room the user has joined."""
        return {
            room_id: await self.unread_count(room_id, user_id)
            for room_id in await self._store.get_rooms_for_user(user_id)
        }

    async def pending_invites(self, user_id: str) -> set[str]:
        """Rooms the user is invited to and has not answered."""
        rooms = await self._store.get_invited_rooms_for_local_user(user_id)
        return {room.room_id for room in rooms}

    async def notified_events(self, user_id: str, event_ids: list[str]) -> set[str]:
        """Which of these events Synapse's push rules notified the user about."""
        if not event_ids:
            return set()
        marks = ", ".join("?" for _ in event_ids)

        def txn(t: LoggingTransaction) -> set[str]:
            t.execute(
                f"SELECT event_id FROM event_push_actions WHERE user_id = ? AND notif = 1 AND event_id IN ({marks})",
                (user_id, *event_ids),
            )
            return {row[0] for row in t.fetchall()}

        return await self.api.run_db_interaction("medchat_notified_events", txn)

    async def events(self, event_ids: list[str]) -> dict[str, EventBase]:
        return await self._store.get_events(event_ids)


class ExportSink(Protocol):
    """Where an export goes, in plain JSON values: `event` per event the user sent, `part` per
    named piece of the rest (`matrix/profile`, `matrix/account_data/global`, ...)."""

    def event(self, event: JsonDict) -> None: ...

    def part(self, name: str, value: Any) -> None: ...


def _plain(value: Any) -> Any:
    """Synapse's immutable mappings as plain JSON values."""
    return json.loads(json_encoder.encode(value))


class _SinkWriter(ExfiltrationWriter):
    """Adapts Synapse's ExfiltrationWriter to an ExportSink, keeping only what the user sent
    (the export visits every event they could see; others' messages are not their data)."""

    def __init__(self, user_id: str, sink: ExportSink):
        self._user_id = user_id
        self._sink = sink
        self._invites: list[JsonDict] = []
        self._media: dict[str, Any] = {}

    def write_events(self, room_id: str, events: list[FilteredEvent]) -> None:
        for filtered in events:
            event = filtered.event
            if event.sender != self._user_id:
                continue
            row: JsonDict = {
                "event_id": event.event_id,
                "room_id": room_id,
                "type": event.type,
                "origin_server_ts": event.origin_server_ts,
                "content": _plain(event.content),
            }
            if event.is_state():
                row["state_key"] = event.state_key
            if event.redacts:
                row["redacts"] = event.redacts
            self._sink.event(row)

    def write_state(self, room_id: str, event_id: str, state: StateMap[EventBase]) -> None:
        """Room state at gaps in the history: other people's events, not exported."""

    def write_invite(self, room_id: str, event: EventBase, state: StateMap[EventBase]) -> None:
        self._invites.append(
            {
                "room_id": room_id,
                "membership": "invite",
                "sender": event.sender,
                "origin_server_ts": event.origin_server_ts,
            }
        )

    def write_knock(self, room_id: str, event: EventBase, state: StateMap[EventBase]) -> None:
        self._invites.append(
            {
                "room_id": room_id,
                "membership": "knock",
                "sender": event.sender,
                "origin_server_ts": event.origin_server_ts,
            }
        )

    def write_profile(self, profile: JsonMapping) -> None:
        self._sink.part("matrix/profile", _plain(profile))

    def write_devices(self, devices: Sequence[JsonMapping]) -> None:
        self._sink.part("matrix/devices", _plain(list(devices)))

    def write_connections(self, connections: Sequence[JsonMapping]) -> None:
        self._sink.part("matrix/connections", _plain(list(connections)))

    def write_account_data(self, file_name: str, account_data: Any) -> None:
        self._sink.part(f"matrix/account_data/{file_name}", _plain(account_data))

    def write_media_id(self, media_id: str, media_metadata: JsonMapping) -> None:
        self._media[media_id] = _plain(media_metadata)

    def finished(self) -> None:
        self._sink.part("matrix/invites_and_knocks", self._invites)
        self._sink.part("matrix/media", self._media)


def _inspect_file(path: str, inspect: Callable[[BinaryIO], T]) -> T:
    with open(path, "rb") as f:
        return inspect(f)


def _delete_s3_media(backend: S3StorageProviderBackend, filepaths: MediaFilePaths, media_id: str) -> None:
    """Removes a local media file and its thumbnails from the provider's bucket (in a thread)."""
    client = backend._get_s3_client()
    content_key = backend.prefix + filepaths.local_media_filepath_rel(media_id)
    thumbnails = backend.prefix + os.path.dirname(filepaths.local_media_thumbnail_rel(media_id, 1, 1, "a/b", "x")) + "/"
    keys = [content_key]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=thumbnails):
        keys += [item["Key"] for item in page.get("Contents", [])]
    for key in keys:
        client.delete_object(Bucket=backend.bucket, Key=key)


# --- upload guard: patches of SynapseRequest's body reading ------------------------------------

_MULTIPART_FRAMING = 64 * 1024
# Bodies Twisted parses into `request.args` in memory (and Synapse drops multipart outright); an
# upload sent as a form (curl --data-binary sends application/x-www-form-urlencoded) is a file.
_PARSED_FORMS = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class _UploadGuard(NamedTuple):
    path_prefix: bytes
    oversize: Callable[[str, int], SynapseError | None]


_upload_guard: _UploadGuard | None = None


def _upload_kind(request: SynapseRequest) -> str | None:
    """The `{kind}` of a POST under the guarded prefix, from the request line Twisted has parsed
    (the request object itself learns method and path only once the whole body is in)."""
    channel = request.channel
    if _upload_guard is None or getattr(channel, "_command", None) != b"POST":
        return None
    path = getattr(channel, "_path", b"").split(b"?", 1)[0]
    if not path.startswith(_upload_guard.path_prefix):
        return None
    kind = unquote(path[len(_upload_guard.path_prefix) :].decode("latin-1"))
    return kind if kind and "/" not in kind else None


def _refuse_upload(request: SynapseRequest, error: SynapseError) -> None:
    """Answers `error` as JSON straight onto the connection and closes it without reading on.

    Written to the transport, not through `Request.write`: the request has no method or path yet.
    """
    request.medchat_refused = True  # type: ignore[attr-defined]
    request.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after the answer
    logger.info("MedChat: refused an upload from %s before reading its body: %s", request.getClientAddress(), error.msg)
    body = json.dumps(error.error_dict(None)).encode()
    status = HTTPStatus(error.code)
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
    )
    request.channel.transport.write(head.encode("ascii") + body)
    request.channel.loseConnection()


def _check_upload_size(request: SynapseRequest, length: int) -> bool:
    """False (and the request answered) if `length` body bytes are too many for its upload kind."""
    kind, framing = request.medchat_upload  # type: ignore[attr-defined]
    assert _upload_guard is not None
    error = _upload_guard.oversize(kind, max(0, length - framing))
    if error is not None:
        _refuse_upload(request, error)
    return error is None


def _guarded_got_length(
    original: Callable[[SynapseRequest, int | None], None],
) -> Callable[[SynapseRequest, int | None], None]:
    def got_length(self: SynapseRequest, length: int | None) -> None:
        kind = _upload_kind(self)
        if kind is not None:
            ctype = self.requestHeaders.getRawHeaders(b"content-type")
            multipart = bool(ctype) and b"multipart/form-data" in ctype[0].lower()
            self.medchat_upload = (kind, _MULTIPART_FRAMING if multipart else 0)  # type: ignore[attr-defined]
            if length is not None and not _check_upload_size(self, length):
                self.content = BytesIO()  # Twisted's and Synapse's later calls expect a content file
                return
        original(self, length)

    return got_length


def _guarded_content_chunk(
    original: Callable[[SynapseRequest, bytes], None],
) -> Callable[[SynapseRequest, bytes], None]:
    def handle_content_chunk(self: SynapseRequest, data: bytes) -> None:
        if getattr(self, "medchat_refused", False):
            return  # what the client sent before the connection closed
        if getattr(self, "medchat_upload", None) and not _check_upload_size(self, self.content.tell() + len(data)):
            return
        original(self, data)

    return handle_content_chunk


def _guarded_request_received(
    original: Callable[[SynapseRequest, bytes, bytes, bytes], None],
) -> Callable[[SynapseRequest, bytes, bytes, bytes], None]:
    def request_received(self: SynapseRequest, command: bytes, path: bytes, version: bytes) -> None:
        if getattr(self, "medchat_refused", False):
            return
        if getattr(self, "medchat_upload", None):
            ctype = self.requestHeaders.getRawHeaders(b"content-type")
            if ctype:
                self.medchat_content_type = ctype[0].decode("latin-1")  # type: ignore[attr-defined]
                if any(form in ctype[0].lower() for form in _PARSED_FORMS):
                    self.requestHeaders.setRawHeaders(b"content-type", [b"application/octet-stream"])
        original(self, command, path, version)

    return request_received


# --- server-to-server (federation) ------------------------------------------------------------


class ServerBridge:
    """Module endpoints between homeservers: requests signed with the server's key (Synapse's
    federation client) and checked against the origin's key (Synapse's keyring)."""

    def __init__(self, api: ModuleApi):
        self._hs = api._hs
        self._clock = self._hs.get_clock()
        self._authenticator = Authenticator(self._hs)

    async def authenticate_server(self, request: SynapseRequest) -> str:
        """The origin server of a request signed with the `X-Matrix` scheme; 401 if the signature
        does not verify with the origin's key, 403 if Synapse's `federation_domain_whitelist`
        excludes the origin."""
        return await self._authenticator.authenticate_request(request, None)

    def ratelimiter(self, name: str, per_second: float, burst_count: int) -> Callable[[str], Any]:
        """A Synapse rate limiter keyed by any string (here: the origin server); 429 when over."""
        limiter = Ratelimiter(
            store=self._hs.get_datastores().main,
            clock=self._clock,
            cfg=RatelimitSettings(key=name, per_second=per_second, burst_count=burst_count),
        )
        return lambda key: limiter.ratelimit(None, key=key)

    def sign(self, value: JsonDict) -> JsonDict:
        """`value` signed with this server's signing key (the Matrix JSON signature scheme)."""
        return sign_json(dict(value), self._hs.hostname, self._hs.signing_key)

    async def verify_server_signature(self, server_name: str, value: JsonDict, at_ms: int) -> bool:
        """Whether `value` carries a valid signature of `server_name`, with the key that server
        published (fetched over federation and cached by Synapse's keyring)."""
        try:
            await self._hs.get_keyring().verify_json_for_server(server_name, value, at_ms)
        except Exception as e:  # noqa: BLE001 - any failure (bad signature, unknown key, peer down) is "no"
            logger.info("MedChat: no valid signature of %s: %s", server_name, e)
            return False
        return True

    async def remote_profile(self, user_id: str) -> JsonDict:
        """A remote user's whole profile (extended fields included), asked of their server."""
        return await self._hs.get_profile_handler().get_profile(user_id)

    async def get_json_from_servers(
        self, destinations: list[str], path: str, args: dict[str, str], timeout_s: float
    ) -> dict[str, Any]:
        """GETs a signed module path on several servers at once, each within `timeout_s`.

        Returns destination -> the JSON answer, or the exception: TimeoutError when the server
        did not answer in time, any other exception when it failed (down, refused, non-2xx).
        """
        client = self._hs.get_federation_http_client()

        async def one(destination: str) -> Any:
            request = run_in_background(
                client.get_json,
                destination,
                path,
                args={k: [v] for k, v in args.items()},
                timeout=int(timeout_s * 1000) + 1000,
                ignore_backoff=True,
                retry_on_dns_fail=False,  # ours fires first
            )
            try:
                return await make_deferred_yieldable(
                    timeout_deferred(deferred=request, timeout=timeout_s, clock=self._clock)
                )
            except defer.TimeoutError:
                return TimeoutError(f"{destination} did not answer within {timeout_s}s")
            except RequestSendFailed as e:
                # Our time-out cancels the request, which the client reports as a failed send.
                timed_out = isinstance(
                    e.inner_exception,
                    (defer.CancelledError, defer.TimeoutError, TimeoutError, twisted_error.TimeoutError),
                )
                return TimeoutError(str(e)) if timed_out else e
            except Exception as e:  # noqa: BLE001 - each peer's failure is reported, not raised
                return e

        answers = await make_deferred_yieldable(
            defer.gatherResults([run_in_background(one, d) for d in destinations], consumeErrors=True)
        )
        return dict(zip(destinations, answers))
