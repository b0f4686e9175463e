"""Every use of Synapse internals lives here, so a Synapse upgrade touches one file.

The module API (`synapse.module_api.ModuleApi`) covers callbacks, auth and database access; what it
lacks (password login with refresh tokens, password resets through Synapse's mailer, registration
with a password, start-up migrations on a dedicated connection) is reached through the homeserver
object below, reusing Synapse's own handlers rather than re-implementing them.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from typing import IO, Any, NamedTuple, TypeVar

import synapse
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from s3_storage_provider import S3StorageProviderBackend
from signedjson.sign import sign_json
from synapse import event_auth
from synapse.api.auth.base import BaseAuth
from synapse.api.constants import Direction, EventTypes, ReceiptTypes, RelationTypes
from synapse.api.errors import AuthError, Codes, NotFoundError, RequestSendFailed, SynapseError
from synapse.api.filtering import Filter
from synapse.api.ratelimiting import Ratelimiter
from synapse.config.ratelimiting import RatelimitSettings
from synapse.federation.transport.server._base import Authenticator
from synapse.logging.context import make_deferred_yieldable, run_in_background
from twisted.internet import defer
from twisted.internet import error as twisted_error
from synapse.events import EventBase
from synapse.http import get_request_user_agent
from synapse.http.server import JsonResource
from synapse.http.site import RequestInfo, SynapseRequest
from synapse.media.filepath import MediaFilePaths
from synapse.module_api import ModuleApi
from synapse.push.mailer import Mailer
from synapse.rest.client.login import LoginRestServlet
from synapse.rest.client.room import SerializeMessagesDeps, encode_messages_response
from synapse.storage.database import LoggingTransaction, make_conn, make_in_list_sql_clause
from synapse.storage.engines import PostgresEngine
from synapse.storage.engines._base import IsolationLevel
from synapse.streams.config import PaginationConfig
from synapse.types import JsonDict, Requester, StreamToken, UserID, create_requester
from synapse.util.async_helpers import Linearizer, timeout_deferred
from synapse.util.stringutils import parse_and_validate_server_name
from synapse.util.threepids import canonicalise_email, validate_email

logger = logging.getLogger(__name__)


class EventPosition(NamedTuple):
    room_id: str
    stream_ordering: int
    received_ts: int


T = TypeVar("T")

SYNAPSE_VERSION: str = synapse.__version__
_SESSION_KEYS = ("user_id", "device_id", "access_token", "refresh_token", "expires_in_ms")


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

    async def login(self, identifier: dict[str, str], password: str, device_name: str | None, request: SynapseRequest) -> dict[str, Any]:
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
                raise SynapseError(404, f"No such user: {user_id} (their server {server} could not be reached)", "M_NOT_FOUND")
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

    async def set_membership(self, sender: str, target: str, room_id: str, membership: str) -> None:
        """Invite, join, leave or kick (`leave` with sender != target), as /rooms/{id}/{action}."""
        await self.api.update_room_membership(sender, target, room_id, membership)

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """The local user's current membership in the room (None if they never had one)."""
        membership, _ = await self._store.get_local_current_membership_for_user_in_room(user_id, room_id)
        return membership

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
        levels = {u: event_auth.get_user_power_level(u, state) for u in user_ids}
        power_event = state.get((EventTypes.PowerLevels, ""))
        return levels, dict(power_event.content) if power_event else {}

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
        result = await self._hs.get_pagination_handler().get_messages(
            requester, room_id, config, event_filter=Filter(self._hs, {"types": types})
        )
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
        aggregations = await self._hs.get_relations_handler().get_bundled_aggregations([event], requester.user.to_string())
        serializer = self._hs.get_event_client_serializer()
        return await serializer.serialize_event(
            event, self._clock.time_msec(), bundle_aggregations=aggregations,
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

    async def search_room(self, requester: Requester, room_id: str, term: str, batch: str | None, limit: int) -> JsonDict:
        """Synapse's server-side full-text search, ranked, restricted to one room."""
        criteria = {
            "search_categories": {
                "room_events": {
                    "search_term": term,
                    "order_by": "rank",
                    "filter": {"rooms": [room_id], "types": [EventTypes.Message], "limit": limit},
                }
            }
        }
        try:
            result = await self._hs.get_search_handler().search(requester, criteria, batch)
        except SynapseError as e:
            if e.code == 400 and batch is not None:
                raise SynapseError(400, "Invalid field cursor: not a search batch token.", Codes.INVALID_PARAM)
            raise
        return result["search_categories"]["room_events"]

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
        return {user_id for user_id, state in states.items() if state.state == "online" and self._hs.is_mine_id(user_id)}

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

    async def store_media(self, media_type: str, upload_name: str | None, content: IO, length: int, user_id: str) -> str:
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

    def thumbnail_url(self, media_id: str, width: int, height: int) -> str:
        """Synapse's authenticated thumbnail endpoint for a local media id."""
        return (
            f"{self._hs.config.server.public_baseurl}_matrix/client/v1/media/thumbnail/"
            f"{self.server_name}/{media_id}?width={width}&height={height}&method=scale"
        )

    @staticmethod
    def accept_multipart_uploads(path_prefix: bytes) -> Callable[[SynapseRequest], str | None]:
        """Lets multipart/form-data POSTs under `path_prefix` through Synapse's request guard.

        SynapseRequest drops every multipart POST (GHSA-rfq8-j7rh-8hf2) because Twisted would parse
        the whole body into memory. For the upload paths the Content-Type is set aside before
        Twisted sees it (so nothing is parsed) and the module reads the part from the spooled body
        file itself. Returns the getter for a request's original multipart Content-Type.
        """
        original = SynapseRequest.requestReceived
        if not getattr(original, "_medchat_multipart", False):

            def request_received(self: SynapseRequest, command: bytes, path: bytes, version: bytes) -> None:
                if command == b"POST" and path.startswith(path_prefix):
                    ctype = self.requestHeaders.getRawHeaders(b"content-type")
                    if ctype and b"multipart/form-data" in ctype[0].lower():
                        self.medchat_multipart_type = ctype[0].decode("latin-1")  # type: ignore[attr-defined]
                        self.requestHeaders.setRawHeaders(b"content-type", [b"application/octet-stream"])
                original(self, command, path, version)

            request_received._medchat_multipart = True  # type: ignore[attr-defined]
            SynapseRequest.requestReceived = request_received  # type: ignore[method-assign]
        return lambda request: getattr(request, "medchat_multipart_type", None)


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

    async def events_after(self, requester: Requester, position: str, timeout_ms: int, limit: int) -> tuple[list[dict[str, Any]], str]:
        """Everything the user may see after `position` (room events, receipts, typing, presence),
        waiting up to `timeout_ms` for something to happen: Synapse's own `/events` stream.

        Returns the client-format events and the position after them. Raises 400 for a malformed
        position. Keeps the user's presence online while called, as a syncing client does.
        """
        token = await StreamToken.from_string(self._store, position)
        result = await self._hs.get_event_stream_handler().get_stream(
            requester, PaginationConfig(from_token=token, to_token=None, direction=Direction.FORWARDS, limit=limit), timeout=timeout_ms, affect_presence=True
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
            return {user_id: ordering for user_id, ordering in t.fetchall()}

        return await self.api.run_db_interaction("medchat_read_positions", txn)

    async def stream_orderings(self, event_ids: list[str]) -> dict[str, EventPosition]:
        """Where persisted events sit: room, stream ordering, and when this server received them."""
        if not event_ids:
            return {}
        marks = ", ".join("?" for _ in event_ids)

        def txn(t: LoggingTransaction) -> dict[str, EventPosition]:
            t.execute(f"SELECT event_id, room_id, stream_ordering, received_ts FROM events WHERE event_id IN ({marks})", event_ids)
            return {event_id: EventPosition(room_id, ordering, received_ts) for event_id, room_id, ordering, received_ts in t.fetchall()}

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
        return await self._store.get_last_event_id_in_room_before_stream_ordering(room_id, self._store.get_room_max_token())

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
        receipts = await self._store.get_receipts_for_user_with_orderings(user_id, [ReceiptTypes.READ, ReceiptTypes.READ_PRIVATE])
        return {room_id: receipt["stream_ordering"] for room_id, receipt in receipts.items()}

    async def unread_counts_by_room(self, user_id: str) -> dict[str, int]:
        """`unread_count` of every room the user has joined."""
        return {room_id: await self.unread_count(room_id, user_id) for room_id in await self._store.get_rooms_for_user(user_id)}

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
            store=self._hs.get_datastores().main, clock=self._clock,
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

    async def get_json_from_servers(self, destinations: list[str], path: str, args: dict[str, str], timeout_s: float) -> dict[str, Any]:
        """GETs a signed module path on several servers at once, each within `timeout_s`.

        Returns destination -> the JSON answer, or the exception: TimeoutError when the server
        did not answer in time, any other exception when it failed (down, refused, non-2xx).
        """
        client = self._hs.get_federation_http_client()

        async def one(destination: str) -> Any:
            request = run_in_background(
                client.get_json, destination, path, args={k: [v] for k, v in args.items()},
                timeout=int(timeout_s * 1000) + 1000, ignore_backoff=True, retry_on_dns_fail=False,  # ours fires first
            )
            try:
                return await make_deferred_yieldable(timeout_deferred(deferred=request, timeout=timeout_s, clock=self._clock))
            except defer.TimeoutError:
                return TimeoutError(f"{destination} did not answer within {timeout_s}s")
            except RequestSendFailed as e:
                # Our time-out cancels the request, which the client reports as a failed send.
                timed_out = isinstance(e.inner_exception, (defer.CancelledError, defer.TimeoutError, TimeoutError, twisted_error.TimeoutError))
                return TimeoutError(str(e)) if timed_out else e
            except Exception as e:  # noqa: BLE001 - each peer's failure is reported, not raised
                return e

        answers = await make_deferred_yieldable(
            defer.gatherResults([run_in_background(one, d) for d in destinations], consumeErrors=True)
        )
        return dict(zip(destinations, answers))
