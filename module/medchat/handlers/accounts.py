"""Accounts: registration, sessions, password resets and the caller's own profile.

Every account is a real Matrix user; the session tokens are Synapse's own, so one token works on
/api/* and /_matrix/client/*. This file holds the rules; api/auth.py only moves JSON.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.config import MedChatConfig
from medchat.handlers.audit import Audit
from medchat.handlers.mirror import ProfileMirror
from medchat.handlers.verification import Verification
from medchat.levels import UNVERIFIED
from medchat.models import JsonDict, MatrixIdentity, Profile, chat_user, localpart
from medchat.store import ProfileStore
from medchat.synapse import SynapseAccounts, SynapseProfiles, SynapseServer, SynapseStream

if TYPE_CHECKING:
    from medchat.api.schemas.requests import LoginBody, ProfileUpdateBody, RegisterBody, ResetPasswordBody

logger = logging.getLogger(__name__)

# What verification vouches for: changing one of these un-verifies unless a verifier does it.
VERIFIED_FIELDS = ("role", "institution", "specialization")


class Accounts:
    def __init__(
        self,
        config: MedChatConfig,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_accounts: SynapseAccounts,
        synapse_profiles: SynapseProfiles,
        synapse_stream: SynapseStream,
        profiles: ProfileStore,
        mirror: ProfileMirror,
        verification: Verification,
        audit: Audit,
    ):
        self._config = config
        self._api = api
        self._synapse_server = synapse_server
        self._synapse_accounts = synapse_accounts
        self._synapse_profiles = synapse_profiles
        self._synapse_stream = synapse_stream
        self._profiles = profiles
        self._mirror = mirror
        self._verification = verification
        self._audit = audit

    def check_role(self, role: str) -> None:
        if role not in self._config.roles:
            raise SynapseError(
                400, f"Unknown role {role!r}; allowed: {', '.join(self._config.roles)}", Codes.INVALID_PARAM
            )

    def _email(self, address: str) -> str:
        try:
            return self._synapse_accounts.canonical_email(address)
        except ValueError as e:
            raise errors.invalid_param(f"Invalid field email: {e}")

    # --- registration and sessions -------------------------------------------------------------

    async def register(self, body: RegisterBody, request: Any) -> JsonDict:
        """Creates the Matrix user and its medical profile, then opens a session.

        Everything that can be refused is checked before anything is written; the profile row is
        written first as a reservation and removed again if Synapse then refuses the account.
        """
        if not self._config.registration_enabled:
            raise errors.forbidden("Registration is closed on this server.")
        self.check_role(body.role)
        email = self._email(body.email)
        username = body.username
        await self._synapse_accounts.ratelimit_registration(request.getClientAddress().host)
        await self._synapse_accounts.check_username_available(username)
        self._synapse_accounts.validate_password(body.password)
        if await self._synapse_accounts.user_id_for_email(email) is not None:
            raise SynapseError(409, "That e-mail address is already registered.", Codes.THREEPID_IN_USE)

        user_id = f"@{username}:{self._api.server_name}"
        now = self._synapse_server.now_ms()
        profile = Profile(
            user_id=user_id,
            role=body.role,
            institution=body.institution,
            specialization=body.specialization,
            bio=body.bio,
            created_ts=now,
            updated_ts=now,
            display_name=body.full_name,
        )
        if not await self._profiles.reserve(profile):
            raise SynapseError(409, "That username is already taken.", Codes.USER_IN_USE)
        try:
            await self._synapse_accounts.register_user(username, body.password, body.full_name, email)
        except BaseException:
            await self._profiles.delete(user_id)
            raise
        await self._mirror.sync(user_id)
        session = await self._synapse_accounts.issue_session(user_id, body.device_name)
        return {**session, "user": await self.view(user_id, show_email=True)}

    async def login(self, body: LoginBody, request: Any) -> JsonDict:
        identifier: JsonDict  # LoginBody holds exactly one of the e-mail address and the username
        if body.email is not None:
            identifier = {"type": "m.id.thirdparty", "medium": "email", "address": self._email(body.email)}
        else:
            identifier = {"type": "m.id.user", "user": body.username}
        session = await self._synapse_accounts.login(identifier, body.password, body.device_name, request)
        return {**session, "user": await self.view(session["user_id"], show_email=True)}

    async def refresh(self, refresh_token: str) -> JsonDict:
        return await self._synapse_accounts.refresh(refresh_token)

    async def logout(self, request: Any) -> None:
        await self._synapse_accounts.logout(request)

    # --- password reset ------------------------------------------------------------------------

    async def forgot_password(self, address: str, request: Any) -> None:
        """Mails a reset link if the address belongs to an account; says nothing either way.

        The mail is sent in the background so the answer takes the same time whether or not the
        address is registered.
        """
        if not self._synapse_accounts.password_reset_available:
            raise SynapseError(400, "Password reset by e-mail is not configured on this server.", Codes.UNKNOWN)
        email = self._email(address)
        if await self._synapse_accounts.user_id_for_email(email) is None:
            return

        async def send() -> None:
            try:
                await self._synapse_accounts.send_password_reset(email, request)
            except SynapseError as e:  # rate limited: the caller is not told whether the address exists
                logger.info("Password reset mail not sent: %s", e)

        self._api.run_as_background_process("medchat_password_reset_mail", send)

    async def reset_password(self, body: ResetPasswordBody) -> None:
        self._synapse_accounts.validate_password(body.new_password)
        user_id = await self._synapse_accounts.consume_password_reset(body.sid, body.client_secret, body.token)
        await self._synapse_accounts.set_password(user_id, body.new_password)

    # --- own profile ---------------------------------------------------------------------------

    async def view(self, user_id: str, show_email: bool) -> JsonDict:
        """The ChatUser model of a local user; 404 if there is no such Matrix user."""
        profile = await self._profiles.get(user_id)
        if profile is None and await self._api.check_user_exists(user_id) is None:
            raise errors.not_found("No such user.")
        return chat_user(user_id, profile, await self._identity(user_id, show_email), show_email)

    async def _identity(self, user_id: str, with_email: bool) -> MatrixIdentity:
        matrix_profile = await self._api.get_profile_for_user(localpart(user_id))
        is_online, last_active = await self._synapse_stream.presence(user_id)
        return MatrixIdentity(
            display_name=matrix_profile.display_name,
            avatar_url=matrix_profile.avatar_url,
            email=await self._synapse_accounts.email_for_user(user_id) if with_email else None,
            is_online=is_online,
            last_active_ts=last_active,
        )

    async def update_own_profile(self, user_id: str, body: ProfileUpdateBody) -> JsonDict:
        return await self.update_profile(user_id, user_id, body)

    async def update_profile(self, editor: str, user_id: str, body: ProfileUpdateBody) -> JsonDict:
        """Display name and avatar go to the Matrix profile; the medical fields to our row.

        Only the user or a server admin may edit. Once verified, a change of role, institution or
        specialization drops the user back to unverified unless a verifier for the user's
        institution (or an admin) makes it. Everything that can be refused is checked before the
        first write, so a refused update changes nothing.
        """
        if editor != user_id and not await self._api.is_user_admin(editor):
            raise errors.forbidden("You may only edit your own profile.")
        changes = body.changes()
        if body.role is not None:
            self.check_role(body.role)
        profile = await self._profiles.get(user_id)
        reservation: Profile | None = None
        reset_reason: str | None = None
        if profile is None:
            if await self._api.check_user_exists(user_id) is None:
                raise errors.not_found("No such user.")
            if body.role is None:
                raise errors.missing_param("This account has no profile yet: give its role.")
            now = self._synapse_server.now_ms()
            reservation = Profile(user_id, body.role, None, None, None, now, now)
        else:
            changed = [f for f in VERIFIED_FIELDS if f in changes and changes[f] != getattr(profile, f)]
            if (
                changed
                and profile.verification_level != UNVERIFIED
                and not await self._verification.may_verify(editor, profile.institution)
            ):
                reset_reason = f"profile changed: {', '.join(changed)}"
        avatar = (body.profile_image or "") if body.given("profile_image") else None
        await self._synapse_profiles.check_profile_change(user_id, body.full_name, avatar)
        # Nothing is refused from here on.
        if reservation is not None:
            await self._profiles.reserve(reservation)
        if reset_reason is not None:
            await self._verification.reset(user_id, editor, reset_reason)
        if body.full_name is not None:
            await self._synapse_profiles.set_display_name(user_id, body.full_name)
        if avatar is not None:
            await self._synapse_profiles.set_avatar(user_id, avatar)
        await self._profiles.update(user_id, changes, self._synapse_server.now_ms())
        await self._mirror.sync(user_id)
        if editor != user_id:
            await self._audit.record(editor, "profile.admin_edit", user_id, {"fields": sorted(changes)})
        return await self.view(user_id, show_email=True)
