"""Server facts and start-up: names, engine, worker role, federation whitelist, keys, clock."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from synapse.api.errors import FederationDeniedError, SynapseError
from synapse.storage.database import LoggingTransaction, make_conn
from synapse.storage.engines import BaseDatabaseEngine, PostgresEngine
from synapse.storage.engines._base import IsolationLevel
from synapse.util.async_helpers import Linearizer

from medchat.synapse._base import Family

if TYPE_CHECKING:
    from synapse.util.clock import Clock

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SynapseServer(Family):
    """Facts about this server and process, and the start-up transaction."""

    @property
    def database_engine(self) -> str:
        return "postgresql" if isinstance(self._store.database_engine, PostgresEngine) else "sqlite"

    @property
    def engine(self) -> BaseDatabaseEngine:
        """Synapse's database engine, for `synapse.sql.in_list` in statements built before their
        transaction runs."""
        return self._store.database_engine

    @property
    def clock(self) -> Clock:
        """Synapse's clock: what a `@cached` method's object holds (with `server_name`) for its
        cache's metrics and expiry."""
        return self._clock

    @property
    def worker_name(self) -> str:
        """This process's `worker_name`, or "main" for the main process."""
        return self.api.worker_name or "main"

    @property
    def runs_background_tasks(self) -> bool:
        """Whether this process runs periodic jobs (`run_background_tasks_on`), the module's too."""
        return self.api.should_run_background_tasks()

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

    @staticmethod
    def name_federation_denials(refusal_of: Callable[[str], SynapseError]) -> None:
        """Makes Synapse's own whitelist refusals answer as `refusal_of(server)` does.

        Synapse refuses a server outside `federation_domain_whitelist` itself, before the module
        sees anything: an inbound request from it (the federation authenticator) and an outbound
        one to it (the federation client), with a plain 403 M_FORBIDDEN "Federation denied with
        …". Every such refusal is a `FederationDeniedError`, so its constructor is wrapped to give
        the module's errcode, message and `org.medchat.rule` instead. A refused peer's Synapse
        passes that answer on to its client (e.g. a remote invite, a profile query), so both sides
        name the rule. The class, status and `destination` stay Synapse's, for its own handling.
        """
        if getattr(FederationDeniedError, "_medchat_named", False):
            return
        original = FederationDeniedError.__init__

        def named_init(self: FederationDeniedError, destination: str | None) -> None:
            original(self, destination)
            fields = refusal_of(destination or "").error_dict(None)
            self.msg, self.errcode = fields.pop("error"), fields.pop("errcode")
            self._additional_fields = fields

        FederationDeniedError.__init__ = named_init  # type: ignore[method-assign]
        FederationDeniedError._medchat_named = True  # type: ignore[attr-defined]  # the patched-once mark

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

    def now_ms(self) -> int:
        return self.api.get_current_time_msec()

    def linearizer(self, name: str) -> Linearizer:
        """Synapse's keyed lock: one read-modify-write at a time per key (e.g. a user's m.direct)."""
        return Linearizer(name, self._clock)

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
