"""Every use of Synapse internals lives here, so a Synapse upgrade touches one file.

The module API (`synapse.module_api.ModuleApi`) covers callbacks, auth and database access; what it
lacks (password login with refresh tokens, password resets through Synapse's mailer, registration
with a password, start-up migrations on a dedicated connection) is reached through the homeserver
object below, reusing Synapse's own handlers rather than re-implementing them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import synapse
from synapse.api.auth.base import BaseAuth
from synapse.api.constants import Direction, ReceiptTypes
from synapse.api.errors import AuthError, Codes, SynapseError
from synapse.api.ratelimiting import Ratelimiter
from synapse.events import EventBase
from synapse.http import get_request_user_agent
from synapse.http.server import JsonResource
from synapse.http.site import RequestInfo, SynapseRequest
from synapse.module_api import ModuleApi
from synapse.push.mailer import Mailer
from synapse.rest.client.login import LoginRestServlet
from synapse.storage.database import LoggingTransaction, make_conn
from synapse.storage.engines import PostgresEngine
from synapse.streams.config import PaginationConfig
from synapse.types import Requester, StreamToken, UserID, create_requester
from synapse.util.threepids import canonicalise_email, validate_email

logger = logging.getLogger(__name__)

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

    async def is_joined(self, user_id: str, room_id: str) -> bool:
        return user_id in await self._store.get_users_in_room(room_id)

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

    async def stream_orderings(self, event_ids: list[str]) -> dict[str, tuple[str, int]]:
        """event_id -> (room_id, stream_ordering) for events persisted here."""
        if not event_ids:
            return {}
        marks = ", ".join("?" for _ in event_ids)

        def txn(t: LoggingTransaction) -> dict[str, tuple[str, int]]:
            t.execute(f"SELECT event_id, room_id, stream_ordering FROM events WHERE event_id IN ({marks})", event_ids)
            return {event_id: (room_id, ordering) for event_id, room_id, ordering in t.fetchall()}

        return await self.api.run_db_interaction("medchat_stream_orderings", txn)

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
        """Per joined room, the notification count /sync reports as `unread_notifications`
        (threads included), computed by the same store function."""
        counts = {}
        for room_id in await self._store.get_rooms_for_user(user_id):
            room = await self._store.get_unread_event_push_actions_by_room_for_user(room_id, user_id)
            counts[room_id] = room.main_timeline.notify_count + sum(t.notify_count for t in room.threads.values())
        return counts

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
