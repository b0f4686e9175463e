"""Server-to-server: MedChat's own federation endpoints, signed and checked with Synapse's keys."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from signedjson.sign import sign_json
from synapse.api.errors import RequestSendFailed, SynapseError
from synapse.api.ratelimiting import Ratelimiter
from synapse.config.ratelimiting import RatelimitSettings
from synapse.federation.transport.server._base import Authenticator
from synapse.http.site import SynapseRequest
from synapse.logging.context import make_deferred_yieldable, run_in_background
from synapse.server import HomeServer
from synapse.types import JsonDict
from synapse.util.async_helpers import timeout_deferred

from twisted.internet import defer, error as twisted_error

logger = logging.getLogger(__name__)


class SynapseFederation:
    """Module endpoints between homeservers: requests signed with the server's key (Synapse's
    federation client) and checked against the origin's key (Synapse's keyring)."""

    def __init__(self, hs: HomeServer):
        self._hs = hs
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

    async def remote_profile(self, user_id: str, timeout_s: float) -> JsonDict:
        """A remote user's whole profile (extended fields included), asked of their server.

        Synapse's errors as they are (404 no such user, 502 unreachable, the remote's refusal);
        TimeoutError if it has not answered within `timeout_s` (Synapse itself would wait a
        minute on a server that accepts the connection but never answers).
        """
        query = run_in_background(self._hs.get_profile_handler().get_profile, user_id)
        try:
            return await make_deferred_yieldable(timeout_deferred(deferred=query, timeout=timeout_s, clock=self._clock))
        except defer.TimeoutError as e:
            raise TimeoutError(f"{user_id}'s server did not answer within {timeout_s}s") from e
        except SynapseError as e:
            # The profile handler reports our cancelled request as a failed send (its 502).
            if isinstance(e.__cause__, RequestSendFailed) and _timed_out(e.__cause__):
                raise TimeoutError(f"{user_id}'s server did not answer within {timeout_s}s") from e
            raise

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
                return TimeoutError(str(e)) if _timed_out(e) else e
            except Exception as e:  # noqa: BLE001 - each peer's failure is reported, not raised
                return e

        answers = await make_deferred_yieldable(
            defer.gatherResults([run_in_background(one, d) for d in destinations], consumeErrors=True)
        )
        return dict(zip(destinations, answers))


def _timed_out(failure: RequestSendFailed) -> bool:
    """Whether a failed send is our own time-out: it cancels the request, which Synapse's
    federation client reports as a failed send."""
    return isinstance(
        failure.inner_exception, (defer.CancelledError, defer.TimeoutError, TimeoutError, twisted_error.TimeoutError)
    )
