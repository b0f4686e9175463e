"""Accounts through Synapse's own handlers: register, login, refresh, logout, reset, erase, export."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from synapse.api.auth.base import BaseAuth
from synapse.api.constants import UserTypes
from synapse.api.errors import Codes, LoginError, SynapseError
from synapse.api.ratelimiting import Ratelimiter
from synapse.http import get_request_user_agent
from synapse.http.site import RequestInfo, SynapseRequest
from synapse.module_api import ModuleApi
from synapse.push.mailer import Mailer
from synapse.rest.client.login import LoginRestServlet
from synapse.types import UserID, create_requester
from synapse.util.threepids import canonicalise_email, validate_email

from medchat.synapse import sql
from medchat.synapse._base import Family
from medchat.synapse.export import SinkWriter

if TYPE_CHECKING:
    from synapse.server import HomeServer

    from medchat.handlers.gdpr import ExportSink

logger = logging.getLogger(__name__)


_SESSION_KEYS = ("user_id", "device_id", "access_token", "refresh_token", "expires_in_ms")


class SynapseAccounts(Family):
    """Synapse's registration, login, password and deactivation handlers, as a Matrix client
    reaches them, so every rate limit, policy and module callback applies."""

    def __init__(self, api: ModuleApi, hs: HomeServer):
        super().__init__(api, hs)
        self._auth_handler = hs.get_auth_handler()
        self._registration = hs.get_registration_handler()
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

    async def check_username_available(self, localpart: str) -> None:
        """Raises 400 for an invalid localpart, 409 M_USER_IN_USE if it is taken."""
        try:
            await self.api.check_username(localpart)
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
        so nobody logs in as it. It is exempt from Synapse's rate limits (the override the admin
        API's `override_ratelimit` sets): it acts for every user of the server, and an invite
        limit per issuer would answer a user's first study group with 429 whenever a few others
        had just made theirs.
        """
        user_id = UserID(localpart, self.server_name).to_string()
        if await self._store.get_user_by_id(user_id) is None:
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
        override = await self._store.get_ratelimit_for_user(user_id)
        if override is None or override.messages_per_second or override.burst_count:
            await self._store.set_ratelimit_for_user(user_id, 0, 0)
        return user_id

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

    async def email_addresses(self, user_id: str) -> list[str]:
        return [t.address for t in await self._store.user_get_threepids(user_id) if t.medium == "email"]

    async def forget_erased_user(self, user_id: str, addresses: list[str]) -> None:
        """Removes what Synapse's erasure leaves of the person outside the room history (see sql.py)."""
        await self.api.run_db_interaction("medchat_forget_erased_user", sql.forget_erased_user_txn, user_id, addresses)

    async def is_user_erased(self, user_id: str) -> bool:
        return await self._store.is_user_erased(user_id)

    async def export_user_data(self, user_id: str, sink: ExportSink) -> None:
        """Synapse's data export (the admin `export-data` command's machinery) into `sink`:
        the events the user sent, their Matrix profile, devices, sessions, account data and media."""
        await self._hs.get_admin_handler().export_user_data(user_id, SinkWriter(user_id, sink))
