"""MedChat: the Synapse module behind a medical chat app.

Synapse keeps rooms, events, receipts and media; this module adds the medical profile and the
app's REST API (/api/...), mapped onto Matrix so every Matrix client sees the same truth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from synapse.module_api import ModuleApi

from medchat import errors
from medchat.api import Servlets, build_api_resource
from medchat.api.admin import AdminServlets
from medchat.api.contacts import ContactServlets
from medchat.api.federation import AttestationServlets, FederationServlets
from medchat.api.gdpr import GdprServlets
from medchat.api.messages import MessageServlets
from medchat.api.polls import PollServlets
from medchat.api.realtime import RealtimeServlets
from medchat.api.rooms import RoomServlets
from medchat.api.upload import UploadServlets
from medchat.api.users import UserServlets
from medchat.api.verification import VerificationServlets
from medchat.config import MedChatConfig
from medchat.federation.allowlist import check_agreement
from medchat.federation.attestation import Attestations
from medchat.federation.caserooms import CaseRoomGate
from medchat.federation.directory import FederatedDirectory
from medchat.federation.profiles import RemoteProfiles
from medchat.handlers.accounts import Accounts
from medchat.handlers.audit import Audit
from medchat.handlers.contacts import Contacts
from medchat.handlers.directory import Directory
from medchat.handlers.expiry import REAP_EVERY_MS, Expiry
from medchat.handlers.gdpr import Gdpr
from medchat.handlers.messages import Messages
from medchat.handlers.mirror import ProfileMirror
from medchat.handlers.polls import Polls
from medchat.handlers.rooms import Rooms
from medchat.handlers.spaces import InstitutionSpaces
from medchat.handlers.studygroups import StudyGroups
from medchat.handlers.verification import Verification
from medchat.media.uploads import MediaUploads
from medchat.metrics import AUDIT_VERIFY_FAILURES, EXPIRY_OVERDUE, VERIFICATION_OLDEST_PENDING_AGE, VERIFICATION_PENDING
from medchat.phi.detectors import Guard
from medchat.realtime.fanout import FanOut
from medchat.realtime.notifications import Notifications
from medchat.realtime.presence import Presence
from medchat.realtime.socket import SocketHub
from medchat.realtime.status import MessageStatus
from medchat.rules.callbacks import MembershipCallbacks
from medchat.rules.case_media import CaseRoomMedia
from medchat.rules.case_retention import CaseRoomRetention, check_retention
from medchat.rules.contact import ContactRules
from medchat.rules.decisions import server_refusal
from medchat.rules.directory import DirectoryRules
from medchat.rules.membership import MembershipRules
from medchat.rules.phi_guard import PhiGuard
from medchat.rules.room_text import RoomTextRules
from medchat.store import ContactStore, DirectoryStore, ProfileStore, VerificationStore, apply_migrations
from medchat.store.audit import AuditStore, Pseudonyms, reseal_legacy_txn
from medchat.store.expiry import ExpiryStore
from medchat.store.notifications import NotificationStore
from medchat.store.realtime import DeliveryStore, DismissedNotificationStore
from medchat.store.spaces import SpaceStore
from medchat.synapse import Synapse
from medchat.synapse.profile_guard import guard_profile_fields

logger = logging.getLogger(__name__)


async def _gauge_pending_verifications(store: VerificationStore, server_name: str, now_ms: Callable[[], int]) -> None:
    """The verification queue's length and the wait of its oldest request (an alert's input:
    config/monitoring/medchat-rules.yml)."""
    VERIFICATION_PENDING.labels(server_name=server_name).set(await store.count_pending())
    oldest = await store.oldest_pending_ts()
    age = 0.0 if oldest is None else max(0.0, (now_ms() - oldest) / 1000)
    VERIFICATION_OLDEST_PENDING_AGE.labels(server_name=server_name).set(age)


class MedChatModule:
    """Loaded by Synapse from the `modules:` list; wires config, storage, rules and the REST API."""

    def __init__(self, config: MedChatConfig, api: ModuleApi):
        synapse = Synapse(api)
        server = synapse.server
        server.extend_federation_domain_whitelist(config.signed_allow_list)
        check_agreement(config.federation_allow_list, server.federation_domain_whitelist, api.server_name)
        # Synapse's own refusals of a server outside the allow-list name the module's rule, and
        # only the module writes its profile fields (both before Synapse serves a request).
        server.name_federation_denials(lambda other: server_refusal(other).as_error())
        guard_profile_fields(errors.MODULE_FIELD_PREFIX, errors.module_field)
        pseudonyms = Pseudonyms(server.audit_pseudonym_key)
        data_steps = {80: lambda txn: reseal_legacy_txn(txn, pseudonyms)}
        applied = server.run_startup_transaction(
            "medchat_migrations", lambda txn: apply_migrations(txn, server.database_engine, data_steps)
        )
        if applied:
            logger.info("MedChat: applied schema migrations %s", applied)
        profiles = ProfileStore(api)
        mirror = ProfileMirror(synapse.profiles, profiles)
        module_notifications = NotificationStore(api)
        audit = Audit(api, server, synapse.accounts, AuditStore(api, server.database_engine, pseudonyms))
        federation = synapse.federation
        verification_store = VerificationStore(api)
        attestations = Attestations(api, server, synapse.profiles, federation, profiles, verification_store)
        remote_profiles = RemoteProfiles(server, federation, attestations, config.federation_allow_list)
        verification = Verification(
            config,
            api,
            server,
            verification_store,
            profiles,
            mirror,
            module_notifications,
            audit.store,
            remote_level=remote_profiles.level,
        )
        accounts = Accounts(
            config,
            api,
            server,
            synapse.accounts,
            synapse.profiles,
            synapse.stream,
            profiles,
            mirror,
            verification,
            audit,
        )
        directory_store = DirectoryStore(api, server.engine)
        directory = Directory(
            config, api, synapse.accounts, synapse.stream, accounts, directory_store, verification, remote_profiles
        )
        contact_store = ContactStore(api)
        rules = ContactRules(config, api, profiles, contact_store, verification.level_of)
        contacts = Contacts(
            config,
            api,
            server,
            synapse.profiles,
            synapse.rooms,
            synapse.stream,
            contact_store,
            profiles,
            rules,
            module_notifications,
            remote_profiles,
        )
        spaces = InstitutionSpaces(
            api,
            server,
            synapse.accounts,
            synapse.rooms,
            synapse.events,
            SpaceStore(api),
            config.study_groups.space_owner,
        )
        study_groups = StudyGroups(config.study_groups, api, synapse.rooms, spaces, profiles)
        rooms = Rooms(
            api,
            server,
            synapse.profiles,
            synapse.rooms,
            synapse.events,
            synapse.stream,
            study_groups,
            rules.require_federated,
        )
        status = MessageStatus(server, synapse.rooms, synapse.events, synapse.stream, DeliveryStore(api, server.clock))
        expiry = Expiry(server, synapse.events, ExpiryStore(api), config.max_expires_in_seconds)
        messages = Messages(api, server, synapse.rooms, synapse.events, synapse.search, rooms, status, expiry)
        gdpr = Gdpr(api, server, synapse.http, synapse.accounts, accounts, rules, expiry, audit)
        fanout = FanOut(server, synapse.events, synapse.stream, rooms, messages)
        sockets = SocketHub(
            api, server, synapse.http, synapse.stream, config.websocket, status, fanout, module_notifications
        )

        # Every invite, join and knock, whatever its route, gets the one membership decision; its
        # event rule runs before the guard's below (which may replace an event).
        case_rooms = CaseRoomGate(synapse.rooms)
        MembershipCallbacks(MembershipRules(api, rules, verification.level_of), synapse.rooms, case_rooms).register(api)
        study_groups.register(api)
        RoomTextRules(api).register(api)
        phi = config.case_rooms
        check_retention(phi.retention_max_lifetime_ms, server.retention_limits)
        # Synapse stops at the first check_event_allowed callback that returns a replacement event,
        # which the guard does to mark warn-mode timeline events; the media rule's after it looks at
        # state events (avatars) only, which the guard never replaces.
        PhiGuard(
            Guard.from_config(phi.phi_detectors, phi.mrn_patterns, phi.phone_region),
            case_rooms,
            api,
            synapse.rooms,
            synapse.media,
            phi.allow_warn_mode,
        ).register(api)
        CaseRoomMedia(api, synapse.media, case_rooms).register(api)
        CaseRoomRetention(phi.retention_max_lifetime_ms).register(api)
        api.register_third_party_rules_callbacks(on_profile_update=attestations.on_profile_update)
        federated = FederatedDirectory(config, federation, directory, attestations, api.server_name)
        api.register_spam_checker_callbacks(
            check_username_for_spam=DirectoryRules(directory, directory_store).check_username_for_spam
        )
        api.register_third_party_rules_callbacks(
            on_profile_update=mirror.on_profile_update, on_new_event=audit.on_new_event
        )
        api.register_third_party_rules_callbacks(
            check_can_deactivate_user=gdpr.before_deactivation,
            on_user_deactivation_status_changed=gdpr.on_user_deactivation_status_changed,
        )
        api.register_account_data_callbacks(on_account_data_updated=contacts.on_account_data_updated)
        api.register_third_party_rules_callbacks(on_new_event=rooms.on_new_event)

        features: list[Servlets] = [
            AdminServlets(api, audit),
            UserServlets(api, server, synapse.profiles, accounts, directory, federated),
            GdprServlets(api, gdpr),
            AttestationServlets(api, attestations),
            VerificationServlets(api, verification),
            ContactServlets(api, contacts, rules),
            RoomServlets(api, rooms, study_groups),
            MessageServlets(api, messages),
            PollServlets(api, Polls(messages, synapse.events)),
            UploadServlets(api, MediaUploads(api, synapse.media, config.uploads, audit)),
            RealtimeServlets(
                api,
                status,
                Presence(api, synapse.rooms, synapse.stream, contact_store),
                Notifications(
                    server,
                    synapse.rooms,
                    synapse.events,
                    synapse.stream,
                    DismissedNotificationStore(api),
                    module_notifications,
                ),
            ),
        ]
        # A labelled series of each exists from start-up, at 0 (so dashboards and alerts see it).
        for metric in (VERIFICATION_PENDING, VERIFICATION_OLDEST_PENDING_AGE, EXPIRY_OVERDUE, AUDIT_VERIFY_FAILURES):
            metric.labels(server_name=api.server_name)
        api.looping_background_call(
            _gauge_pending_verifications, 15_000, verification_store, api.server_name, server.now_ms
        )
        api.looping_background_call(expiry.reap, REAP_EVERY_MS)
        if server.runs_background_tasks:  # takes the service account's name before anyone else can
            api.delayed_background_call(0, spaces.owner, desc="medchat_service_account")
        api.register_web_resource("/api", build_api_resource(synapse, accounts, sockets.resource(), *features))
        api.register_web_resource(
            "/_medchat/federation", FederationServlets(federation, federated).resource(synapse.http)
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> MedChatConfig:
        return MedChatConfig.parse(config)
